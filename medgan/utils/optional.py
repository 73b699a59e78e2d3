"""Optional dependencies: import one, or raise the one-line :class:`~medgan.errors.DependencyError` naming its extra.

The field extras of pyproject.toml (``simulate``, ``register``, ``qa``, ``dose``, ``tensorboard``) are imported
only where they are used, through :func:`require`, so that every missing one reads the same way::

    CBCT simulation needs itk-rtk: pip install 'medgan[simulate]'
"""
from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Iterable
from types import ModuleType

from medgan.errors import DependencyError


def dependency_error(purpose: str, package: str, extra: str | None = None) -> DependencyError:
    """The error for ``purpose`` missing ``package`` (what pip installs), with the one install line that fixes it:
    medgan's ``extra`` when one holds the package, else the package itself."""
    fix = f"pip install 'medgan[{extra}]'" if extra else f"pip install {package}"
    return DependencyError(f"{purpose} needs {package}: {fix}")


def require(module: str, purpose: str, package: str, extra: str | None = None,
            attributes: Iterable[str] = ()) -> ModuleType:
    """Import and return ``module``, or raise :func:`dependency_error`.

    ``package`` is the name pip installs (``itk-rtk`` for ``itk.RTK``), ``extra`` medgan's extra that holds it (None
    when no extra does). ``attributes`` must exist on the module too: a wrapping such as ``itk.ParameterObject``
    (itk-elastix) is an attribute of a package that may be installed without it.
    """
    try:
        mod = importlib.import_module(module)
        for name in attributes:
            getattr(mod, name)
    except (ImportError, AttributeError) as exc:
        raise dependency_error(purpose, package, extra) from exc
    return mod


def check(modules: Iterable[str], purpose: str, package: str, extra: str | None = None) -> None:
    """Raise :func:`dependency_error` when one of ``modules`` is not installed, without importing any (fast: for a
    check before minutes of other work)."""
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):   # a parent package missing, or a module set to None in sys.modules
            found = False
        if not found:
            raise dependency_error(purpose, package, extra)
