"""Intermediate features of any network, by submodule name, through forward hooks.

Contrastive and perceptual losses compare what a generator's encoder sees.  Rather than a
second ``forward(x, layers, encode_only=True)`` in every architecture, a generator may list
its encoder's feature layers in an ``encoder_layers`` attribute (names of its submodules, as
``named_modules`` gives them), and :func:`forward_features` collects their outputs for any
module, stopping the forward pass once the last of them has run (so the decoder is not
computed).

>>> names = encoder_layers(generator)            # e.g. ("model.net.0", "model.net.4", ...)
>>> feats = forward_features(generator, x, names)  # one tensor per name, in that order
>>> y, feats = forward_features(generator, x, names, stop=False)  # the output as well
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from medgan.errors import ConfigError


class _Collected(Exception):
    """Raised by the last hook to end an encoder-only forward pass."""


def encoder_layers(net: nn.Module) -> tuple[str, ...]:
    """The names of ``net``'s encoder feature layers, as the architecture declares them (``encoder_layers``).

    Raises :class:`ConfigError` for a network that declares none.
    """
    names = getattr(net, "encoder_layers", None)
    if not names:
        raise ConfigError(f"{type(net).__name__} declares no encoder_layers; name the feature layers "
                          "(its submodules, see named_modules()) explicitly")
    return tuple(names)


def forward_features(net: nn.Module, x: torch.Tensor, layers: Sequence[str], stop: bool = True):
    """Outputs of the submodules ``layers`` of ``net`` for the input ``x``, in the order given.

    Args:
        net: any module; ``layers`` are names from its ``named_modules()``.
        x: the input.
        layers: the submodules whose outputs to collect (a name may repeat).
        stop: end the forward pass as soon as every layer has run and return the features only;
            ``False`` completes it and returns ``(output, features)``.

    A layer that runs more than once in one forward keeps its first output.
    """
    modules = dict(net.named_modules())
    wanted = list(dict.fromkeys(layers))
    missing = [n for n in wanted if n not in modules]
    if missing:
        raise ConfigError(f"{type(net).__name__} has no submodule {', '.join(repr(n) for n in missing)}")
    feats: dict[str, torch.Tensor] = {}

    def hook(name: str):
        def fn(module, inputs, output):
            feats.setdefault(name, output)
            if stop and len(feats) == len(wanted):
                raise _Collected

        return fn

    handles = [modules[n].register_forward_hook(hook(n)) for n in wanted]
    out = None
    try:
        out = net(x)
    except _Collected:
        pass
    finally:
        for h in handles:
            h.remove()
    not_run = [n for n in wanted if n not in feats]
    if not_run:
        raise ConfigError(f"the layers {', '.join(not_run)} of {type(net).__name__} did not run in its forward pass")
    collected = [feats[n] for n in layers]
    return collected if stop else (out, collected)
