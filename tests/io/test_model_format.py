"""The model-file format version: written into every new file, checked on load; medgan's version on the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import save_file

import medgan
from medgan.errors import ModelError
from medgan.io import Volume, write_volume
from medgan.io.model_file import MODEL_FORMAT, MODEL_FORMAT_VERSION, read_model_file, read_model_spec, write_model_file
from tests.conftest import REPO

STARTER = REPO / "medgan" / "models" / "cbct2ct_starter.safetensors"


def _meta(path) -> dict:
    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["medgan"])


def _with_meta(path, tensors, meta: dict):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"medgan": json.dumps(meta)})
    return path


def test_version_is_semantic_and_printed_by_the_cli(run_cli):
    major, minor, patch = (int(p) for p in medgan.__version__.split("."))
    assert (major, minor) >= (0, 2)
    code, out, err = run_cli("--version")
    assert code == 0 and out.strip() == f"medgan {medgan.__version__}"


def test_new_files_carry_an_integer_format_version(tmp_path):
    tensors, spec = read_model_file(STARTER)
    out = write_model_file(tmp_path / "m.safetensors", tensors, spec)
    meta = _meta(out)
    assert meta["format"] == MODEL_FORMAT == "medgan-model"
    assert type(meta["format_version"]) is int and meta["format_version"] == MODEL_FORMAT_VERSION == 2
    assert meta["directions"] == ["A->B"]                # format 2 always records what the file holds
    back = read_model_spec(out)
    assert back.format_version == 2 and back == spec


def test_the_shipped_format_1_starter_still_loads():
    from medgan.inference import load_model

    meta = _meta(STARTER)
    assert meta["format"] == "medgan-model-1" and "format_version" not in meta
    model = load_model(STARTER)
    assert model.spec.format_version == 1 and model.spec.directions == ("A->B",) and model.g_ba is None


def test_format_1_files_without_directions_keep_their_reading(tmp_path):
    tensors, _ = read_model_file(STARTER)
    meta = {k: v for k, v in _meta(STARTER).items() if k != "directions"}
    spec = read_model_spec(_with_meta(tmp_path / "paired.safetensors", tensors, meta))
    assert spec.format_version == 1 and spec.directions == ("A->B",)          # paired: one generator
    meta["config"] = {**meta["config"], "model": {**meta["config"]["model"], "method": "cyclegan"}}
    spec = read_model_spec(_with_meta(tmp_path / "cyc.safetensors", tensors, meta))
    assert spec.directions == ("A->B", "B->A")                                  # the methods of that time
    # re-written, the reading is stored explicitly
    assert _meta(write_model_file(tmp_path / "cyc2.safetensors", tensors, spec))["directions"] == ["A->B", "B->A"]


def test_newer_or_corrupt_format_versions_are_refused_in_one_line(tmp_path):
    tensors, _ = read_model_file(STARTER)
    base = {**_meta(STARTER), "format": MODEL_FORMAT, "format_version": 2}
    newer = _with_meta(tmp_path / "newer.safetensors", tensors, {**base, "format_version": 3,
                                                                 "medgan_version": "9.0.0"})
    with pytest.raises(ModelError) as exc:
        read_model_file(newer)
    msg = str(exc.value)
    assert "\n" not in msg and "format 3" in msg and "9.0.0" in msg and "up to 2" in msg and "upgrade" in msg
    for bad, what in ((None, "format_version None"), ("2", "format_version '2'"), (True, "format_version True"),
                      (1, "format_version 1")):
        path = _with_meta(tmp_path / "bad.safetensors", tensors, {**base, "format_version": bad})
        with pytest.raises(ModelError, match=f"corrupt medgan metadata \\({what}\\)"):
            read_model_spec(path)
    no_dirs = {k: v for k, v in base.items() if k != "directions"}
    with pytest.raises(ModelError, match="model format 2 without directions"):
        read_model_spec(_with_meta(tmp_path / "nodirs.safetensors", tensors, no_dirs))
    with pytest.raises(ModelError, match="unknown model format 'medgan-model-2'"):
        read_model_spec(_with_meta(tmp_path / "odd.safetensors", tensors, {**base, "format": "medgan-model-2"}))


def test_the_cli_refuses_a_newer_model_file_in_one_line(tmp_path, run_cli):
    tensors, _ = read_model_file(STARTER)
    newer = _with_meta(tmp_path / "newer.safetensors", tensors,
                       {**_meta(STARTER), "format": MODEL_FORMAT, "format_version": MODEL_FORMAT_VERSION + 1})
    vol = Volume(np.full((2, 16, 16), -500, np.int16), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    write_volume(vol, tmp_path / "in.nii.gz")
    code, out, err = run_cli("translate", "-i", tmp_path / "in.nii.gz", "-o", tmp_path / "out.nii.gz", "-m", newer)
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and f"format {MODEL_FORMAT_VERSION + 1}" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "out.nii.gz").exists()
