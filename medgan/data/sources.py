"""Source patients of pseudo-patients, and splits that keep each source with all its pseudo-patients.

``medgan pseudo-patients`` writes, beside each pseudo-patient ``NAME.nii.gz``, a JSON sidecar
``NAME.json`` whose ``"source"`` names the real patient it was made from.  A fold that holds out a
real patient must hold out every pseudo-patient of it too, or the training set has seen that
patient's anatomy.  Cases without a sidecar are their own source.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from medgan.errors import InputError
from medgan.io.cases import index_cases

#: the sidecar of a case: ``NAME.json`` beside ``NAME.nii.gz``
SIDECAR_SUFFIX = ".json"


def sidecar_path(volume_path: str | Path, name: str) -> Path:
    """The sidecar of case ``name`` in the folder of ``volume_path``."""
    return Path(volume_path).parent / f"{name}{SIDECAR_SUFFIX}"


def read_source(sidecar: str | Path) -> str:
    """The ``"source"`` recorded in a pseudo-patient sidecar."""
    try:
        data = json.loads(Path(sidecar).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read the pseudo-patient sidecar {sidecar}: {exc}") from None
    source = data.get("source") if isinstance(data, dict) else None
    if not isinstance(source, str) or not source:
        raise InputError(f"{sidecar} records no \"source\" patient")
    return source


def source_groups(folder: str | Path) -> dict[str, str]:
    """case -> source patient for every case in ``folder`` (its sidecar's source, else the case itself)."""
    groups = {}
    for name, path in index_cases(folder).items():
        side = sidecar_path(path, name)
        groups[name] = read_source(side) if side.is_file() else name
    return groups


def merge_groups(*groups: dict[str, str]) -> dict[str, str]:
    """One case -> source map from several folders' maps; a case named twice with two sources is an error."""
    out: dict[str, str] = {}
    for g in groups:
        for case, source in g.items():
            if out.get(case, source) != source:
                raise InputError(f"case {case!r} is recorded with two source patients ({out[case]} and {source})")
            out[case] = source
    return out


def split_by_source(groups: dict[str, str], held_out: Iterable[str]) -> tuple[list[str], list[str]]:
    """``(train cases, held-out cases)``, sorted: every case whose source is in ``held_out`` is held out.

    ``held_out`` names source patients; an unknown one is an :class:`InputError` (a typo would otherwise
    hold out nothing).
    """
    held = set(held_out)
    sources = set(groups.values())
    unknown = sorted(held - sources)
    if unknown:
        raise InputError(f"unknown source patient(s) {', '.join(unknown)}; "
                         f"the sources are {', '.join(sorted(sources))}")
    test = sorted(c for c, s in groups.items() if s in held)
    train = sorted(c for c, s in groups.items() if s not in held)
    return train, test


def leave_one_source_out(groups: dict[str, str], sources: Sequence[str] | None = None
                         ) -> list[tuple[str, list[str], list[str]]]:
    """``(held-out source, train cases, held-out cases)`` for each source (default: every source, sorted)."""
    chosen = sorted(set(groups.values())) if sources is None else list(sources)
    return [(s, *split_by_source(groups, [s])) for s in chosen]
