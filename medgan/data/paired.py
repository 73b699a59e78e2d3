"""Paired patch sampling for registered A/B volumes (paired mode, pix2pix).

Each TorchIO subject holds A as ``image`` and B as ``target``; the weighted sampler
takes the *same* patch from both, and the random flip moves both together.  Pairs
are matched by file name between the two folders and must share one grid.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import torch
import torchio as tio

from medgan.data.hu import HUPreset
from medgan.data.unpaired import PatchSpec, make_transform, patch_reader, patches_to_network, queue_from_subjects
from medgan.errors import InputError

if TYPE_CHECKING:
    from torch.utils.data.distributed import DistributedSampler


class _CheckSameGrid(tio.Transform):
    def apply_transform(self, subject: tio.Subject) -> tio.Subject:
        a, b = cast(tio.Image, subject["image"]), cast(tio.Image, subject["target"])
        if a.shape != b.shape or not torch.allclose(torch.as_tensor(a.affine), torch.as_tensor(b.affine), atol=1e-3):
            raise InputError(f"paired mode: {subject['case']}: A and B are not on the same grid (register them first)")
        return subject


def make_paired_queue(pairs: Sequence[tuple[Path, Path]], preset: HUPreset, spec: PatchSpec,
                      subject_sampler=None, hu_map_a=None) -> tio.Queue:
    reader = patch_reader(spec)
    subjects = [tio.Subject(image=tio.ScalarImage(a, reader=reader), target=tio.ScalarImage(b, reader=reader),
                            case=Path(a).name) for a, b in pairs]
    transform = tio.Compose([_CheckSameGrid(), make_transform(preset, spec, hu_map_a, ["image"])])
    return queue_from_subjects(subjects, transform, spec, subject_sampler)


class PairedLoader:
    """Endless iterator of ``{"A": tensor, "B": tensor}`` batches of co-located patches."""

    def __init__(self, pairs, preset: HUPreset, spec: PatchSpec, batch_size: int,
                 rank: int = 0, world_size: int = 1, seed: int = 0, hu_map_a=None):
        self.spec, self.batch_size = spec, batch_size
        self.sampler: DistributedSampler | None = None
        if world_size > 1:
            from torch.utils.data.distributed import DistributedSampler

            # the sampler only needs len(dataset): a range of the pair indices is enough
            self.sampler = DistributedSampler(range(len(pairs)), num_replicas=world_size,  # type: ignore[arg-type]
                                              rank=rank, shuffle=True, seed=seed, drop_last=False)
        self.queue = make_paired_queue(pairs, preset, spec, self.sampler, hu_map_a)
        self.epoch = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        while True:
            if self.sampler is not None:
                self.sampler.set_epoch(self.epoch)
            for batch in tio.SubjectsLoader(self.queue, batch_size=self.batch_size, num_workers=0, drop_last=True):
                yield {"A": patches_to_network(batch["image"][tio.DATA], self.spec.spatial_dims),
                       "B": patches_to_network(batch["target"][tio.DATA], self.spec.spatial_dims)}
            self.epoch += 1
