"""``translate``: a patient volume in, its translation out on exactly the same grid."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy import ndimage

from medgan.data.resample import needs_resampling, resample_like, resample_to_spacing
from medgan.engine.device import resolve_device
from medgan.errors import ModelError
from medgan.inference.engine import run_generator
from medgan.inference.model import TranslationModel, load_model
from medgan.io import Volume, read_volume
from medgan.io.orientation import CANONICAL, from_orientation, to_orientation
from medgan.utils.progress import bar


@dataclasses.dataclass
class TranslateOptions:
    device: str = "auto"
    amp: bool = True
    batch_size: int = 16
    patch_size: Sequence[int] | None = None
    overlap: float = 0.25
    sw_batch_size: int = 4
    quiet: bool = True


def translate(volume: Volume | str | Path, model: TranslationModel | str | Path | None = None,
              options: TranslateOptions | None = None, qa_map: bool = False,
              series_uid: str | None = None) -> Volume | tuple[Volume, Volume]:
    """Translate ``volume`` (A -> B, e.g. CBCT -> synthetic CT).

    Returns a float32 HU volume on the input's exact grid (size, spacing, origin,
    direction), clipped to the model's HU preset.  With ``qa_map=True`` also
    returns the smoothed cycle-consistency error |G_BA(G_AB(x)) - x| in HU.
    """
    opts = options or TranslateOptions()
    if not isinstance(volume, Volume):
        volume = read_volume(volume, series_uid=series_uid)
    if not isinstance(model, TranslationModel):
        model = load_model(model)
    # the model runs in its canonical (axial) orientation; the result goes back to the stored one exactly
    original, (volume, orient) = volume, to_orientation(volume, getattr(model.config.data, "orientation", CANONICAL))
    if orient.slicing_changed and not opts.quiet:
        print(f"input stored {orient.source}: translating on axial slices ({orient.target}, the model's "
              f"orientation) and writing back in {orient.source}", file=sys.stderr)
    if qa_map and model.g_ba is None:
        raise ModelError(f"{model.source} is a paired (pix2pix) model: it has no B->A generator, so there is "
                         "no cycle-consistency QA map; drop --qa-map")
    device = resolve_device(opts.device, quiet=opts.quiet)
    model.to(device)
    patch = opts.patch_size or (model.config.data.patch_size if model.spatial_dims == 3 else None)
    kw = dict(preset=model.preset, spatial_dims=model.spatial_dims, device=device, batch_size=opts.batch_size,
              patch_size=patch, overlap=opts.overlap, sw_batch_size=opts.sw_batch_size,
              amp=opts.amp and device.type == "cuda")
    work = volume
    if needs_resampling(volume, model.config.data.spacing):
        # the network sees voxels of the size it was trained on; results go back onto the input grid
        work = resample_to_spacing(volume, model.config.data.spacing, default=model.preset.lo)
        if not opts.quiet:
            fmt = lambda s: " x ".join(f"{v:.3g}" for v in s)  # noqa: E731
            print(f"resampling {fmt(volume.spacing)} mm -> model spacing {fmt(work.spacing)} mm and back",
                  file=sys.stderr)
    hu = np.asarray(work.array, dtype=np.float32)
    pbar = bar(total=hu.shape[0] * (2 if qa_map else 1), desc="translate", unit="slice", quiet=opts.quiet)
    kw["progress"] = pbar.update
    with torch.inference_mode():
        sct = run_generator(model.g_ab, hu, **kw)
    qa = None
    if qa_map:
        with torch.inference_mode():
            rec = run_generator(model.g_ba, sct, **kw)
        err = np.abs(rec - model.preset.denormalize(model.preset.normalize(hu)))
        qa = ndimage.gaussian_filter(err, sigma=1.0).astype(np.float32)
    sct_vol = work.with_array(sct)
    if work is not volume:
        sct_vol = resample_like(sct_vol, volume, default=model.preset.lo)
        sct_vol.array = np.clip(sct_vol.array, model.preset.lo, model.preset.hi)
        qa = resample_like(work.with_array(qa), volume, default=0.0).array if qa is not None else None
    pbar.close()
    out = from_orientation(sct_vol.array.astype(np.float32), orient, original, modality="CT (synthetic)")
    out.meta.pop("path", None)
    if qa is None:
        return out
    qa_vol = from_orientation(qa.astype(np.float32), orient, original, modality="medgan QA map (cycle error, HU)")
    qa_vol.meta.pop("path", None)
    return out, qa_vol
