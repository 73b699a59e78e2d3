"""Training data streams: the kinds of data a training method declares it trains on.

======== ==============================================================================
stream   batches of ``{"A": patches, "B": patches}``
======== ==============================================================================
unpaired A and B patches drawn independently from two folders (CycleGAN, CUT)
paired   the same patch of a case's A and B volumes, matched by file stem (pix2pix)
======== ==============================================================================
"""
from __future__ import annotations

from pathlib import Path

from medgan.data.hu import HUPreset
from medgan.errors import ConfigError
from medgan.io.cases import list_volumes, match_pairs

STREAMS = ("unpaired", "paired")


def make_loader(kind: str, folder_a: str | Path, folder_b: str | Path, preset: HUPreset, spec, batch_size: int,
                rank: int = 0, world_size: int = 1, seed: int = 0, hu_map_a=None):
    """The endless batch iterator of the stream ``kind`` over two folders of cases.

    Args:
        kind: one of :data:`STREAMS`.
        folder_a, folder_b: the domain folders (``data.train_a``, ``data.train_b``).
        preset: the HU window that maps HU to [-1, 1].
        spec: the patch sampling (:class:`medgan.data.unpaired.PatchSpec`).
        batch_size: patches per batch and domain.
        rank, world_size, seed: this process's share of the cases under DDP.
        hu_map_a: an HU -> HU map applied to A before normalisation (an input calibration), or None.
    """
    if kind == "unpaired":
        from medgan.data.unpaired import UnpairedLoader

        return UnpairedLoader(list_volumes(folder_a), list_volumes(folder_b), preset, spec, batch_size, rank=rank,
                              world_size=world_size, seed=seed, hu_map_a=hu_map_a)
    if kind == "paired":
        from medgan.data.paired import PairedLoader

        pairs = match_pairs(folder_a, folder_b, what="paired data: ")
        return PairedLoader(pairs, preset, spec, batch_size, rank=rank, world_size=world_size, seed=seed,
                            hu_map_a=hu_map_a)
    raise ConfigError(f"unknown data stream '{kind}'; choose from {', '.join(STREAMS)}")
