"""Loading a trained translation model from an exported file, a run folder or a checkpoint."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from medgan.config import ExperimentConfig, config_from_dict
from medgan.data.hu import HUPreset, get_preset
from medgan.engine import checkpoint as ckpt
from medgan.errors import MedganError, ModelError
from medgan.nets import build_generator

#: The starter model shipped inside the package (see docs/models.md).
STARTER_MODEL = Path(__file__).resolve().parents[1] / "models" / "cbct2ct_starter.safetensors"


@dataclasses.dataclass
class TranslationModel:
    g_ab: torch.nn.Module
    g_ba: torch.nn.Module | None
    config: ExperimentConfig
    preset: HUPreset
    source: Path
    step: int | None = None

    @property
    def spatial_dims(self) -> int:
        return self.config.model.spatial_dims

    def to(self, device: torch.device) -> "TranslationModel":
        self.g_ab.to(device).eval()
        if self.g_ba is not None:
            self.g_ba.to(device).eval()
        return self


def _build(config: dict, preset: dict, gen_state: dict, source: Path, step=None) -> TranslationModel:
    try:
        cfg = config_from_dict(config)
        m = cfg.model
        g_ab = build_generator(m.generator, m.spatial_dims, **m.generator_args)
        g_ab.load_state_dict({k[5:]: v for k, v in gen_state.items() if k.startswith("g_ab.")})
        g_ba = None                      # paired (pix2pix) models have no B -> A generator
        if m.mode != "paired":
            g_ba = build_generator(m.generator, m.spatial_dims, **m.generator_args)
            g_ba.load_state_dict({k[5:]: v for k, v in gen_state.items() if k.startswith("g_ba.")})
    except (MedganError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"{source}: the weights do not match the stored architecture "
                         f"({str(exc).splitlines()[0][:160]})") from None
    return TranslationModel(g_ab, g_ba, cfg, get_preset(preset), source, step)


def load_model(path: str | Path | None = None) -> TranslationModel:
    """``path``: an exported ``.safetensors`` model, a run folder, or a ``.pt`` checkpoint.

    ``None`` loads the shipped starter model.  Nothing here unpickles arbitrary
    objects: safetensors holds no code and checkpoints load with ``weights_only=True``.
    """
    if path is None:
        if not STARTER_MODEL.exists():
            raise ModelError("no model given (-m) and no starter model is installed")
        path = STARTER_MODEL
    path = Path(path)
    if path.is_dir():
        candidate = path / "model.safetensors"
        if not candidate.exists():
            raise ModelError(f"{path} is not a medgan run folder (no model.safetensors in it)")
        path = candidate
    if not path.exists():
        raise ModelError(f"model {path} does not exist")
    if path.suffix == ".safetensors":
        tensors, meta = ckpt.read_model_file(path)
        return _build(meta["config"], meta["hu_preset"], tensors, path, meta.get("step"))
    state = ckpt.load_checkpoint(path)
    return _build(state["config"], state["hu_preset"], state["gen"], path, state.get("step"))
