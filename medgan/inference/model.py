"""Loading a trained translation model from an exported file, a run folder or a checkpoint."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from medgan.calibration import DomainProfile, HUCalibration
from medgan.config import ExperimentConfig, config_from_dict
from medgan.data.hu import HUPreset, get_preset
from medgan.errors import MedganError, ModelError
from medgan.io.model_file import GENERATOR_PREFIXES, ModelSpec, load_checkpoint, read_model_file
from medgan.nets import build_translator

#: The starter model shipped inside the package (see docs/models.md).
MODELS = Path(__file__).resolve().parents[1] / "models"
STARTER_MODEL = MODELS / "cbct2ct_starter.safetensors"


@dataclasses.dataclass
class TranslationModel:
    g_ab: torch.nn.Module
    g_ba: torch.nn.Module | None         #: the B -> A generator of methods that have one (CycleGAN), else None
    config: ExperimentConfig
    preset: HUPreset
    source: Path
    step: int | None = None
    #: unpaired global HU calibrations fitted on the training domains ("linear", "histogram"); empty for
    #: model files written before medgan recorded them
    calibrations: dict[str, HUCalibration] = dataclasses.field(default_factory=dict)
    domain: DomainProfile | None = None        #: the training inputs' profile (None: not recorded)
    spec: ModelSpec | None = None              #: what the model file says (:mod:`medgan.io.model_file`)

    @property
    def spatial_dims(self) -> int:
        return self.config.model.spatial_dims

    @property
    def output(self) -> str:
        return self.config.model.output

    def calibration(self, kind: str) -> HUCalibration:
        if kind not in self.calibrations:
            raise ModelError(f"{self.source} holds no {kind!r} HU calibration (a model file from before medgan "
                             "recorded them); retrain or re-export it with medgan.calibration.attach_training_domain")
        return self.calibrations[kind]

    def input_calibration(self) -> HUCalibration | None:
        kind = self.config.model.input_calibration
        return None if kind == "none" else self.calibration(kind)

    def to(self, device: torch.device) -> TranslationModel:
        self.g_ab.to(device).eval()
        if self.g_ba is not None:
            self.g_ba.to(device).eval()
        return self


def _build(spec: ModelSpec, gen_state: dict, source: Path) -> TranslationModel:
    try:
        cfg = config_from_dict(spec.config)
        m = cfg.model
        hu_preset = get_preset(spec.hu_preset)
        width = hu_preset.hi - hu_preset.lo
        gens: dict[str, torch.nn.Module] = {}
        for direction in spec.directions:            # the method's export says which generators the file holds
            prefix = GENERATOR_PREFIXES[direction] + "."
            gens[direction] = build_translator(m, cfg.data.spacing, width)
            gens[direction].load_state_dict({k[len(prefix):]: v for k, v in gen_state.items()
                                             if k.startswith(prefix)})
    except (MedganError, RuntimeError, KeyError, TypeError) as exc:
        raise ModelError(f"{source}: the weights do not match the stored architecture "
                         f"({str(exc).splitlines()[0][:160]})") from None
    if not isinstance(spec.calibration, dict) or not (spec.domain is None or isinstance(spec.domain, dict)):
        raise ModelError(f"{source}: corrupt training-domain record")
    cals = {k: HUCalibration.from_dict(v) for k, v in spec.calibration.items()}
    domain = DomainProfile.from_dict(spec.domain) if spec.domain else None
    model = TranslationModel(gens["A->B"], gens.get("B->A"), cfg, hu_preset, source, spec.step, cals, domain, spec)
    model.input_calibration()          # a model that needs an input calibration must carry it
    return model


def load_model(path: str | Path | None = None) -> TranslationModel:
    """``path``: an exported ``.safetensors`` model, a run folder, a ``.pt`` checkpoint, or the name of a model
    shipped in ``medgan/models`` (``contrast2noncontrast``).

    ``None`` loads the shipped starter model.  Nothing here unpickles arbitrary
    objects: safetensors holds no code and checkpoints load with ``weights_only=True``.
    """
    if path is None:
        if not STARTER_MODEL.exists():
            raise ModelError("no model given (-m) and no starter model is installed")
        path = STARTER_MODEL
    path = Path(path)
    if not path.exists() and path.name == str(path) and (MODELS / f"{path.name}.safetensors").exists():
        path = MODELS / f"{path.name}.safetensors"          # a shipped model by name (docs/models.md)
    if path.is_dir():
        candidate = path / "model.safetensors"
        if not candidate.exists():
            raise ModelError(f"{path} is not a medgan run folder (no model.safetensors in it)")
        path = candidate
    if not path.exists():
        shipped = ", ".join(sorted(p.stem for p in MODELS.glob("*.safetensors"))) or "none"
        raise ModelError(f"model {path} does not exist (neither a file or run folder nor a shipped model name; "
                         f"shipped: {shipped})")
    if path.suffix == ".safetensors":
        tensors, spec = read_model_file(path)
        return _build(spec, tensors, path)
    state = load_checkpoint(path)
    td = state.get("training_domain") or {}
    if not isinstance(td, dict):
        raise ModelError(f"{path}: corrupt training-domain record")
    try:
        directions = state.get("directions")         # recorded by the trainer since methods declare them
        spec = ModelSpec(state["config"], state["hu_preset"], state.get("step"), calibration=td.get("calibration", {}),
                         domain=td.get("domain"), declared_directions=None if directions is None else tuple(directions))
    except KeyError as exc:
        raise ModelError(f"{path} is not a complete medgan training checkpoint (no {exc})") from None
    return _build(spec, state["gen"], path)
