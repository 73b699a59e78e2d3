"""Generators: the reference CycleGAN ResNet generator (2D/3D) and MONAI's U-Net."""
from __future__ import annotations

from torch import nn

from medgan.nets.layers import PadToMultiple, conv, reflect_pad
from medgan.nets.layers import norm as _norm
from medgan.nets.registry import register_generator


class ResidualBlock(nn.Module):
    def __init__(self, dims: int, ch: int, norm_kind: str = "instance"):
        super().__init__()
        bias = norm_kind == "none"
        self.body = nn.Sequential(
            reflect_pad(dims, 1), conv(dims)(ch, ch, 3, bias=bias), _norm(dims, ch, norm_kind), nn.ReLU(True),
            reflect_pad(dims, 1), conv(dims)(ch, ch, 3, bias=bias), _norm(dims, ch, norm_kind),
        )

    def forward(self, x):
        return x + self.body(x)


@register_generator("resnet")
class ResnetGenerator(nn.Module):
    """Johnson-style ResNet generator as in CycleGAN: c7s1-k, 2 stride-2 downsamplings, ``n_blocks``
    residual blocks, 2 upsamplings, c7s1-1 with tanh.

    ``upsample="resize"`` (default) uses nearest-neighbour resize + convolution, which avoids the
    checkerboard artefacts of transposed convolutions; ``"transposed"`` gives the reference design.
    Any input size is accepted (padded to a multiple of 4 and cropped back).

    ``norm``: ``"instance"`` (default, the reference design), ``"batch"`` or ``"none"``
    (:func:`medgan.nets.layers.norm`, which refuses other names): instance norm hides the input's
    absolute HU level, which a correction network may need to see.
    """

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1, channels: int = 64,
                 n_blocks: int = 9, n_down: int = 2, upsample: str = "resize", norm: str = "instance"):
        super().__init__()
        if upsample not in ("resize", "transposed"):
            raise TypeError(f"upsample must be 'resize' or 'transposed', not {upsample!r}")
        d, C, nk = spatial_dims, conv(spatial_dims), norm
        # convolutions followed by a norm carry no bias: the norm removes it, and Adam would
        # turn its zero gradient's rounding noise into full-size random steps
        bias = nk == "none"
        layers = [reflect_pad(d, 3), C(in_channels, channels, 7, bias=bias), _norm(d, channels, nk), nn.ReLU(True)]
        ch = channels
        for _ in range(n_down):
            layers += [C(ch, ch * 2, 3, stride=2, padding=1, bias=bias), _norm(d, ch * 2, nk), nn.ReLU(True)]
            ch *= 2
        layers += [ResidualBlock(d, ch, nk) for _ in range(n_blocks)]
        for _ in range(n_down):
            if upsample == "transposed":
                T = nn.ConvTranspose2d if d == 2 else nn.ConvTranspose3d
                layers += [T(ch, ch // 2, 3, stride=2, padding=1, output_padding=1, bias=bias)]
            else:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), reflect_pad(d, 1),
                           C(ch, ch // 2, 3, bias=bias)]
            layers += [_norm(d, ch // 2, nk), nn.ReLU(True)]
            ch //= 2
        layers += [reflect_pad(d, 3), C(ch, out_channels, 7), nn.Tanh()]
        self.model = PadToMultiple(nn.Sequential(*layers), 2**n_down)
        # encoder features (medgan.nets.features), as CUT samples them: the padded input, each down-sampling
        # convolution, the first and the middle residual block
        first_block = 4 + 3 * n_down
        picks = [0, *(4 + 3 * k for k in range(n_down))]
        if n_blocks:
            picks += [first_block, first_block + n_blocks // 2]
        self.encoder_layers = tuple(f"model.net.{i}" for i in dict.fromkeys(picks))

    def forward(self, x):
        return self.model(x)


@register_generator("unet")
class UNetGenerator(nn.Module):
    """MONAI's residual U-Net with instance norm, ending in tanh; any input size."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, out_channels: int = 1,
                 channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units: int = 2):
        super().__init__()
        from monai.networks.nets import UNet

        net = UNet(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=out_channels,
                   channels=tuple(channels), strides=tuple(strides), num_res_units=num_res_units,
                   norm="INSTANCE", act="LEAKYRELU")
        multiple = 1
        for s in strides:
            multiple *= s
        self.model = nn.Sequential(PadToMultiple(net, multiple), nn.Tanh())
        # encoder features (medgan.nets.features): each down-sampling unit and the bottom of the U
        path = "model.0.net.model"
        self.encoder_layers = tuple(f"{path}{'.1.submodule' * i}.0" for i in range(len(strides))) + (
            f"{path}{'.1.submodule' * len(strides)}",)

    def forward(self, x):
        return self.model(x)
