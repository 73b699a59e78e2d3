"""PatchGAN discriminators built on MONAI's ``PatchDiscriminator``."""
from __future__ import annotations

import torch
from torch import nn

from medgan.nets.registry import register_discriminator


@register_discriminator("patchgan")
class PatchGAN(nn.Module):
    """70x70-style PatchGAN (``num_layers=3``) returning the patch logits only.

    MONAI's class defaults to batch norm and returns every intermediate feature map;
    the classic CycleGAN uses instance norm and only the last map (the prediction).
    ``spectral_norm=True`` wraps every convolution in spectral normalisation.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: int = 64, num_layers: int = 3,
                 spectral_norm: bool = False):
        super().__init__()
        from monai.networks.nets import PatchDiscriminator

        self.net = PatchDiscriminator(spatial_dims=spatial_dims, channels=channels, in_channels=in_channels,
                                      out_channels=1, num_layers_d=num_layers, norm="INSTANCE")
        if spectral_norm:
            for name, module in list(self.net.named_modules()):
                if isinstance(module, (nn.Conv2d, nn.Conv3d)):
                    parent = self.net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else self.net
                    setattr(parent, name.rsplit(".", 1)[-1], nn.utils.parametrizations.spectral_norm(module))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.net(x)[-1]
        return logits
