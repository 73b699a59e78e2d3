"""The anatomical sites medgan knows, and their aliases: the one list behind every ``--site``.

A site names where a scan is: ``translate --site`` checks it against the sites a model was
trained on (recorded in the model file, :mod:`medgan.calibration.domain`), and ``dose --site``
picks the prescription and beam angles of that site (:data:`medgan.dose.recompute.SITES`).
Names are matched case-insensitively, with ``_`` and spaces read as ``-``, and each alias maps
to its site (``Pelvic`` and ``prostate`` are ``pelvis``; ``brain`` is ``head``).  Anything else is
refused with the list of valid names, instead of being compared as free text.
"""
from __future__ import annotations

import argparse
from collections.abc import Iterable

from medgan.errors import ConfigError

#: site -> aliases (lower case; ``_`` and spaces are read as ``-``)
SITES: dict[str, tuple[str, ...]] = {
    "head": ("brain", "skull", "cranium", "cranial"),
    "head-neck": ("head-and-neck", "h&n", "hn", "neck", "headneck"),
    "thorax": ("chest", "lung", "lungs", "thoracic"),
    "abdomen": ("abdominal", "liver", "upper-abdomen"),
    "pelvis": ("pelvic", "prostate"),
}
_LOOKUP = {alias: site for site, aliases in SITES.items() for alias in (site, *aliases)}


def _key(name: str) -> str:
    return "-".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def describe(allowed: Iterable[str] | None = None) -> str:
    """``head (brain, ...), thorax (chest, ...)``: the valid names, for messages and ``--help``."""
    names = list(SITES) if allowed is None else [s for s in SITES if s in set(allowed)]
    return ", ".join(f"{s} ({', '.join(SITES[s])})" if SITES[s] else s for s in names)


def canonical_site(name: str, allowed: Iterable[str] | None = None) -> str:
    """The site ``name`` (or one of its aliases) stands for; unknown names are a :class:`ConfigError`.

    ``allowed`` restricts the answer to some sites (e.g. those with dose defaults).
    """
    site = _LOOKUP.get(_key(name))
    names = list(SITES) if allowed is None else [s for s in SITES if s in set(allowed)]
    if site is None or site not in names:
        raise ConfigError(f"unknown site {name!r}; choose one of {', '.join(names)} (aliases: {describe(names)}; "
                          "case does not matter)")
    return site


def normalise_site(name: str) -> str:
    """:func:`canonical_site` when known, else the name in lower case (sites recorded by older model files)."""
    return _LOOKUP.get(_key(name), _key(name))


def site_arg(allowed: Iterable[str] | None = None):
    """An argparse ``type`` for ``--site``: the canonical site, or a usage error listing the valid names."""
    allowed = None if allowed is None else tuple(allowed)

    def parse(text: str) -> str:
        try:
            return canonical_site(text, allowed)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    parse.__name__ = "site"
    return parse
