"""Distribution metrics between translated and real slices: FID and KID.

Both compare *feature statistics* of two sets of 2D slices, so they need a feature
extractor with trained weights.  Nothing is downloaded at run time: the user supplies
the weights file (``--fid-weights``), loaded with ``torch.load(weights_only=True)`` or
safetensors, never unpickling code.  Extractors are registered by name; the standard
one is torchvision's Inception-v3 (``pip install torchvision``; the FID weights are the
``pt_inception`` / torchvision ``inception_v3`` state dict), and any other (e.g. a
RadImageNet ResNet) is one decorated builder.

* FID (Heusel et al. 2017): ``|mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2))``.
* KID (Binkowski et al. 2018): the unbiased MMD^2 with the cubic polynomial kernel
  ``k(x, y) = (x.y / d + 1)^3``, averaged over random subsets; unbiased, so it suits the
  small slice sets of medical cohorts better than FID.

FID/KID values depend on the extractor and on the number of slices: compare numbers
only when both were computed the same way.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import linalg

from medgan.errors import InputError, ModelError
from medgan.utils.optional import require

FEATURE_EXTRACTORS: dict[str, Callable[[dict], tuple[torch.nn.Module, int]]] = {}


def register_feature_extractor(name: str):
    """``builder(state_dict) -> (module mapping [N, 3, H, W] in [0, 1] to [N, D], input side)``."""

    def wrap(builder):
        FEATURE_EXTRACTORS[name] = builder
        return builder

    return wrap


@register_feature_extractor("inception-v3")
def _inception_v3(state: dict):
    inception_v3 = require("torchvision.models", "FID/KID with inception-v3", "torchvision").inception_v3
    net = inception_v3(weights=None, aux_logits=True, init_weights=False)
    net.load_state_dict(state, strict=False)
    net.fc = torch.nn.Identity()                 # 2048-d pool features
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    class Features(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net((x - mean.to(x)) / std.to(x))

    return Features().eval(), 299


def load_feature_extractor(weights: str | Path | None, name: str = "inception-v3") -> tuple[torch.nn.Module, int]:
    if weights is None:
        raise InputError("FID/KID need a feature extractor's weights, which medgan never downloads: pass "
                         "--fid-weights PATH (e.g. torchvision's inception_v3 state dict as .pth or .safetensors)")
    path = Path(weights)
    if not path.exists():
        raise InputError(f"feature-extractor weights {path} do not exist")
    if name not in FEATURE_EXTRACTORS:
        raise InputError(f"unknown feature extractor '{name}'; choose from {', '.join(FEATURE_EXTRACTORS)}")
    state: Any
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable or code-carrying file ends here
        raise ModelError(f"{path}: not a plain weights file ({str(exc).splitlines()[0][:120]})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    return FEATURE_EXTRACTORS[name](state)


def slices_to_images(volume_hu: np.ndarray, side: int, window=(-1024.0, 3000.0), max_slices: int | None = None):
    """Axial slices -> [N, 3, side, side] float in [0, 1] (HU window, grey copied to RGB, bilinear resize)."""
    arr = np.asarray(volume_hu, np.float32)
    if max_slices and len(arr) > max_slices:
        arr = arr[np.linspace(0, len(arr) - 1, max_slices).round().astype(int)]
    x = torch.from_numpy((np.clip(arr, *window) - window[0]) / (window[1] - window[0]))[:, None]
    x = torch.nn.functional.interpolate(x, size=(side, side), mode="bilinear", align_corners=False)
    return x.expand(-1, 3, -1, -1)


@torch.no_grad()
def features(extractor: torch.nn.Module, images: torch.Tensor, batch: int = 32) -> np.ndarray:
    return torch.cat([extractor(images[i:i + batch]).flatten(1) for i in range(0, len(images), batch)]).double().numpy()


def frechet_distance(fa: np.ndarray, fb: np.ndarray) -> float:
    """FID between two feature sets [N, D] (Gaussian fit to each)."""
    if len(fa) < 2 or len(fb) < 2:
        raise InputError("FID needs at least 2 feature vectors per set")
    mu_a, mu_b = fa.mean(0), fb.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(fa, rowvar=False)), np.atleast_2d(np.cov(fb, rowvar=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")            # a singular product is handled just below
        covmean = linalg.sqrtm(s_a @ s_b)
        if not np.isfinite(covmean).all():         # regularise, as the reference FID code does
            eps = np.eye(len(s_a)) * 1e-6
            covmean = linalg.sqrtm((s_a + eps) @ (s_b + eps))
    covmean = np.real(covmean)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * np.trace(covmean))


def kernel_inception_distance(fa: np.ndarray, fb: np.ndarray, subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID: mean and std over random subsets of the unbiased MMD^2 with the cubic polynomial kernel."""
    m = min(len(fa), len(fb), subset_size)
    if m < 2:
        raise InputError("KID needs at least 2 feature vectors per set")
    rng = np.random.default_rng(seed)
    d = fa.shape[1]
    vals = []
    for _ in range(subsets):
        a, b = fa[rng.choice(len(fa), m, replace=False)], fb[rng.choice(len(fb), m, replace=False)]
        kaa, kbb, kab = (a @ a.T / d + 1) ** 3, (b @ b.T / d + 1) ** 3, (a @ b.T / d + 1) ** 3
        mmd = ((kaa.sum() - np.trace(kaa)) + (kbb.sum() - np.trace(kbb))) / (m * (m - 1)) - 2 * kab.mean()
        vals.append(mmd)
    return float(np.mean(vals)), float(np.std(vals))


class DistributionAccumulator:
    """FID/KID over a cohort, one case at a time: only each case's slice features are kept, not its volumes.

    >>> acc = DistributionAccumulator(*load_feature_extractor("inception.pth"))
    >>> for pred, reference in cases:
    ...     acc.add(pred, reference)                  # HU arrays [z, y, x] (or Volumes)
    >>> acc.result()                               # {"slices": [n, n], "fid": ..., "kid": ..., "kid_std": ...}
    """

    def __init__(self, extractor: torch.nn.Module, side: int, max_slices: int = 64, name: str | None = None):
        self.extractor, self.side, self.max_slices, self.name = extractor, side, max_slices, name
        self._pred: list[np.ndarray] = []
        self._reference: list[np.ndarray] = []

    def _features(self, volume_hu) -> np.ndarray:
        arr = getattr(volume_hu, "array", volume_hu)
        return features(self.extractor, slices_to_images(arr, self.side, max_slices=self.max_slices))

    def add(self, pred_hu, reference_hu) -> None:
        """Add one case: its predicted and reference volumes (at most ``max_slices`` axial slices each)."""
        self._pred.append(self._features(pred_hu))
        self._reference.append(self._features(reference_hu))

    def __len__(self) -> int:
        return len(self._pred)

    def result(self) -> dict:
        """``{"extractor", "slices": [n_pred, n_target], "fid", "kid", "kid_std"}`` over every case added."""
        if not self._pred:
            raise InputError("no case was added: FID/KID need slices")
        fa, fb = np.concatenate(self._pred), np.concatenate(self._reference)
        kid, kid_std = kernel_inception_distance(fa, fb)
        return {"extractor": self.name, "slices": [len(fa), len(fb)], "fid": frechet_distance(fa, fb),
                "kid": kid, "kid_std": kid_std}
