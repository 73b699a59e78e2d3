"""Device selection with the same rules everywhere (train and translate)."""
from __future__ import annotations

import sys

import torch

from medgan.errors import MedganError

_NOTICE_SHOWN: list[bool] = []


def resolve_device(spec: str = "auto", local_rank: int = 0, quiet: bool = False) -> torch.device:
    """``auto`` takes CUDA (or MPS) when present, else the CPU with a one-line notice;
    an explicit device that is missing is an error."""
    spec = (spec or "auto").lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        if not quiet and not _NOTICE_SHOWN:
            _NOTICE_SHOWN.append(True)           # once per run, not once per case of a batch
            print("medgan: no GPU found, running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise MedganError(f"unknown device '{spec}'; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MedganError(f"device '{spec}' was requested but CUDA is not available")
        index = device.index if device.index is not None else local_rank
        if index >= torch.cuda.device_count():
            raise MedganError(f"device '{spec}' does not exist ({torch.cuda.device_count()} CUDA devices)")
        return torch.device("cuda", index)
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MedganError("device 'mps' was requested but is not available")
    return device
