"""Checkpoints that resume exactly, and exported models that cannot run code.

* Training checkpoints are ``torch.save`` dicts of tensors and plain Python values only,
  loaded with ``torch.load(weights_only=True)``: a tampered file cannot execute code.
* Exported models are a ``.safetensors`` file (both generators' weights) with the
  configuration and HU preset in its metadata; no pickle at all.
* Writes go to a temporary file, are fsync'ed and renamed, so SIGKILL at any
  moment leaves either the previous checkpoint or the new one, never half of one.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import uuid
import zipfile
from pathlib import Path

import numpy as np
import torch

from medgan import __version__
from medgan.errors import ModelError

CHECKPOINT_FORMAT = "medgan-checkpoint-1"
MODEL_FORMAT = "medgan-model-1"


# ---------------------------------------------------------------------------- RNG state
def rng_state() -> dict:
    np_state = np.random.get_state()
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


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


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a training checkpoint safely (``weights_only=True``), with one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ModelError(f"{path} was refused: it contains objects other than weights and plain values "
                         f"(a tampered or foreign file?) [{str(exc).splitlines()[0][:120]}]") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise ModelError(f"{path} is not a readable medgan checkpoint ({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ModelError(f"{path} is not a medgan training checkpoint")
    return state


# ---------------------------------------------------------------------------- exported model
def export_model(path: Path, gen_state: dict, config: dict, hu_preset: dict, extra: dict | None = None) -> Path:
    """Write both generators (``g_ab.*``, ``g_ba.*``) as safetensors with JSON metadata."""
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in gen_state.items()}
    meta = {"format": MODEL_FORMAT, "medgan_version": __version__, "config": config, "hu_preset": hu_preset,
            **(extra or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex[:8]}.safetensors")
    try:
        save_file(tensors, str(tmp), metadata={"medgan": json.dumps(meta)})
        os.chmod(tmp, 0o644)      # safetensors creates 0600 files; a model is meant to be shared
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_model_file(path: Path) -> tuple[dict, dict]:
    """(tensors, metadata) of an exported model; refuses anything that is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("medgan")
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable medgan model ({str(exc).splitlines()[0][:160]})") from None
    if raw is None:
        raise ModelError(f"{path} is a safetensors file without medgan metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{path} has corrupt medgan metadata") from None
    if meta.get("format") != MODEL_FORMAT:
        raise ModelError(f"{path} has unknown model format {meta.get('format')!r}")
    return tensors, meta
