"""The installed dlcv version, as recorded in checkpoints and artifact metadata."""
from importlib import metadata as _metadata


def dlcv_version() -> str:
    """Return the installed distribution's version ('0+unknown' when running from a bare tree)."""
    try:
        return _metadata.version("dlcv")
    except _metadata.PackageNotFoundError:
        return "0+unknown"
