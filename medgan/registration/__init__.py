"""CT -> CBCT registration (Elastix, rigid then B-spline), FOV masks and registration QA."""
from medgan.registration.api import describe, match_patients, output_paths, qa_figure, register_files, register_folders
from medgan.registration.elastix import (
    RegistrationOptions,
    RegistrationResult,
    default_parameter_maps,
    jacobian_determinant,
    register,
)

__all__ = ["RegistrationOptions", "RegistrationResult", "default_parameter_maps", "jacobian_determinant", "register",
           "register_files", "register_folders", "match_patients", "output_paths", "qa_figure", "describe"]
