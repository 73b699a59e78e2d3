"""Unpaired patch sampling over two folders of volumes, with TorchIO queues.

Domain A (e.g. CBCT) and domain B (e.g. CT) are two independent
:class:`torchio.Queue` objects, so a batch never pairs a volume with its own
counterpart by construction.  Each queue loads subjects lazily through
:func:`medgan.io.read_volume` (any format medgan reads, DICOM included), adds a
body-mask sampling map, clips and scales HU with the named preset, applies the
optional augmentation and samples 2D slices (``spatial_dims=2``) or 3D patches
weighted by the body mask.  TorchIO's ``subject_sampler`` takes a
``DistributedSampler`` for per-rank sharding; its worker pool loads each
subject once per pass, so workers do not duplicate samples.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
import torchio as tio

from medgan.config.schema import DataConfig, ExperimentConfig, ModelConfig
from medgan.data.body_mask import body_mask
from medgan.data.hu import HUPreset
from medgan.data.resample import needs_resampling, resample_to_spacing
from medgan.errors import InputError
from medgan.io import Volume, read_volume

# listing and matching cases moved to medgan.io.cases (no TorchIO import); re-exported for older imports
from medgan.io.cases import list_volumes as list_volumes
from medgan.io.cases import match_pairs as match_pairs
from medgan.io.orientation import CANONICAL, to_orientation

if TYPE_CHECKING:
    from torch.utils.data.distributed import DistributedSampler

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def volume_to_torchio(volume: Volume) -> tuple[torch.Tensor, np.ndarray]:
    """Volume ([z, y, x], LPS) -> TorchIO's (tensor [1, x, y, z], RAS affine)."""
    tensor = torch.from_numpy(np.ascontiguousarray(volume.array.transpose(2, 1, 0)[None].astype(np.float32)))
    return tensor, LPS_TO_RAS @ volume.index_to_physical()


def pad_to_size(volume: Volume, min_shape_zyx: Sequence[int], value: float = -1024.0) -> Volume:
    """Pad with air, centred, so every axis is at least ``min_shape_zyx`` (the origin moves, the anatomy stays)."""
    before = [max(0, m - s) // 2 for s, m in zip(volume.shape, min_shape_zyx, strict=True)]
    after = [max(0, m - s) - b for s, m, b in zip(volume.shape, min_shape_zyx, before, strict=True)]
    if not any(before) and not any(after):
        return volume
    arr = np.pad(volume.array, list(zip(before, after, strict=True)), constant_values=value)
    shift = volume.direction_matrix @ (np.asarray(before[::-1], float) * np.asarray(volume.spacing))
    return Volume(arr, volume.spacing, tuple(np.asarray(volume.origin) - shift), volume.direction, dict(volume.meta))


def _reader(path, spacing=None, min_shape_zyx=None, orientation=CANONICAL):
    volume = read_volume(path)
    if orientation:
        # axial slices in the model's orientation, whatever the file's storage order (exact permutation/flip)
        volume, _ = to_orientation(volume, orientation)
    if needs_resampling(volume, spacing):
        volume = resample_to_spacing(volume, spacing)
    if min_shape_zyx is not None:
        # a patch must fit inside the image: small volumes (or small after resampling) get air around them
        volume = pad_to_size(volume, min_shape_zyx)
    return volume_to_torchio(volume)


class AddBodyMask(tio.Transform):
    """Adds ``sampling_map``: the body mask (dilated a little) with a small floor outside it."""

    def __init__(self, floor: float = 0.02, **kwargs):
        super().__init__(**kwargs)
        self.floor = floor

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        image = cast(tio.Image, subject["image"])
        hu = image.data[0].numpy()
        mask = body_mask(hu.transpose(2, 1, 0)).transpose(2, 1, 0)
        prob = np.where(mask, 1.0, self.floor).astype(np.float32)
        subject.add_image(tio.LabelMap(tensor=torch.from_numpy(prob)[None], affine=image.affine),
                          "sampling_map")
        return subject


_MODEL, _DATA = ModelConfig(), DataConfig()


@dataclasses.dataclass
class PatchSpec:
    """How patches are drawn from the volumes.

    The defaults are the configuration's (:class:`medgan.config.DataConfig` and ``ModelConfig``):
    one place for data defaults.  A trainer builds it with :meth:`from_config`.
    """

    spatial_dims: int = _MODEL.spatial_dims
    patch_size: Sequence[int] = tuple(_DATA.patch_size)  #: (y, x) in 2D, (z, y, x) in 3D
    samples_per_volume: int = _DATA.samples_per_volume
    queue_length: int = _DATA.queue_length
    num_workers: int = _DATA.num_workers
    flip: bool = _DATA.flip
    affine: bool = _DATA.affine
    spacing: Sequence[float] | None = _DATA.spacing  #: resample every volume to this (see medgan.data.resample)
    orientation: str | None = _DATA.orientation   #: reorient every volume to this first (see medgan.io.orientation)
    context_slices: int = _MODEL.context_slices   #: 2.5D: 2D patches carry this many adjacent slices as channels

    @classmethod
    def from_config(cls, cfg: ExperimentConfig) -> PatchSpec:
        d, m = cfg.data, cfg.model
        return cls(m.spatial_dims, tuple(d.patch_size), d.samples_per_volume, d.queue_length, d.num_workers, d.flip,
                   d.affine, d.spacing, d.orientation, m.context_slices)

    def torchio_patch_size(self) -> tuple[int, int, int]:
        ps = tuple(int(p) for p in self.patch_size)
        if self.spatial_dims == 2:
            if len(ps) != 2:
                raise InputError("2D patch_size needs two numbers (y, x)")
            return (ps[1], ps[0], int(self.context_slices))
        if len(ps) != 3:
            raise InputError("3D patch_size needs three numbers (z, y, x)")
        return (ps[2], ps[1], ps[0])


class ApplyHUMap(tio.IntensityTransform):
    """Applies an HU -> HU map (e.g. a :class:`medgan.calibration.HUCalibration`) to intensity images."""

    def __init__(self, hu_map, **kwargs):
        super().__init__(**kwargs)
        self.hu_map = hu_map
        self.args_names = ["hu_map"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            image.set_data(torch.from_numpy(np.asarray(self.hu_map(image.data.numpy()), np.float32)))
        return subject


class NormalizeHU(tio.IntensityTransform):
    """HU -> [-1, 1] by the preset's :meth:`~medgan.data.hu.HUPreset.normalize`, the normalisation
    translation uses too (clip to the preset's window, then scale)."""

    def __init__(self, preset: HUPreset, **kwargs):
        super().__init__(**kwargs)
        self.preset = preset
        self.args_names = ["preset"]

    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        for image in self.get_images(subject):
            image.set_data(self.preset.normalize(image.data.float()))
        return subject


def make_transform(preset: HUPreset, spec: PatchSpec, hu_map=None, hu_map_include=None) -> tio.Compose:
    """Body sampling map, [optional HU map (``hu_map_include``: image names it applies to)], HU -> [-1, 1], augment."""
    steps: list[tio.Transform] = [AddBodyMask()]
    if hu_map is not None:
        steps.append(ApplyHUMap(hu_map, include=hu_map_include))
    steps.append(NormalizeHU(preset))
    if spec.flip:
        # torchio takes anatomical axis names here; its type hint lists only indices
        steps.append(tio.RandomFlip(axes=("LR",), flip_probability=0.5))  # type: ignore[arg-type]
    if spec.affine:
        steps.append(tio.RandomAffine(scales=0.05, degrees=(0, 0, 5) if spec.spatial_dims == 2 else 5,
                                      default_pad_value=-1.0))
    return tio.Compose(steps)


def patch_reader(spec: PatchSpec):
    """The TorchIO reader for ``spec``: medgan I/O, resampled to ``spec.spacing``, padded to fit a patch."""
    px, py, pz = spec.torchio_patch_size()
    return functools.partial(_reader, spacing=spec.spacing, min_shape_zyx=(pz, py, px), orientation=spec.orientation)


def make_queue(paths: Sequence[Path], preset: HUPreset, spec: PatchSpec, subject_sampler=None,
               hu_map=None) -> tio.Queue:
    reader = patch_reader(spec)
    subjects = [tio.Subject(image=tio.ScalarImage(p, reader=reader), case=Path(p).name) for p in paths]
    return queue_from_subjects(subjects, make_transform(preset, spec, hu_map), spec, subject_sampler)


def queue_from_subjects(subjects, transform, spec: PatchSpec, subject_sampler=None) -> tio.Queue:
    """Body-weighted patch queue over ``subjects`` (each gets its ``sampling_map`` from the transform)."""
    dataset = tio.SubjectsDataset(subjects, transform=transform)
    sampler = tio.WeightedSampler(spec.torchio_patch_size(), probability_map="sampling_map")
    return tio.Queue(dataset, max_length=spec.queue_length, samples_per_volume=spec.samples_per_volume,
                     sampler=sampler, num_workers=spec.num_workers, subject_sampler=subject_sampler,
                     shuffle_subjects=subject_sampler is None, shuffle_patches=True, verbose=False)


def patches_to_network(batch_image: torch.Tensor, spatial_dims: int) -> torch.Tensor:
    """TorchIO batch [N, 1, x, y, z] -> network layout [N, z, y, x] (2D: the k slices of a 2.5D patch
    become channels, k = 1 for plain 2D) or [N, 1, z, y, x] (3D)."""
    if spatial_dims == 2:
        return batch_image[:, 0].permute(0, 3, 2, 1).contiguous()
    return batch_image.permute(0, 1, 4, 3, 2).contiguous()


class UnpairedLoader:
    """Endless iterator of ``{"A": tensor, "B": tensor}`` batches from two independent queues."""

    def __init__(self, paths_a, paths_b, preset: HUPreset, spec: PatchSpec, batch_size: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, hu_map_a=None):
        self.spec = spec
        self.batch_size = batch_size
        self.samplers = []
        queues = []
        for paths, hu_map in ((paths_a, hu_map_a), (paths_b, None)):
            sub_sampler: DistributedSampler | None = None
            if world_size > 1:
                from torch.utils.data.distributed import DistributedSampler

                # the sampler only needs len(dataset): a range of the volume indices is enough
                sub_sampler = DistributedSampler(range(len(paths)), num_replicas=world_size,  # type: ignore[arg-type]
                                                 rank=rank, shuffle=True, seed=seed, drop_last=False)
                self.samplers.append(sub_sampler)
            queues.append(make_queue(paths, preset, spec, sub_sampler, hu_map))
        self.queues = queues
        self.epoch = 0

    def _loader(self, queue):
        return tio.SubjectsLoader(queue, batch_size=self.batch_size, num_workers=0, drop_last=True)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            for s in self.samplers:
                s.set_epoch(self.epoch)
            it_a, it_b = iter(self._loader(self.queues[0])), iter(self._loader(self.queues[1]))
            while True:
                try:
                    a, b = next(it_a), next(it_b)
                except StopIteration:
                    break
                yield {"A": patches_to_network(a["image"][tio.DATA], self.spec.spatial_dims),
                       "B": patches_to_network(b["image"][tio.DATA], self.spec.spatial_dims)}
            self.epoch += 1
