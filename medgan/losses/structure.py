"""Structure consistency between an input and its translation.

CBCT users fear invented anatomy most.  Gradient correlation (normalised cross
correlation of the image gradients, per axis) is intensity-invariant, so it
lets the generator change HU while penalising edges that move, appear or vanish.
MONAI has no MIND/gradient-correlation loss, hence this short implementation.
"""
from __future__ import annotations

import torch


def _ncc(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    dims = tuple(range(1, a.ndim))
    a = a - a.mean(dim=dims, keepdim=True)
    b = b - b.mean(dim=dims, keepdim=True)
    return (a * b).sum(dims) / torch.sqrt((a * a).sum(dims) * (b * b).sum(dims) + eps)


def gradient_correlation_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """1 - mean over spatial axes of NCC(grad x, grad y); 0 for images with identical edges."""
    x, y = x.float(), y.float()
    gcs = []
    for axis in range(2, x.ndim):
        gcs.append(_ncc(torch.diff(x, dim=axis), torch.diff(y, dim=axis)))
    return 1.0 - torch.stack(gcs).mean()
