"""Loss terms as small composable objects: a training method's generator objective is a list of them.

A :class:`LossTerm` is a name (the column it is logged under), a weight and a function of the step's
named tensors (``"real_a"``, ``"fake_b"``, ``"rec_a"``, ... whatever the method's generator returned).
:class:`Objective` adds the weighted terms in their order and returns the total with every computed
term, before its weight, for the logs.  A new term is one object in a method's list, not an
``if lambda > 0`` block copied into each training step.

>>> objective = Objective([
...     l1_term("cycle", 10.0, [("rec_a", "real_a"), ("rec_b", "real_b")], always=True),
...     structure_term("structure", 0.0, [("real_a", "fake_b")]),   # weight 0: skipped, not logged
... ])
>>> total, logs = objective({"real_a": a, "rec_a": a2, "real_b": b, "rec_b": b2, "fake_b": fb})
>>> objective.names, list(logs)
(('cycle', 'structure'), ['cycle'])
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch

from medgan.errors import ConfigError
from medgan.losses.adversarial import AdversarialLoss
from medgan.losses.structure import gradient_correlation_loss

#: the step's named tensors (and plain values such as the instance-noise std) that terms read
StepTensors = Mapping[str, Any]


def _total(values: Iterable[torch.Tensor]) -> torch.Tensor:
    """Sum of the values in order (``a + b + ...``, no leading 0)."""
    out: torch.Tensor | None = None
    for v in values:
        out = v if out is None else out + v
    if out is None:
        raise ValueError("a loss term needs at least one pair of tensors")
    return out


@dataclasses.dataclass(frozen=True)
class LossTerm:
    """One weighted term of a generator objective.

    Args:
        name: the log column (``metrics.csv``, TensorBoard ``train/NAME``, the loss-curve figure).
        weight: its lambda; a term weighted 0 is neither computed nor logged unless ``always``.
        fn: the term's value (a scalar tensor) from the step's named tensors.
        always: compute and log it even at weight 0 (e.g. an adversarial term kept as a monitor).
    """

    name: str
    weight: float
    fn: Callable[[StepTensors], torch.Tensor]
    always: bool = False

    @property
    def active(self) -> bool:
        return self.weight > 0 or self.always


class Objective:
    """The weighted sum of :class:`LossTerm` objects, in their order.

    Args:
        terms: the terms; their names must differ.
    """

    def __init__(self, terms: Sequence[LossTerm]):
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"loss term names must differ: {names}")
        self.terms = tuple(terms)

    @property
    def names(self) -> tuple[str, ...]:
        """Every term's name (the log columns), active or not."""
        return tuple(t.name for t in self.terms)

    def active(self, name: str) -> bool:
        """Whether the term ``name`` is computed (a method skips producing tensors that only it reads)."""
        return any(t.name == name and t.active for t in self.terms)

    def __call__(self, tensors: StepTensors) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``(weighted total, {name: unweighted value})`` over the active terms; weight-0 terms add nothing."""
        total: torch.Tensor | None = None
        logs: dict[str, torch.Tensor] = {}
        for term in self.terms:
            if not term.active:
                continue
            value = term.fn(tensors)
            logs[term.name] = value
            if term.weight == 0:
                continue
            weighted = term.weight * value
            total = weighted if total is None else total + weighted
        if total is None:
            raise ConfigError(f"every loss term is weighted 0 ({', '.join(self.names)}): nothing to train")
        return total, logs


# ---------------------------------------------------------------------------- the built-in terms
def l1_term(name: str, weight: float, pairs: Sequence[tuple[str, str]], always: bool = False) -> LossTerm:
    """Sum over ``(prediction, target)`` name pairs of the mean absolute difference.

    Cycle consistency (``rec_a`` vs ``real_a``), identity (``idt_b`` vs ``real_b``), pix2pix's L1 to a
    registered target (``fake_b`` vs ``real_b``).
    """
    pairs = tuple(pairs)

    def fn(t: StepTensors) -> torch.Tensor:
        return _total((t[p].float() - t[q]).abs().mean() for p, q in pairs)

    return LossTerm(name, weight, fn, always)


def structure_term(name: str, weight: float, pairs: Sequence[tuple[str, str]], always: bool = False) -> LossTerm:
    """Sum over ``(input, translation)`` name pairs of :func:`medgan.losses.gradient_correlation_loss`."""
    pairs = tuple(pairs)

    def fn(t: StepTensors) -> torch.Tensor:
        return _total(gradient_correlation_loss(t[x], t[y]) for x, y in pairs)

    return LossTerm(name, weight, fn, always)


def adversarial_term(name: str, weight: float, adversarial: AdversarialLoss,
                     predict: Callable[[StepTensors], Sequence[torch.Tensor]], always: bool = True) -> LossTerm:
    """The generator's adversarial loss: summed over the discriminator logits ``predict`` returns for its fakes.

    Args:
        adversarial: the objective (:class:`medgan.losses.AdversarialLoss`).
        predict: the discriminator(s) applied to this step's translations (the method knows which).
        always: logged even at weight 0 by default, so that the discriminator's view stays visible.
    """

    def fn(t: StepTensors) -> torch.Tensor:
        return _total(adversarial(logits, True, False) for logits in predict(t))

    return LossTerm(name, weight, fn, always)
