"""Architecture registry: a new network is one decorated class, and configs name it.

>>> @register_generator("my-net")
... class MyNet(torch.nn.Module): ...
>>> build_generator("my-net", spatial_dims=2)
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from medgan.errors import ConfigError

GENERATORS: dict[str, Callable[..., torch.nn.Module]] = {}
DISCRIMINATORS: dict[str, Callable[..., torch.nn.Module]] = {}


def _register(table: dict, kind: str, name: str):
    def deco(cls):
        if name in table:
            raise ValueError(f"{kind} '{name}' is already registered")
        table[name] = cls
        return cls

    return deco


def register_generator(name: str):
    return _register(GENERATORS, "generator", name)


def register_discriminator(name: str):
    return _register(DISCRIMINATORS, "discriminator", name)


def _build(table: dict[str, Callable[..., torch.nn.Module]], kind: str, name: str, spatial_dims: int,
           kwargs: dict) -> torch.nn.Module:
    if name not in table:
        raise ConfigError(f"unknown {kind} '{name}'; registered: {', '.join(sorted(table))}")
    if spatial_dims not in (2, 3):
        raise ConfigError(f"spatial_dims must be 2 or 3, not {spatial_dims}")
    try:
        return table[name](spatial_dims=spatial_dims, **kwargs)
    except TypeError as exc:
        raise ConfigError(f"bad arguments for {kind} '{name}': {exc}") from None


def build_generator(name: str, spatial_dims: int, **kwargs) -> torch.nn.Module:
    return _build(GENERATORS, "generator", name, spatial_dims, kwargs)


def build_discriminator(name: str, spatial_dims: int, **kwargs) -> torch.nn.Module:
    return _build(DISCRIMINATORS, "discriminator", name, spatial_dims, kwargs)
