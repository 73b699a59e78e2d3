"""Evaluating translations against reference CTs: one case, or matching folders of cases.

A prediction, its reference and (optionally) the untranslated input, baseline
predictions, a mask, a FOV mask and reference labels must share one grid
exactly.  Nothing is resampled silently: a different size, spacing, origin or
direction is an error naming the difference, because a metric computed after an
unnoticed resampling is not the metric people think.

The evaluation mask (``mask_mode``):

* ``auto`` (default): the given ``mask`` if any, else body(reference) ∩ FOV(input)
  when an input is given, else body(reference);
* ``body``: body mask of the reference (threshold -500 HU, largest component, holes filled);
* ``body-fov``: body(reference) ∩ FOV of the input (``fov`` if given, else estimated
  from the input's constant outside-FOV fill, :mod:`medgan.data.fov`);
* ``given``: the ``mask`` (every non-zero voxel).

Every :class:`CaseResult` names the mask it used (``mask_source``).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Hashable, Mapping
from pathlib import Path

import numpy as np

from medgan.data.body_mask import body_mask
from medgan.errors import InputError, MedganError
from medgan.evaluation.metrics import DEFAULT_PROTOCOL, get_protocol, image_metrics
from medgan.evaluation.statistics import paired_comparison, summarize
from medgan.io import Volume, read_volume
from medgan.io.formats import strip_suffix
from medgan.io.orientation import onto_grid
from medgan.io.validate import check_hu

#: metric columns of the default protocol, in report order (the protocol's own: ``get_protocol(p).columns``)
METRICS = get_protocol(DEFAULT_PROTOCOL).columns
MASK_MODES = ("auto", "body", "body-fov", "given")


@dataclasses.dataclass
class CaseResult:
    case: str
    rows: dict[str, dict[str, float]]          #: image label ("input", baselines, "prediction") -> metrics
    mask_source: str                           #: which mask was used, in words
    volumes: dict[str, Volume] = dataclasses.field(default_factory=dict, repr=False)
    mask: np.ndarray | None = dataclasses.field(default=None, repr=False)
    protocol: str = DEFAULT_PROTOCOL
    patient: Hashable | None = None            #: patient id (several cases/fractions may share one)
    organs: dict[str, dict[str, dict[str, float]]] = dataclasses.field(default_factory=dict)
    #: organ metrics: image label -> organ -> {"dice", "hd95"} and/or {"mae", "me"}
    mask_fraction_outside_fov: float | None = None   #: share of the body outside the input's FOV

    def relabel(self, pred_label: str = "prediction", input_label: str = "input") -> CaseResult:
        """Rename the "prediction"/"input" rows and volumes (e.g. to "sCT"/"CBCT") for tables and figures."""
        names = {"prediction": pred_label, "input": input_label}
        self.rows = {names.get(k, k): v for k, v in self.rows.items()}
        self.volumes = {names.get(k, k): v for k, v in self.volumes.items()}
        self.organs = {names.get(k, k): v for k, v in self.organs.items()}
        return self


def _same_grid(what: str, vol: Volume, reference: Volume) -> Volume:
    """``vol`` on the reference's grid: itself, or, when it holds the very same grid stored in another voxel order
    (e.g. RAS vs LPS), exactly reoriented to the reference's (a permutation and flip, no resampling; with a notice)."""
    return onto_grid(vol, reference, what, "reference", "medgan evaluate does not resample - register or resample one "
                     "onto the other first (medgan register)")


def _load(v: Volume | str | Path, what: str, hu: bool = False, strict: bool = False) -> Volume:
    """``v`` read (or as given); ``hu``: refuse an image that is plainly not CT in HU (MR, 8-bit); ``strict``:
    refuse a gantry-tilted DICOM series (default: resampled onto an orthogonal grid, with a notice)."""
    if not isinstance(v, Volume):
        if not Path(v).exists():
            raise InputError(f"{what} {v} does not exist")
        v = read_volume(v, strict=strict)
    if hu:
        check_hu(v, f"{what} {v.meta.get('path') or ''}".strip())
    return v


def build_mask(reference: Volume, input: Volume | None = None, mask: Volume | None = None, fov: Volume | None = None,
               mask_mode: str = "auto") -> tuple[np.ndarray, str, float | None]:
    """``(mask, description, share of the body outside the FOV or None)`` for ``mask_mode``."""
    from medgan.data.fov import fov_mask

    if mask_mode not in MASK_MODES:
        raise InputError(f"unknown mask mode {mask_mode!r}; choose one of {', '.join(MASK_MODES)}")
    if mask_mode == "auto":
        mask_mode = "given" if mask is not None else ("body-fov" if input is not None or fov is not None else "body")
    if mask_mode == "given":
        if mask is None:
            raise InputError("mask mode 'given' needs a mask (--mask)")
        m = np.asarray(mask.array) > 0
        if not m.any():
            raise InputError("the mask is empty")
        return m, "given mask", None
    body = body_mask(reference.array)
    if not body.any():
        raise InputError("no body found in the reference (nothing above -500 HU); give a mask with --mask")
    if mask_mode == "body":
        return body, "body(CT)", None
    if fov is not None:
        f, what = np.asarray(fov.array) > 0, "FOV(given)"
    elif input is not None:
        f, what = fov_mask(input.array), "FOV(input)"
    else:
        raise InputError("mask mode 'body-fov' needs the input (--input) or a FOV mask (--fov)")
    m = body & f
    if not m.any():
        raise InputError("the body of the reference lies entirely outside the input's field of view")
    return m, f"body(CT) ∩ {what}", float(1.0 - m.sum() / body.sum())


def evaluate_case(pred: Volume | str | Path, reference: Volume | str | Path, mask: Volume | str | Path | None = None,
                  input: Volume | str | Path | None = None, case: str | None = None,
                  pred_label: str = "prediction", input_label: str = "input", *,
                  protocol: str = DEFAULT_PROTOCOL, mask_mode: str = "auto", fov: Volume | str | Path | None = None,
                  compare: Mapping[str, Volume | str | Path] | None = None, labels: Volume | str | Path | None = None,
                  seg_model=None, patient: Hashable | None = None, allow_non_hu: bool = False,
                  strict: bool = False) -> CaseResult:
    """Metrics of ``pred`` (and of ``input`` and each ``compare`` baseline) against ``reference``.

    ``protocol`` is ``synthrad2023`` or ``synthrad2025`` (:mod:`medgan.evaluation.metrics`).
    ``labels`` (reference organ labels on the reference's grid) adds the MAE per organ;
    ``seg_model`` (:class:`medgan.evaluation.organs.SegModel`) adds Dice / HD95 per organ
    between its segmentation of each image and of the reference (or ``labels`` when given).
    An image that is plainly not CT in HU (an MR series, 8-bit voxels) is refused unless ``allow_non_hu``;
    ``strict`` refuses a gantry-tilted DICOM series instead of resampling it.
    """
    pr = get_protocol(protocol)
    pred = _load(pred, "prediction", not allow_non_hu, strict=strict)
    reference = _load(reference, "reference", not allow_non_hu, strict=strict)
    pred = _same_grid("prediction", pred, reference)
    volumes: dict[str, Volume] = {}
    if input is not None:
        input = _load(input, "input", not allow_non_hu, strict=strict)
        input = _same_grid("input", input, reference)
        volumes[input_label] = input
    for label, v in (compare or {}).items():
        if label in (input_label, pred_label, "reference"):
            raise InputError(f"baseline label {label!r} is already used; choose another")
        v = _load(v, f"baseline {label}", not allow_non_hu, strict=strict)
        v = _same_grid(f"baseline {label}", v, reference)
        volumes[label] = v
    volumes[pred_label] = pred
    mask_vol = fov_vol = None
    if mask is not None:
        mask_vol = _load(mask, "mask", strict=strict)
        mask_vol = _same_grid("mask", mask_vol, reference)
    if fov is not None:
        fov_vol = _load(fov, "FOV mask", strict=strict)
        fov_vol = _same_grid("FOV mask", fov_vol, reference)
    m, source, outside = build_mask(reference, input, mask_vol, fov_vol, mask_mode)
    rows = {label: image_metrics(v.array, reference.array, m, pr) for label, v in volumes.items()}
    organs: dict = {}
    if labels is not None or seg_model is not None:
        from medgan.evaluation.organs import organ_metrics

        lab = None
        if labels is not None:
            lab = _load(labels, "labels", strict=strict)
            lab = _same_grid("labels", lab, reference)
        organs = organ_metrics(volumes, reference, lab, seg_model)
    name = case or strip_suffix(Path(str(pred.meta.get("path", "case"))).name)
    volumes["reference"] = reference
    return CaseResult(name, rows, source, volumes, m, pr.name, patient if patient is not None else name,
                      organs, outside)


def match_cases(pred_dir: Path, others: dict[str, Path | None]) -> list[tuple[str, Path, dict[str, Path | None]]]:
    """Pair each case in ``pred_dir`` with the same-named case (any format) in each other folder.

    A case with no counterpart keeps ``None`` there; the caller reports it as failed.
    """
    from medgan.io.cases import index_cases

    index = {k: (index_cases(d) if d is not None else None) for k, d in others.items()}
    return [(name, p, {k: (idx.get(name) if idx is not None else None) for k, idx in index.items()})
            for name, p in index_cases(pred_dir).items()]


def evaluate_folders(pred_dir: Path, reference_dir: Path, mask_dir: Path | None = None, input_dir: Path | None = None,
                     on_case: Callable[[CaseResult], None] | None = None, progress=None, *,
                     protocol: str = DEFAULT_PROTOCOL, mask_mode: str = "auto", fov_dir: Path | None = None,
                     compare_dirs: dict[str, Path] | None = None, labels_dir: Path | None = None, seg_model=None,
                     patient_of: Callable[[str], Hashable] | None = None, allow_non_hu: bool = False,
                     strict: bool = False) -> tuple[list[CaseResult], list[tuple[str, str]]]:
    """Evaluate every case of ``pred_dir``; returns the results and ``(case, error)`` for the failures.

    ``patient_of(case)`` gives the patient id of a case (default: the case itself).
    """
    folders = {"reference": reference_dir, "mask": mask_dir, "input": input_dir, "fov": fov_dir, "labels": labels_dir}
    folders.update({f"compare:{k}": v for k, v in (compare_dirs or {}).items()})
    pairs = match_cases(pred_dir, folders)
    results, failures = [], []
    for name, pred, other in (progress(pairs) if progress else pairs):
        try:
            found: dict[str, Path] = {}
            for key, folder in folders.items():
                path = other[key]
                if path is not None:
                    found[key] = path
                elif folder is not None:
                    raise InputError(f"no {key.replace('compare:', 'baseline ')} named {name} in {folder}")
            res = evaluate_case(pred, found["reference"], found.get("mask"), found.get("input"), case=name,
                                protocol=protocol, mask_mode=mask_mode, fov=found.get("fov"),
                                labels=found.get("labels"), seg_model=seg_model,
                                compare={k: found[f"compare:{k}"] for k in (compare_dirs or {})},
                                patient=patient_of(name) if patient_of else name, allow_non_hu=allow_non_hu,
                                strict=strict)
            if on_case:
                on_case(res)
            res.volumes, res.mask = {}, None     # keep memory flat over large cohorts
            results.append(res)
        except MedganError as exc:
            failures.append((name, str(exc)))
    return results, failures


def _labels(results: list[CaseResult]) -> list[str]:
    labels: list[str] = []
    for r in results:
        labels += [k for k in r.rows if k not in labels]
    return labels


def summary_table(results: list[CaseResult], seed: int = 0) -> dict[str, dict[str, dict[str, float]]]:
    """label -> metric -> {n (patients), n_cases, mean, std, ci_low, ci_high}, CIs over patients.

    The CI method follows from ``n`` (:func:`medgan.evaluation.statistics.ci_method`).
    """
    out = {}
    for label in _labels(results):
        have = [r for r in results if label in r.rows]
        cols = list(dict.fromkeys(k for r in have for k in r.rows[label]))
        out[label] = {m: summarize([r.rows[label].get(m, float("nan")) for r in have], [r.patient for r in have],
                                   seed=seed) for m in cols}
    return out


def paired_table(results: list[CaseResult], pred_label: str, seed: int = 0) -> dict[str, dict[str, dict]]:
    """``"<pred> - <other>"`` -> metric -> paired difference over patients (mean, CI, Wilcoxon p).

    One entry per other row (the input and each baseline); cases lacking either row are skipped.
    """
    out = {}
    for other in _labels(results):
        if other == pred_label:
            continue
        have = [r for r in results if other in r.rows and pred_label in r.rows]
        if not have:
            continue
        cols = [k for k in have[0].rows[pred_label] if k in have[0].rows[other]]
        out[f"{pred_label} - {other}"] = {
            m: paired_comparison([r.rows[pred_label][m] for r in have], [r.rows[other][m] for r in have],
                                 [r.patient for r in have], seed=seed) for m in cols}
    return out
