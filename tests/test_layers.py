"""The layers: the model-file contract (medgan.io.model_file), case listing (medgan.io.cases), the batch
translation and FID APIs, and the import graph (inference/evaluation never import the training engine,
pipelines never import the CLI)."""
from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch

from medgan.config import ExperimentConfig, config_to_dict
from medgan.data.hu import HU_PRESETS
from medgan.errors import InputError, ModelError
from medgan.io import Volume, write_volume
from medgan.io.cases import case_name, index_cases, list_volumes, match_pairs
from medgan.io.model_file import MODEL_FORMAT, ModelSpec, read_model_file, read_model_spec, write_model_file
from tests.conftest import REPO

STARTER = REPO / "medgan" / "models" / "cbct2ct_starter.safetensors"


def _raw_metadata(path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return json.loads(fh.metadata()["medgan"])


# ---------------------------------------------------------------------------- model files
def test_starter_model_reads_through_the_model_file_contract():
    tensors, spec = read_model_file(STARTER)
    assert spec.method == "paired" and spec.directions == ("A->B",)       # the paired correction starter
    assert spec.spatial_dims == 2 and spec.generator == "resnet" and spec.spacing == [4.0, 4.0]
    assert spec.patch_size == [96, 96] and spec.hu_preset["name"] == "ct-full" and spec.step == 1000
    assert set(spec.calibration) == {"linear", "histogram"} and spec.domain is not None
    assert {k.split(".")[0] for k in tensors} == {"g_ab"}
    assert read_model_spec(STARTER) == spec
    # the metadata medgan 0.1.0 wrote (model format 1) reads into the spec and back unchanged, in format 2
    raw = _raw_metadata(STARTER)
    assert raw["format"] == "medgan-model-1" and "format_version" not in raw and spec.format_version == 1
    assert ModelSpec.from_metadata(raw).to_metadata() == {**raw, "format": MODEL_FORMAT, "format_version": 2}


def test_model_file_roundtrip_keeps_weights_and_metadata(tmp_path):
    from medgan.inference import load_model

    tensors, spec = read_model_file(STARTER)
    spec.extra["note"] = "kept"
    out = write_model_file(tmp_path / "copy.safetensors", tensors, spec)
    back, spec2 = read_model_file(out)
    assert spec2 == spec and _raw_metadata(out)["format"] == MODEL_FORMAT
    assert set(back) == set(tensors) and all(torch.equal(back[k], tensors[k]) for k in tensors)
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644            # a model is meant to be shared
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]    # no temporary left
    model = load_model(out)
    assert model.spec == spec and model.g_ba is None and model.step == 1000


def test_model_spec_of_a_paired_model_and_bad_metadata(tmp_path):
    cfg = ExperimentConfig()
    cfg.model.method = "paired"
    spec = ModelSpec(config_to_dict(cfg), HU_PRESETS["ct-full"].to_dict())
    assert spec.directions == ("A->B",) and spec.training_domain == {} and spec.to_metadata()["directions"] == ["A->B"]
    # files from before the rename say model.mode; files from before directions were recorded hold both
    legacy = {**config_to_dict(ExperimentConfig()), "model": {"mode": "paired"}}
    assert ModelSpec(legacy, {}).method == "paired" and ModelSpec(legacy, {}).directions == ("A->B",)
    assert ModelSpec(config_to_dict(ExperimentConfig()), {}).directions == ("A->B", "B->A")
    # a method's declared directions are written and read back, whatever its name
    cfg.model.method = "some-new-method"
    declared = ModelSpec(config_to_dict(cfg), HU_PRESETS["ct-full"].to_dict(), declared_directions=("A->B",))
    meta = declared.to_metadata()
    assert meta["directions"] == ["A->B"] and ModelSpec.from_metadata(meta).directions == ("A->B",)
    for bad in (["B->A"], "A->B", ["A->B", "C->D"]):
        with pytest.raises(ModelError, match="corrupt medgan metadata .directions"):
            ModelSpec.from_metadata({**meta, "directions": bad})
    with pytest.raises(ModelError, match="unknown model format"):
        ModelSpec.from_metadata({**spec.to_metadata(), "format": "other-1"})
    with pytest.raises(ModelError, match="corrupt training-domain record"):
        ModelSpec.from_metadata({**spec.to_metadata(), "calibration": [1, 2]})
    with pytest.raises(ModelError, match="no configuration"):
        ModelSpec.from_metadata({"format": MODEL_FORMAT, "format_version": 2, "hu_preset": {}})
    (tmp_path / "junk.safetensors").write_bytes(b"\xff" * 64)
    with pytest.raises(ModelError, match="not a readable medgan model"):
        read_model_file(tmp_path / "junk.safetensors")


# ---------------------------------------------------------------------------- cases
def _vol(value: float = 0.0) -> Volume:
    return Volume(np.full((4, 8, 8), value, np.int16), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


def test_cases_are_matched_by_file_stem_across_formats(tmp_path):
    for name in ("p1.nii.gz", "p2.mha", "p3.nrrd"):
        write_volume(_vol(), tmp_path / "A" / name)
    for name in ("p2.nii.gz", "p1.mha", "other.mha"):
        write_volume(_vol(), tmp_path / "B" / name)
    (tmp_path / "A" / "notes.txt").write_text("not a volume")
    assert case_name(tmp_path / "p1.nii.gz") == "p1" and case_name("dir/p1") == "p1"
    assert [p.name for p in list_volumes(tmp_path / "A")] == ["p1.nii.gz", "p2.mha", "p3.nrrd"]
    assert [(a.name, b.name) for a, b in match_pairs(tmp_path / "A", tmp_path / "B")] == [
        ("p1.nii.gz", "p1.mha"), ("p2.mha", "p2.nii.gz")]
    assert set(index_cases(tmp_path / "B")) == {"p1", "p2", "other"}
    write_volume(_vol(), tmp_path / "B" / "p1.nrrd")
    with pytest.raises(InputError, match="two volumes of case 'p1'"):
        match_pairs(tmp_path / "A", tmp_path / "B")
    write_volume(_vol(), tmp_path / "C" / "zzz.mha")
    with pytest.raises(InputError, match="no case names in common"):
        match_pairs(tmp_path / "A", tmp_path / "C")


# ---------------------------------------------------------------------------- Python API over the CLI
@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from medgan.engine.methods.cyclegan import CycleGAN

    cfg = ExperimentConfig()
    cfg.model.generator_args = {"channels": 4, "n_blocks": 1}
    gen = CycleGAN(cfg, torch.device("cpu")).gen
    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    return write_model_file(path, gen.state_dict(), ModelSpec(config_to_dict(cfg), HU_PRESETS["ct-full"].to_dict()))


def test_translate_folder_api_reports_each_case(tmp_path, tiny_model):
    from medgan.inference import TranslateOptions, load_model, translate_folder
    from medgan.simulation.phantom import make_phantom

    for i in range(2):
        write_volume(make_phantom(i, shape=(4, 32, 32))[0], tmp_path / "in" / f"case{i}.nii.gz")
    (tmp_path / "in" / "broken.mha").write_bytes(b"not an image")
    model = load_model(tiny_model)
    opts = TranslateOptions(device="cpu", quiet=True)
    outcomes = translate_folder(tmp_path / "in", tmp_path / "out", model, opts, qa_dir=tmp_path / "qa")
    assert [(o.case.name, o.status) for o in outcomes] == [
        ("broken.mha", "failed"), ("case0.nii.gz", "ok"), ("case1.nii.gz", "ok")]
    assert outcomes[0].error and (tmp_path / "out" / "case0.nii.gz").exists()
    assert sorted(p.name for p in (tmp_path / "qa").iterdir()) == ["case0.nii.gz", "case1.nii.gz"]
    again = translate_folder(tmp_path / "in", tmp_path / "out", model, opts, skip_done=True)
    assert [o.status for o in again] == ["failed", "skipped", "skipped"]


def test_fid_accumulator_and_the_cli_that_uses_it(tmp_path, run_cli):
    from safetensors.torch import save_file

    from medgan.evaluation import distribution as dist

    if "test-pool" not in dist.FEATURE_EXTRACTORS:
        @dist.register_feature_extractor("test-pool")
        def _pool(state):
            return torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten()), 16

    rng = np.random.default_rng(0)
    vols = [rng.normal(0, 200, (6, 16, 16)).astype(np.float32) for _ in range(4)]
    acc = dist.DistributionAccumulator(*dist.FEATURE_EXTRACTORS["test-pool"]({}), name="test-pool")
    acc.add(vols[0], vols[1])
    acc.add(Volume(vols[2], (1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), vols[3])
    res = acc.result()
    feats = [dist.features(acc.extractor, dist.slices_to_images(v, 16, max_slices=64)) for v in vols]
    fa, fb = np.concatenate(feats[0::2]), np.concatenate(feats[1::2])
    assert len(acc) == 2 and res["slices"] == [12, 12] and res["extractor"] == "test-pool"
    assert res["fid"] == pytest.approx(dist.frechet_distance(fa, fb))
    with pytest.raises(InputError, match="no case"):
        dist.DistributionAccumulator(acc.extractor, 16).result()
    # the CLI accumulates the same way over a folder of cases
    from medgan.simulation.phantom import make_phantom

    for i in range(2):
        ct = make_phantom(i, shape=(6, 32, 32))[0]
        write_volume(ct, tmp_path / "ct" / f"c{i}.nii.gz")
        write_volume(ct.with_array(ct.array + rng.normal(0, 20, ct.shape)), tmp_path / "pred" / f"c{i}.nii.gz")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "w.safetensors"))
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "pred", "--reference", tmp_path / "ct", "-q",
                             "--fid-weights", tmp_path / "w.safetensors", "--fid-features", "test-pool",
                             "-o", tmp_path / "report", "--no-figures")
    assert code == 0, err
    assert "FID" in out and "KID" in out
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["distribution"]["slices"] == [12, 12]


# ---------------------------------------------------------------------------- import graph
def _imports(path) -> set[str]:
    """Every module a file imports, at any depth (function-level imports included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)
    return found


#: package -> the medgan packages it must never import
FORBIDDEN = {
    "io": ("medgan.engine", "medgan.cli", "medgan.inference", "medgan.evaluation", "medgan.data"),
    "config": ("medgan.engine", "medgan.cli", "medgan.inference"),
    "calibration": ("medgan.engine", "medgan.cli"),
    "inference": ("medgan.engine", "medgan.cli"),
    "evaluation": ("medgan.engine", "medgan.cli", "medgan.inference"),
    "engine": ("medgan.cli", "medgan.workflows"),
    "workflows": ("medgan.cli",),
}
#: the workflows layer sits below the CLI only: no other package imports it
FORBIDDEN = {k: tuple(dict.fromkeys((*v, "medgan.workflows"))) if k != "workflows" else v for k, v in FORBIDDEN.items()}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_static_import_graph_of_the_package(package):
    bad = [f"{path.relative_to(REPO)} imports {mod}" for path in sorted((REPO / "medgan" / package).rglob("*.py"))
           for mod in sorted(_imports(path)) if mod.startswith(FORBIDDEN[package])]
    assert not bad, bad


def test_pipelines_use_the_python_api_not_the_cli():
    bad = [f"{path.relative_to(REPO)} imports {mod}" for path in sorted((REPO / "pipelines").rglob("*.py"))
           for mod in sorted(_imports(path)) if mod == "medgan.cli" or mod.startswith("medgan.cli.")]
    assert not bad, bad


def test_inference_and_evaluation_load_without_the_engine_or_torchio():
    code = """
import sys
import medgan.io.cases
assert "torchio" not in sys.modules, "listing cases imported torchio"
import medgan.evaluation, medgan.evaluation.evaluate, medgan.evaluation.distribution
import medgan.inference
from medgan.inference import load_model
load_model(None)
loaded = sorted(m for m in sys.modules if m.startswith(("medgan.engine", "medgan.cli")))
assert not loaded, loaded
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-2000:]


def test_checkpoints_use_the_one_atomic_writer(tmp_path, monkeypatch):
    from medgan.engine import checkpoint as ckpt

    path = tmp_path / "checkpoints" / "last.pt"
    ckpt.atomic_torch_save({"step": 1}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}

    def broken(obj, f):
        with open(f, "wb") as fh:
            fh.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(Exception, match="disk is full"):
        ckpt.atomic_torch_save({"step": 2}, path)
    assert torch.load(path, weights_only=True) == {"step": 1}                 # the old one, whole
    assert [p.name for p in path.parent.iterdir()] == ["last.pt"]             # no temporary left
