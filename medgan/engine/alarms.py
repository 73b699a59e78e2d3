"""Failure alarms: the ways GAN training goes wrong, noticed while it happens.

Each alarm fires once when its condition has held for ``patience`` consecutive steps,
and re-arms after the condition clears.  Messages say what is happening and what to try.

* **discriminator collapse.** D separates real from fake almost perfectly (accuracy
  >= 0.99); the generator then gets no useful gradient.
* **generator divergence.** The generator's adversarial loss, averaged over ``patience``
  steps, has grown to more than 5x the lowest such average seen so far.
* **mode collapse.** Over the batch, the translations have lost their variance relative to
  the inputs: the per-voxel std across the batch is under 10% of the inputs'. The generator
  then outputs nearly the same image whatever it is given.
* **identity collapse.** The generator has learned to return its input: the mean
  |G(x) - x| stays under 0.004 of the normalised [-1, 1] range (about 5 HU on a 2500-HU
  window), so the "translation" does nothing (a common complaint with a strong identity loss).
* **non-finite loss.** NaN/Inf: reported at once; the trainer stops, and the last checkpoint
  stays intact.
"""
from __future__ import annotations

import math
from collections import deque


class TrainingAlarms:
    def __init__(self, patience: int = 50, d_accuracy: float = 0.99, divergence_factor: float = 5.0,
                 variance_ratio: float = 0.1, min_change: float = 0.004):
        self.patience, self.d_accuracy = patience, d_accuracy
        self.divergence_factor, self.variance_ratio, self.min_change = divergence_factor, variance_ratio, min_change
        self._streak = {"d_collapse": 0, "g_divergence": 0, "mode_collapse": 0, "identity_collapse": 0}
        self._active = {k: False for k in self._streak}
        self._window: deque[float] = deque(maxlen=patience)
        self._best_mean = math.inf
        self.fired: list[tuple[int, str, str]] = []      #: (step, alarm, message)

    def _check(self, name: str, condition: bool, step: int, message: str) -> str | None:
        self._streak[name] = self._streak[name] + 1 if condition else 0
        if condition and self._streak[name] >= self.patience and not self._active[name]:
            self._active[name] = True
            self.fired.append((step, name, message))
            return message
        if not condition:
            self._active[name] = False
        return None

    def update(self, step: int, logs: dict[str, float]) -> list[str]:
        """Feed one step's logs; returns the messages of alarms that fire now."""
        out = []
        bad = [k for k, v in logs.items() if not math.isfinite(v)]
        if bad:
            msg = f"step {step}: non-finite {', '.join(bad)}: training stops; the last checkpoint is kept"
            self.fired.append((step, "non_finite", msg))
            return [msg]
        if "d_acc" in logs:
            out.append(self._check(
                "d_collapse", logs["d_acc"] >= self.d_accuracy, step,
                f"step {step}: discriminator collapse: D accuracy >= {self.d_accuracy} for {self.patience} steps "
                "(try label smoothing, instance noise, spectral norm or a lower lr_d)"))
        if "g_adv" in logs:
            self._window.append(logs["g_adv"])
            diverging = False
            if len(self._window) == self.patience:
                mean = sum(self._window) / self.patience
                self._best_mean = min(self._best_mean, mean)
                diverging = mean > self.divergence_factor * max(self._best_mean, 1e-3)
            out.append(self._check(
                "g_divergence", diverging, step,
                f"step {step}: generator loss diverging: its {self.patience}-step mean is over "
                f"{self.divergence_factor:g}x its lowest (try a lower lr_g or TTUR, or resume an earlier checkpoint)"))
        if "var_ratio" in logs:
            out.append(self._check(
                "mode_collapse", logs["var_ratio"] < self.variance_ratio, step,
                f"step {step}: possible mode collapse: translations vary < {self.variance_ratio:g}x as much as their "
                f"inputs across the batch for {self.patience} steps (check the samples/ PNGs)"))
        if "change" in logs:
            out.append(self._check(
                "identity_collapse", logs["change"] < self.min_change, step,
                f"step {step}: identity collapse: the generator changes its input by < {self.min_change:g} "
                f"(normalised units) for {self.patience} steps (try a lower lambda_identity or a higher lr_g)"))
        return [m for m in out if m]
