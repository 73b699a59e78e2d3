"""Paired patch sampling for registered A/B volumes (paired mode, pix2pix).

Each TorchIO subject holds A as ``image`` and B as ``target``; the weighted sampler
takes the *same* patch from both, and the random flip moves both together.  Pairs
are matched by file name between the two folders and must share one grid.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torchio as tio

from medgan.data.hu import HUPreset
from medgan.data.unpaired import PatchSpec, _reader, list_volumes, make_transform, patches_to_network
from medgan.errors import InputError


def match_pairs(folder_a: str | Path, folder_b: str | Path) -> list[tuple[Path, Path]]:
    b_by_name = {p.name: p for p in list_volumes(folder_b)}
    pairs = [(a, b_by_name[a.name]) for a in list_volumes(folder_a) if a.name in b_by_name]
    if not pairs:
        raise InputError(f"paired mode: no file names in common between {folder_a} and {folder_b}")
    return pairs


class _CheckSameGrid(tio.Transform):
    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        a, b = subject["image"], subject["target"]
        if a.shape != b.shape or not torch.allclose(torch.as_tensor(a.affine), torch.as_tensor(b.affine), atol=1e-3):
            raise InputError(f"paired mode: {subject['case']}: A and B are not on the same grid (register them first)")
        return subject


def make_paired_queue(pairs: Sequence[tuple[Path, Path]], preset: HUPreset, spec: PatchSpec,
                      subject_sampler=None) -> tio.Queue:
    px, py, pz = spec.torchio_patch_size()
    reader = functools.partial(_reader, spacing=spec.spacing, min_shape_zyx=(pz, py, px))
    subjects = [tio.Subject(image=tio.ScalarImage(a, reader=reader), target=tio.ScalarImage(b, reader=reader),
                            case=Path(a).name) for a, b in pairs]
    transform = tio.Compose([_CheckSameGrid(), make_transform(preset, spec)])
    dataset = tio.SubjectsDataset(subjects, transform=transform)
    sampler = tio.WeightedSampler(spec.torchio_patch_size(), probability_map="sampling_map")
    return tio.Queue(dataset, max_length=spec.queue_length, samples_per_volume=spec.samples_per_volume,
                     sampler=sampler, num_workers=spec.num_workers, subject_sampler=subject_sampler,
                     shuffle_subjects=subject_sampler is None, shuffle_patches=True, verbose=False)


class PairedLoader:
    """Endless iterator of ``{"A": tensor, "B": tensor}`` batches of co-located patches."""

    def __init__(self, pairs, preset: HUPreset, spec: PatchSpec, batch_size: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0):
        self.spec, self.batch_size, self.sampler = spec, batch_size, None
        if world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            self.sampler = DistributedSampler(range(len(pairs)), num_replicas=world_size, rank=rank, shuffle=True,
                                              seed=seed, drop_last=False)
        self.queue = make_paired_queue(pairs, preset, spec, self.sampler)
        self.epoch = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch)
            for batch in tio.SubjectsLoader(self.queue, batch_size=self.batch_size, num_workers=0, drop_last=True):
                yield {"A": patches_to_network(batch["image"][tio.DATA], self.spec.spatial_dims),
                       "B": patches_to_network(batch["target"][tio.DATA], self.spec.spatial_dims)}
            self.epoch += 1
