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


@register_discriminator("lowpass-patchgan")
class LowPassPatchGAN(nn.Module):
    """PatchGANs that only see what a correction generator can change: the low-passed image.

    A correction generator (:class:`medgan.nets.correction.CorrectionGenerator`) adds a smooth
    field to its input; it cannot remove CBCT noise, streaks or edge blur.  A plain PatchGAN tells
    CBCT from CT by exactly those high frequencies, so its gradient asks the generator for
    something it cannot give, and the smooth field it does give drifts.  Here every scale first
    blurs its input with a Gaussian of ``sigma_px`` voxels and average-pools it by its factor in
    ``scales``; each pooled image goes to its own PatchGAN.  The logits of all scales are
    flattened and concatenated: (N, total patches), which every adversarial loss accepts.
    Coarse scales give each patch a large field of view (whole-body context).
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, channels: int = 32, num_layers: int = 3,
                 sigma_px: float = 2.0, scales: tuple[int, ...] | list[int] = (2, 4), spectral_norm: bool = False):
        super().__init__()
        from medgan.nets.correction import GaussianLowPass

        if not scales or any(int(s) < 1 for s in scales):
            raise ValueError("scales must be a non-empty list of pooling factors >= 1")
        if sigma_px < 0:
            raise ValueError("sigma_px must be >= 0")
        self.spatial_dims = spatial_dims
        self.scales = tuple(int(s) for s in scales)
        self.lowpass = GaussianLowPass([float(sigma_px)] * spatial_dims)
        self.heads = nn.ModuleList(
            PatchGAN(spatial_dims, in_channels, channels, num_layers, spectral_norm) for _ in self.scales)

    def smooth(self, x: torch.Tensor, factor: int) -> torch.Tensor:
        """The image one head sees: blurred, then average-pooled by ``factor``."""
        low: torch.Tensor = self.lowpass(x)
        if factor == 1:
            return low
        pool = nn.functional.avg_pool2d if self.spatial_dims == 2 else nn.functional.avg_pool3d
        if min(x.shape[2:]) // factor < 16:
            raise ValueError(f"lowpass-patchgan: a {tuple(x.shape[2:])} patch pooled by {factor} is smaller than "
                             "16 voxels; use a larger data.patch_size or smaller scales")
        pooled: torch.Tensor = pool(low, factor)
        return pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = [head(self.smooth(x, f)).flatten(1) for head, f in zip(self.heads, self.scales, strict=True)]
        return torch.cat(logits, dim=1)
