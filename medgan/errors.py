"""Exceptions that the command line turns into one clear line on stderr.

Library code raises these for problems the *user* can fix (a missing file, a
corrupt volume, a bad config).  Anything else is a bug and is reported as an
internal error by :mod:`medgan.cli.main`.
"""
from __future__ import annotations


class MedganError(Exception):
    """A problem with the user's input, files or settings (exit code 1)."""

    exit_code = 1


class InputError(MedganError):
    """An input path or image that medgan cannot use."""


class OutputError(MedganError):
    """An output that cannot be written (unwritable, would overwrite the input)."""


class ConfigError(MedganError):
    """An invalid configuration file or ``--set`` override."""


class ModelError(MedganError):
    """A model or checkpoint file that is missing, corrupt or incompatible."""


class DependencyError(MedganError):
    """An optional dependency (e.g. RTK for CBCT simulation) is not installed."""


class DomainError(InputError):
    """An input outside a model's training domain, refused because the caller asked for strictness."""
