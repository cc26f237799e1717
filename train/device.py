"""The one place a --device name becomes a torch.device (with a clear error when CUDA is absent)."""
from __future__ import annotations

import torch

from dlcv.runtime.errors import DlcvError


def resolve_device(name: str) -> torch.device:
    """``cpu``, ``cuda`` or ``cuda:N`` -> torch.device; asking for CUDA without a GPU is a DlcvError."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise DlcvError(f"--device {name} was asked for but PyTorch sees no CUDA GPU; use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise DlcvError(f"--device must be cpu, cuda or cuda:N, not {name!r}") from None
