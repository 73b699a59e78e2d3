"""Evaluating translations against reference CTs: one case, or matching folders of cases.

A prediction, its reference and (optionally) the untranslated input and a mask
must share one grid exactly.  Nothing is resampled silently: a different size,
spacing, origin or direction is an error naming the difference, because a
metric computed after an unnoticed resampling is not the metric people think.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.errors import InputError, MedganError
from medgan.evaluation.metrics import image_metrics
from medgan.evaluation.statistics import summarize
from medgan.io import Volume, read_volume
from medgan.io.formats import strip_suffix

#: metric columns, in report order
METRICS = ("mae", "me", "psnr", "ssim", "mae_air", "mae_soft_tissue", "mae_bone")


@dataclasses.dataclass
class CaseResult:
    case: str
    rows: dict[str, dict[str, float]]          #: image label ("input", "prediction") -> metrics
    mask_source: str                           #: "given" or "automatic body mask"
    volumes: dict[str, Volume] = dataclasses.field(default_factory=dict, repr=False)
    mask: np.ndarray | None = dataclasses.field(default=None, repr=False)

    def relabel(self, pred_label: str = "prediction", input_label: str = "input") -> "CaseResult":
        """Rename the "prediction"/"input" rows and volumes (e.g. to "sCT"/"CBCT") for tables and figures."""
        names = {"prediction": pred_label, "input": input_label}
        self.rows = {names.get(k, k): v for k, v in self.rows.items()}
        self.volumes = {names.get(k, k): v for k, v in self.volumes.items()}
        return self


def _same_grid(what: str, vol: Volume, target: Volume) -> None:
    diff = target.grid_difference(vol)
    if diff is not None:
        raise InputError(f"{what} and target are on different grids ({diff}); "
                         "medgan evaluate does not resample - resample one onto the other first")


def _load(v: Volume | str | Path, what: str) -> Volume:
    if isinstance(v, Volume):
        return v
    if not Path(v).exists():
        raise InputError(f"{what} {v} does not exist")
    return read_volume(v)


def evaluate_case(pred: Volume | str | Path, target: Volume | str | Path, mask: Volume | str | Path | None = None,
                  input: Volume | str | Path | None = None, case: str | None = None,
                  pred_label: str = "prediction", input_label: str = "input") -> CaseResult:
    """Metrics of ``pred`` (and of the untranslated ``input`` as a baseline) against ``target``.

    Without ``mask`` the body mask of the target is used (threshold at -500 HU,
    largest connected component, holes filled), so couch and air around the
    patient do not flatter the MAE.
    """
    pred, target = _load(pred, "prediction"), _load(target, "target")
    _same_grid("prediction", pred, target)
    volumes = {}
    if input is not None:
        input = _load(input, "input")
        _same_grid("input", input, target)
        volumes[input_label] = input
    volumes[pred_label] = pred
    if mask is not None:
        mask_vol = _load(mask, "mask")
        _same_grid("mask", mask_vol, target)
        m = np.asarray(mask_vol.array) > 0
        source = "given"
        if not m.any():
            raise InputError("the mask is empty")
    else:
        m = body_mask(target.array)
        source = "automatic body mask"
        if not m.any():
            raise InputError("no body found in the target (nothing above -500 HU); give a mask with --mask")
    rows = {label: image_metrics(v.array, target.array, m) for label, v in volumes.items()}
    name = case or strip_suffix(Path(str(pred.meta.get("path", "case"))).name)
    volumes["target"] = target
    return CaseResult(name, rows, source, volumes, m)


def match_cases(pred_dir: Path, others: dict[str, Path | None]) -> list[tuple[str, Path, dict[str, Path | None]]]:
    """Pair each case in ``pred_dir`` with the same-named case (any format) in each other folder.

    A case with no counterpart keeps ``None`` there; the caller reports it as failed.
    """
    from medgan.data.unpaired import list_volumes

    preds = list_volumes(pred_dir)
    index = {k: ({strip_suffix(p.name): p for p in list_volumes(d)} if d is not None else None)
             for k, d in others.items()}
    matched = []
    for p in preds:
        name = strip_suffix(p.name)
        matched.append((name, p, {k: (idx.get(name) if idx is not None else None) for k, idx in index.items()}))
    return matched


def evaluate_folders(pred_dir: Path, target_dir: Path, mask_dir: Path | None = None, input_dir: Path | None = None,
                     on_case: Callable[[CaseResult], None] | None = None, progress=None,
                     ) -> tuple[list[CaseResult], list[tuple[str, str]]]:
    """Evaluate every case of ``pred_dir``; returns the results and ``(case, error)`` for the failures."""
    pairs = match_cases(pred_dir, {"target": target_dir, "mask": mask_dir, "input": input_dir})
    results, failures = [], []
    for name, pred, other in (progress(pairs) if progress else pairs):
        try:
            for key, folder in (("target", target_dir), ("mask", mask_dir), ("input", input_dir)):
                if folder is not None and other[key] is None:
                    raise InputError(f"no {key} named {name} in {folder}")
            res = evaluate_case(pred, other["target"], other["mask"], other["input"], case=name)
            if on_case:
                on_case(res)
            res.volumes, res.mask = {}, None     # keep memory flat over large cohorts
            results.append(res)
        except MedganError as exc:
            failures.append((name, str(exc)))
    return results, failures


def summary_table(results: list[CaseResult], seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """label -> metric -> {n, mean, std, ci_low, ci_high} over cases (bootstrap 95% CI of the mean)."""
    labels = []
    for r in results:
        labels += [k for k in r.rows if k not in labels]
    return {label: {m: summarize([r.rows[label][m] for r in results if label in r.rows], seed=seed)
                    for m in METRICS} for label in labels}
