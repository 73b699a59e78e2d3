"""YAML -> typed dataclasses, with a clear error for every unknown key or wrong type."""
from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from medgan.config.hu import get_preset
from medgan.config.schema import ExperimentConfig, check_spacing
from medgan.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

_T = TypeVar("_T", bound="DataclassInstance")


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        hint = next(a for a in args if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(hint)
        return [_check_type(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "4e-4" (no dot) as a string; a float field takes it as the number it means
        try:
            return float(value)
        except ValueError:
            pass
    if hint in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    if not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {type(value).__name__} {value!r}")
    return value


def _build(cls: type[_T], data: dict, where: str) -> _T:
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown key{'s' if len(unknown) > 1 else ''} {', '.join(repr(k) for k in unknown)} "
                          f"in {where or 'config'}; valid keys: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in data.items():
        hint = hints[key]
        path = f"{where}.{key}" if where else key
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value or {}, path)
        else:
            kwargs[key] = _check_type(value, hint, path)
    return cls(**kwargs)


#: former key -> current key, per section: configs and model files written before a rename still load
RENAMED = {"model": {"mode": "method"}}


def _renamed(data: dict) -> dict:
    """``data`` with the former keys of :data:`RENAMED` under their current names."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    for section, renames in RENAMED.items():
        node = out.get(section)
        if not isinstance(node, dict):
            continue
        node = dict(node)
        for old, new in renames.items():
            if old in node:
                if new in node:
                    raise ConfigError(f"{section}.{old} is the former name of {section}.{new}; give only one of them")
                node[new] = node.pop(old)
        out[section] = node
    return out


def config_from_dict(data: dict) -> ExperimentConfig:
    """The typed configuration of a YAML-like mapping; former key names (:data:`RENAMED`) are accepted."""
    return _build(ExperimentConfig, _renamed(data or {}), "")


#: (key, test, what it must be) checked by :func:`validate_config`.
_RULES = [
    ("model.spatial_dims", lambda v: v in (2, 3), "2 or 3"),
    ("data.patch_size", lambda v: all(isinstance(p, int) and p >= 1 for p in v), "positive integers"),
    ("data.samples_per_volume", lambda v: v >= 1, ">= 1"),
    ("data.queue_length", lambda v: v >= 1, ">= 1"),
    ("data.num_workers", lambda v: v >= 0, ">= 0"),
    ("loss.gp_weight", lambda v: v >= 0, ">= 0"),
    ("loss.label_smoothing", lambda v: 0 <= v < 0.5, "in [0, 0.5)"),
    ("loss.label_noise", lambda v: 0 <= v < 0.5, "in [0, 0.5)"),
    ("loss.instance_noise", lambda v: v >= 0, ">= 0"),
    ("loss.instance_noise_steps", lambda v: v is None or v >= 1, "null or >= 1"),
    ("loss.lambda_cycle", lambda v: v >= 0, ">= 0"),
    ("loss.lambda_identity", lambda v: v >= 0, ">= 0"),
    ("loss.lambda_structure", lambda v: v >= 0, ">= 0"),
    ("loss.lambda_l1", lambda v: v >= 0, ">= 0"),
    ("loss.lambda_adversarial", lambda v: v >= 0, ">= 0"),
    ("optim.lr_g", lambda v: 0 < v < 1, "> 0 (and < 1)"),
    ("optim.lr_d", lambda v: 0 < v < 1, "> 0 (and < 1)"),
    ("optim.beta1", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.beta2", lambda v: 0 <= v < 1, "in [0, 1)"),
    ("optim.batch_size", lambda v: v >= 1, ">= 1"),
    ("optim.steps", lambda v: v >= 1, ">= 1"),
    ("optim.decay_start", lambda v: v is None or v >= 0, "null or >= 0"),
    ("optim.pool_size", lambda v: v >= 0, ">= 0"),
    ("optim.d_steps", lambda v: v >= 1, ">= 1"),
    ("optim.n_critic", lambda v: v >= 1, ">= 1"),
    ("train.amp", lambda v: v in ("bf16", "fp16", "none"), "bf16, fp16 or none"),
    ("train.checkpoint_every", lambda v: v >= 1, ">= 1"),
    ("train.val_every", lambda v: v >= 0, ">= 0 (0: no validation)"),
    ("train.log_every", lambda v: v >= 1, ">= 1"),
    ("train.max_val_slices", lambda v: v >= 1, ">= 1"),
    ("train.alarm_patience", lambda v: v >= 1, ">= 1"),
]


def validate_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """Range checks at load time: a nonsense value is one clear line, never a silent no-op or a crash later.

    (``optim.steps=0`` used to exit 0 with no model, ``optim.lr_g=-1`` to end in an internal error.)
    """
    import math

    from medgan.io.orientation import parse_orientation  # imported here: loading a config reads no images

    for key, ok, what in _RULES:
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        try:
            good = ok(value) and not (isinstance(value, float) and not math.isfinite(value))
        except TypeError:
            good = False
        if not good:
            raise ConfigError(f"{key} = {value!r} is out of range: it must be {what}")
    check_spacing(cfg.data.spacing)
    get_preset(cfg.data.hu_preset)
    parse_orientation(cfg.data.orientation)
    return cfg


def config_to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    data = apply_overrides(data, overrides)
    cfg = validate_config(config_from_dict(data))
    from medgan.config.sites import canonical_site

    try:         # the training sites a model records are site names, never free text (medgan.config.sites)
        cfg.data.sites = [canonical_site(s) for s in cfg.data.sites]
    except ConfigError as exc:
        raise ConfigError(f"data.sites: {exc}") from None
    # relative data folders are relative to the config file's folder... unless they exist from the cwd
    for key in ("train_a", "train_b", "val_a", "val_b"):
        value = getattr(cfg.data, key)
        if value and not Path(value).is_absolute() and not Path(value).exists():
            candidate = path.parent / value
            if candidate.exists():
                setattr(cfg.data, key, str(candidate))
    return cfg


def apply_overrides(data: dict, overrides: Sequence[str]) -> dict:
    """``--set optim.lr_g=1e-4 model.spatial_dims=3``: values parsed as YAML scalars/lists."""
    data = _renamed(dict(data or {}))
    for item in overrides or ():
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr_g=1e-4")
        section, _, name = key.partition(".")
        key = f"{section}.{RENAMED.get(section, {}).get(name, name)}" if name else key   # model.mode -> model.method
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: cannot parse the value") from None
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
        node[parts[-1]] = value
    return data
