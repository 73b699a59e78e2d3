"""Training checkpoints that resume exactly and cannot run code.

* Training checkpoints are ``torch.save`` dicts of tensors and plain Python values only,
  loaded with ``torch.load(weights_only=True)`` (:func:`medgan.io.model_file.load_checkpoint`):
  a tampered file cannot execute code.
* Exported models (``model.safetensors``) are written and read by :mod:`medgan.io.model_file`,
  so that inference loads a model without importing the training engine.
* Writes go through :func:`medgan.io.writers.atomic_path` (a temporary file, fsync'ed, then
  renamed), so SIGKILL at any moment leaves either the previous checkpoint or the new one.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from medgan import __version__
from medgan.io.model_file import CHECKPOINT_FORMAT, load_checkpoint
from medgan.io.writers import atomic_path

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state",
           "seed_everything", "atomic_torch_save"]

# ---------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    np_state = np.random.get_state()
    assert isinstance(np_state, tuple)          # legacy=True (the default): (name, keys, pos, has_gauss, gauss)
    py_version, py_state, py_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
        "numpy_has_gauss": int(np_state[3]),
        "numpy_gauss": float(np_state[4]),
        "python": torch.tensor(py_state, dtype=torch.int64),
        "python_version": int(py_version),
        "python_gauss": py_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", state["numpy_keys"].numpy().astype(np.uint32), state["numpy_pos"],
                         state["numpy_has_gauss"], state["numpy_gauss"]))
    random.setstate((state["python_version"], tuple(int(v) for v in state["python"].tolist()), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------- atomic files
def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` through medgan's one atomic writer (:func:`medgan.io.writers.atomic_path`)."""
    with atomic_path(Path(path)) as tmp:
        torch.save(obj, tmp)


def save_checkpoint(path: Path, model_state: dict, config: dict, hu_preset: dict, extra: dict | None = None) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "medgan_version": __version__,
        "config": config,
        "hu_preset": hu_preset,
        "rng": rng_state(),
        **model_state,
        **(extra or {}),
    }
    atomic_torch_save(payload, path)

