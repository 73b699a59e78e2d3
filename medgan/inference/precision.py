"""The values that become HU stay in fp32 when the network runs under bf16/fp16 autocast.

Under ``torch.autocast`` a generator's last convolution returns bf16, and its tanh keeps that
dtype: bf16's 8-bit mantissa rounds the normalised output to steps of 2^-9 to 2^-8, which for
the ``ct-full`` preset (4095 HU wide) are 4-8 HU.  :func:`fp32_output` runs the output layer (the
last convolution, so the tanh after it too) and a correction generator's low-pass with autocast
disabled and fp32 inputs, so only the network's inner layers run in reduced precision; the HU
arithmetic after the network (``HUPreset.denormalize``) is NumPy float32.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from medgan.nets.correction import GaussianLowPass

_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


class Fp32(nn.Module):
    """Runs ``module`` with autocast disabled on fp32 inputs (a temporary wrapper: no parameters of its own)."""

    def __init__(self, module: nn.Module):
        super().__init__()
        self.module = module

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        device_type = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type, enabled=False):
            out: torch.Tensor = self.module(*(a.float() if isinstance(a, torch.Tensor) and a.is_floating_point()
                                              else a for a in args))
        return out


def output_layers(net: nn.Module) -> list[str]:
    """Qualified names of the modules :func:`fp32_output` runs in fp32: the last convolution (in registration
    order, which for medgan's generators is the output layer) and every :class:`GaussianLowPass`."""
    names = [name for name, m in net.named_modules() if isinstance(m, GaussianLowPass)]
    convs = [name for name, m in net.named_modules() if isinstance(m, _CONV)]
    if convs and convs[-1] not in names:
        names.append(convs[-1])
    return [n for n in names if n]          # "" would be the network itself: nothing to wrap it in


@contextlib.contextmanager
def fp32_output(net: nn.Module, enabled: bool = True) -> Iterator[nn.Module]:
    """While active, :func:`output_layers` of ``net`` run in fp32 whatever autocast says; restored on exit."""
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        if enabled:
            for name in output_layers(net):
                parent_name, _, attr = name.rpartition(".")
                parent = net.get_submodule(parent_name) if parent_name else net
                module = getattr(parent, attr)
                setattr(parent, attr, Fp32(module))
                swapped.append((parent, attr, module))
        yield net
    finally:
        for parent, attr, module in reversed(swapped):
            setattr(parent, attr, module)
