"""Small layer factories that pick the 2D or 3D class, and the pad-to-multiple wrapper."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def conv(dims: int):
    return nn.Conv2d if dims == 2 else nn.Conv3d


#: normalisation layers a generator can use (``norm`` argument of :func:`norm`)
NORMS = ("instance", "batch", "none")


def norm(dims: int, channels: int, kind: str = "instance") -> nn.Module:
    """``instance``: instance norm without affine parameters, as in the reference CycleGAN.

    Instance norm removes each image's feature means, and with them the input's absolute HU level:
    a *correction* network then cannot see that a CBCT reads, say, 30 HU too high everywhere.
    ``batch`` (running statistics at inference) and ``none`` keep it.
    """
    if kind == "instance":
        return (nn.InstanceNorm2d if dims == 2 else nn.InstanceNorm3d)(channels, affine=False)
    if kind == "batch":
        return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d)(channels)
    if kind == "none":
        return nn.Identity()
    raise TypeError(f"norm must be one of {', '.join(NORMS)}, not {kind!r}")


def reflect_pad(dims: int, width: int) -> nn.Module:
    return (nn.ReflectionPad2d if dims == 2 else nn.ReflectionPad3d)(width)


class PadToMultiple(nn.Module):
    """Runs ``net`` on an input padded (by replication) to a multiple of ``multiple`` and crops back.

    Lets encoder-decoder generators accept any size (odd slices, 3D patches of 41 voxels).  Inputs
    smaller than ``2 x multiple`` are padded to that, so the deepest layer still has 2 x 2 voxels
    (instance normalisation needs more than one).
    """

    def __init__(self, net: nn.Module, multiple: int):
        super().__init__()
        self.net = net
        self.multiple = multiple

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = x.shape[2:]
        m = self.multiple
        extra = [max(-(-s // m) * m, 2 * m) - s for s in sizes]
        if not any(extra):
            out: torch.Tensor = self.net(x)
            return out
        pad = []
        for e in reversed(extra):
            pad += [e // 2, e - e // 2]
        y: torch.Tensor = self.net(F.pad(x, pad, mode="replicate"))
        slices = [slice(None), slice(None)] + [slice(e // 2, e // 2 + s) for e, s in zip(extra, sizes, strict=True)]
        return y[tuple(slices)]
