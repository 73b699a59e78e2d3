"""The model-file contract: what an exported medgan model holds, read and written through one API.

An exported model is one ``.safetensors`` file: the generators' weights (``g_ab.*`` for A -> B and,
for unpaired methods, ``g_ba.*`` for B -> A) and, in the file's ``medgan`` metadata entry, a JSON
:class:`ModelSpec`: the experiment configuration it was trained with, its HU preset, the training
step, and the training domain (HU calibrations and domain profile) when recorded.  No pickle at all:
a model file cannot run code.

>>> tensors, spec = read_model_file("model.safetensors")
>>> spec.method, spec.spatial_dims, spec.directions
('cyclegan', 2, ('A->B', 'B->A'))
>>> write_model_file("copy.safetensors", tensors, spec)

Training checkpoints (``checkpoints/last.pt``) are read here too (:func:`load_checkpoint`): they
are ``torch.save`` dicts of tensors and plain values, loaded with ``weights_only=True``.  Writing
them is the trainer's business (:mod:`medgan.engine.checkpoint`).

This module sits in the I/O layer: inference reads models through it without importing the
training engine, and it imports torch and safetensors only when a file is read or written.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medgan import __version__
from medgan.errors import ModelError

if TYPE_CHECKING:
    import torch

#: the ``format`` entry of a model file's metadata; ``format_version`` (an integer) says which version of it
MODEL_FORMAT = "medgan-model"
#: the model-file format this medgan writes, and the newest it reads.  Raise it when the metadata changes in a
#: way an older reader would misread (and say so in CHANGELOG.md); a file of a newer format is refused.
#:   1 (medgan 0.1.0): ``"format": "medgan-model-1"``, no ``format_version``; ``directions`` may be missing
#:   2 (medgan 0.2.0): ``"format": "medgan-model"`` with ``"format_version": 2``; ``directions`` always recorded
MODEL_FORMAT_VERSION = 2
#: the ``format`` entry of format-1 files
_FORMAT_1 = "medgan-model-1"
CHECKPOINT_FORMAT = "medgan-checkpoint-1"

#: metadata keys that are fields of :class:`ModelSpec` (any other key is kept in ``ModelSpec.extra``)
_RESERVED = ("format", "format_version", "medgan_version", "config", "hu_preset", "step", "direction", "directions",
             "calibration", "domain")
#: the generator behind each direction: its weights are the file's tensors under ``PREFIX.``
GENERATOR_PREFIXES = {"A->B": "g_ab", "B->A": "g_ba"}
#: what format-1 files without a ``directions`` entry hold, by method (the methods medgan had before it recorded
#: them); other methods hold both directions
_LEGACY_DIRECTIONS = {"paired": ("A->B",)}


@dataclasses.dataclass
class ModelSpec:
    """Everything an exported model is, except its weights."""

    #: the experiment configuration it was trained with (:func:`medgan.config.config_to_dict`)
    config: dict[str, Any]
    #: the HU window mapping HU to the networks' [-1, 1]: ``{"name", "lo", "hi"}`` (:class:`medgan.data.hu.HUPreset`)
    hu_preset: dict[str, Any]
    step: int | None = None                     #: training step it was exported at
    direction: str = "A->B"                     #: the direction of the ``g_ab`` generator
    #: global HU calibrations fitted on the training domains, kind ("linear", "histogram") ->
    #: :meth:`medgan.calibration.HUCalibration.to_dict`; empty for files written before medgan recorded them
    calibration: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    #: the training inputs' profile (:meth:`medgan.calibration.DomainProfile.to_dict`); None: not recorded
    domain: dict[str, Any] | None = None
    medgan_version: str = __version__           #: the medgan version that wrote the file
    #: the translations the file holds (keys of :data:`GENERATOR_PREFIXES`), as the training method declared
    #: them; None (files written before it was recorded): see :attr:`directions`
    declared_directions: tuple[str, ...] | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)   #: other metadata, kept as written
    #: the model-file format it was read from (:data:`MODEL_FORMAT_VERSION`); a spec is always written in the
    #: current format
    format_version: int = dataclasses.field(default=MODEL_FORMAT_VERSION, compare=False)

    # ------------------------------------------------------------------ typed views of the configuration
    def _model(self) -> dict[str, Any]:
        model = self.config.get("model")
        return model if isinstance(model, dict) else {}

    def _data(self) -> dict[str, Any]:
        data = self.config.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def method(self) -> str:
        """The training method (``model.method``; ``model.mode`` in files written before its rename)."""
        model = self._model()
        return str(model.get("method", model.get("mode", "cyclegan")))

    @property
    def generator(self) -> str:
        """The registered generator architecture (:data:`medgan.nets.GENERATORS`)."""
        return str(self._model().get("generator", "resnet"))

    @property
    def generator_args(self) -> dict[str, Any]:
        return dict(self._model().get("generator_args") or {})

    @property
    def spatial_dims(self) -> int:
        return int(self._model().get("spatial_dims", 2))

    @property
    def spacing(self) -> list[float] | None:
        """The voxel size (mm) the model works at; None: the input's own."""
        spacing = self._data().get("spacing")
        return None if spacing is None else [float(v) for v in spacing]

    @property
    def patch_size(self) -> list[int] | None:
        patch = self._data().get("patch_size")
        return None if patch is None else [int(v) for v in patch]

    @property
    def directions(self) -> tuple[str, ...]:
        """The translations the file holds: A -> B always, B -> A for methods with an inverse (CycleGAN).

        Read from the file (format 2 always records it); format-1 files without the entry hold both, except
        paired ones.
        """
        if self.declared_directions is not None:
            return tuple(self.declared_directions)
        return _LEGACY_DIRECTIONS.get(self.method, ("A->B", "B->A"))

    @property
    def training_domain(self) -> dict[str, Any]:
        """``{"calibration": ..., "domain": ...}``: what was recorded of the training domain."""
        out: dict[str, Any] = {}
        if self.calibration:
            out["calibration"] = self.calibration
        if self.domain is not None:
            out["domain"] = self.domain
        return out

    # ------------------------------------------------------------------ metadata
    def to_metadata(self) -> dict[str, Any]:
        """The JSON object stored in the file, in the current format (:data:`MODEL_FORMAT_VERSION`)."""
        meta: dict[str, Any] = {"format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION,
                                "medgan_version": self.medgan_version, "config": self.config,
                                "hu_preset": self.hu_preset}
        if self.step is not None:
            meta["step"] = int(self.step)
        meta["direction"] = self.direction
        meta["directions"] = list(self.directions)
        meta.update(self.training_domain)
        meta.update(self.extra)
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any], source: str | Path = "model") -> ModelSpec:
        """Read and check a model's metadata; :class:`ModelError` names what is wrong."""
        version = _format_version(meta, source)
        config, preset = meta.get("config"), meta.get("hu_preset")
        if not isinstance(config, dict) or not isinstance(preset, dict):
            raise ModelError(f"{source} has corrupt medgan metadata (no configuration or HU preset)")
        calibration = meta.get("calibration", {})
        domain = meta.get("domain")
        if not isinstance(calibration, dict) or not (domain is None or isinstance(domain, dict)):
            raise ModelError(f"{source}: corrupt training-domain record")
        directions = meta.get("directions")
        if directions is not None and (not isinstance(directions, list)
                                       or not set(directions) <= set(GENERATOR_PREFIXES) or "A->B" not in directions):
            raise ModelError(f"{source} has corrupt medgan metadata (directions {directions!r})")
        if directions is None and version >= 2:
            raise ModelError(f"{source} has corrupt medgan metadata (model format {version} without directions)")
        step = meta.get("step")
        try:
            step = None if step is None else int(step)
        except (TypeError, ValueError):
            raise ModelError(f"{source} has corrupt medgan metadata (step {step!r})") from None
        return cls(config=config, hu_preset=preset, step=step, direction=str(meta.get("direction", "A->B")),
                   calibration=calibration, domain=domain,
                   medgan_version=str(meta.get("medgan_version", "unknown")),
                   declared_directions=None if directions is None else tuple(directions),
                   extra={k: v for k, v in meta.items() if k not in _RESERVED}, format_version=version)


def _format_version(meta: Mapping[str, Any], source: str | Path) -> int:
    """The model-file format of ``meta``; a file of a newer format than this medgan reads is refused."""
    fmt, version = meta.get("format"), meta.get("format_version")
    if fmt == _FORMAT_1 and version is None:
        return 1
    if fmt != MODEL_FORMAT:
        raise ModelError(f"{source} has unknown model format {fmt!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 2:
        raise ModelError(f"{source} has corrupt medgan metadata (format_version {version!r})")
    if version > MODEL_FORMAT_VERSION:
        raise ModelError(f"{source} is a model file of format {version}, written by medgan "
                         f"{meta.get('medgan_version', '(unknown)')}; this medgan ({__version__}) reads formats up to "
                         f"{MODEL_FORMAT_VERSION}: upgrade medgan to load it")
    return version


# ---------------------------------------------------------------------------- reading and writing
def read_model_spec(path: str | Path) -> ModelSpec:
    """The :class:`ModelSpec` of an exported model, without loading its weights."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = (fh.metadata() or {}).get("medgan")
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable medgan model ({str(exc).splitlines()[0][:160]})") from None
    return _parse_spec(raw, path)


def read_model_file(path: str | Path) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """``(tensors, spec)`` of an exported model; refuses anything that is not one."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    spec = read_model_spec(path)
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{path} is not a readable medgan model ({str(exc).splitlines()[0][:160]})") from None
    return tensors, spec


def write_model_file(path: str | Path, tensors: Mapping[str, torch.Tensor], spec: ModelSpec) -> Path:
    """Write ``tensors`` (``g_ab.*``, ``g_ba.*``) and ``spec`` atomically: a reader sees the old file or the new."""
    from safetensors.torch import save_file

    from medgan.io.writers import atomic_path

    path = Path(path)
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"medgan": json.dumps(spec.to_metadata())}
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o644)      # safetensors creates 0600 files; a model is meant to be shared
    return path


def _parse_spec(raw: str | None, path: Path) -> ModelSpec:
    if raw is None:
        raise ModelError(f"{path} is a safetensors file without medgan metadata")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError:
        raise ModelError(f"{path} has corrupt medgan metadata") from None
    if not isinstance(meta, dict):
        raise ModelError(f"{path} has corrupt medgan metadata")
    return ModelSpec.from_metadata(meta, path)


# ---------------------------------------------------------------------------- training checkpoints
def load_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a training checkpoint safely (``weights_only=True``), with one-line errors."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist")
    foreign = not_a_model(path)
    if foreign:
        raise ModelError(foreign)
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


#: what to pass instead, in every "not a model" message
MODEL_CHOICES = ("pass a run folder (runs/NAME), its model.safetensors, or a training checkpoint (.pt); "
                 "leave -m out for the shipped starter model")
_TEXT_KINDS = {".yaml": "a YAML configuration", ".yml": "a YAML configuration", ".json": "a JSON file",
               ".csv": "a CSV table", ".txt": "a text file", ".md": "a text file", ".py": "a Python script"}


def not_a_model(path: str | Path) -> str | None:
    """Why ``path`` is plainly not a model or checkpoint (a config, an image, a text file), else None.

    A PyTorch checkpoint is a zip archive (or, from old versions, a pickle stream); anything else is
    named by what it is, so that ``-m config.yaml`` does not read as a tampered model.
    """
    from medgan.io.formats import format_of

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None                                   # torch.load reports it
    if head.startswith(b"PK\x03\x04") or head.startswith(b"\x80"):
        return None                                   # a zip archive or a pickle stream: torch.load decides
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        what = "a YAML configuration (train a model from it with medgan train -c)"
    elif format_of(path) is not None or head[128:132] == b"DICM":
        what = "an image"
    elif suffix in _TEXT_KINDS:
        what = _TEXT_KINDS[suffix]
    elif head and b"\x00" not in head and _is_text(head):
        what = "a text file"
    else:
        return (f"{path} is not a medgan model (neither a safetensors model nor a PyTorch checkpoint): "
                f"{MODEL_CHOICES}")
    return f"{path} is {what}, not a medgan model: {MODEL_CHOICES}"


def _is_text(head: bytes) -> bool:
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start >= len(head) - 3             # only a character cut at the end of the first 4 KiB
    return True
