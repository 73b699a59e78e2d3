"""Global HU calibrations fitted without pairs, and the training-domain profile of a model.

Both are plain numbers (JSON) stored in a model file's metadata, never code:

* :class:`HUCalibration`: ``linear`` (2 parameters) or ``histogram`` (piecewise-linear
  quantile map, air pinned at -1000 HU), fitted by matching the body-HU quantile
  functions of two *unpaired* domains (e.g. training CBCTs of some patients and CTs of
  others).  These are the baselines every learned model must beat, and the input
  calibration a correction model starts from.
* :class:`DomainProfile`: what the training inputs looked like (voxel size, body
  extent, body-HU quantiles, anatomical sites), so that ``translate`` can warn when a
  new input is outside it (:func:`check_domain`).
"""
from medgan.calibration.domain import DomainProfile, DomainReport, check_domain, profile_volumes, volume_profile
from medgan.calibration.fit import attach_training_domain, fit_training_domain, profile_files
from medgan.calibration.hu_map import (
    CALIBRATION_KINDS,
    QUANTILE_LEVELS,
    HUCalibration,
    body_quantiles,
    fit_calibration,
    mean_quantiles,
)

__all__ = [
    "CALIBRATION_KINDS", "QUANTILE_LEVELS", "HUCalibration", "body_quantiles", "fit_calibration", "mean_quantiles",
    "DomainProfile", "DomainReport", "check_domain", "profile_volumes", "volume_profile",
    "attach_training_domain", "fit_training_domain", "profile_files",
]
