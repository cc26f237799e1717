"""Model definitions; importing this package registers every model."""
from . import fcn, vgg  # noqa: F401  (registration on import)
