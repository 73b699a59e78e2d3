"""Fitting a model's calibrations and training-domain profile from its two training folders."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from medgan.calibration.domain import profile_volumes, volume_profile
from medgan.calibration.hu_map import CALIBRATION_KINDS, fit_calibration, mean_quantiles
from medgan.data.resample import needs_resampling, resample_to_spacing
from medgan.errors import InputError
from medgan.io import read_volume
from medgan.utils.progress import bar


def profile_files(paths: Sequence[Path], spacing: Sequence[float] | None = None, quiet: bool = True) -> list[dict]:
    """:func:`volume_profile` of each volume, at ``spacing`` (the model's voxel size) when given."""
    profiles = []
    for p in bar(list(paths), desc="profile training volumes", quiet=quiet, unit="volume"):
        vol = read_volume(p)
        if spacing is not None and needs_resampling(vol, spacing):
            vol = resample_to_spacing(vol, spacing)
        try:
            profiles.append(volume_profile(vol))
        except ValueError:
            raise InputError(f"{p}: no body found (nothing above -500 HU); is it a CT/CBCT in HU?") from None
    return profiles


#: file names ``<patient>__<scan>.nii.gz`` are scans of one patient (e.g. one CT simulated by several scanners)
PATIENT_SEPARATOR = "__"


def patient_of(path: Path) -> str:
    """The patient of a training file: its stem up to :data:`PATIENT_SEPARATOR` (the whole stem without one)."""
    from medgan.io.formats import strip_suffix

    return strip_suffix(Path(path).name).split(PATIENT_SEPARATOR)[0]


def fit_training_domain(paths_a: Sequence[Path], paths_b: Sequence[Path], spacing: Sequence[float] | None = None,
                        sites: Sequence[str] = (), quiet: bool = True) -> dict:
    """``{"calibration": {kind: HUCalibration dict}, "domain": DomainProfile dict}`` (JSON-able).

    The calibrations map domain A's mean body-HU quantile function onto domain B's
    (unpaired); the domain profile describes domain A, the model's inputs.  Files named
    ``<patient>__<scan>`` count as scans of one patient (:func:`patient_of`) for the domain's limits.
    """
    prof_a = profile_files(paths_a, spacing, quiet)
    prof_b = profile_files(paths_b, spacing, quiet)
    qa = mean_quantiles(p["quantiles"] for p in prof_a)
    qb = mean_quantiles(p["quantiles"] for p in prof_b)
    return {"calibration": {k: fit_calibration(qa, qb, k).to_dict() for k in CALIBRATION_KINDS},
            "domain": profile_volumes(prof_a, sites, [patient_of(p) for p in paths_a]).to_dict()}


def attach_training_domain(model_path: Path, out_path: Path, paths_a: Sequence[Path], paths_b: Sequence[Path],
                           sites: Sequence[str] = (), quiet: bool = True) -> Path:
    """Re-export ``model_path`` with calibrations and a domain profile fitted on the given training volumes.

    For model files written before medgan recorded them: the weights and config are copied
    unchanged; pass the volumes the model was trained on (domain A inputs, domain B targets).
    """
    import dataclasses

    from medgan.io.model_file import read_model_file, write_model_file

    tensors, spec = read_model_file(Path(model_path))
    fitted = fit_training_domain(paths_a, paths_b, spec.spacing, sites, quiet)
    spec = dataclasses.replace(spec, calibration=fitted["calibration"], domain=fitted["domain"])
    return write_model_file(Path(out_path), tensors, spec)
