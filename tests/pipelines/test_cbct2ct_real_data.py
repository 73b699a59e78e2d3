"""pipelines/cbct2ct real-data entry.

--cbct-dir + --ct-dir -> register -> training (paired on the registered pairs by default) -> translate -> evaluate."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medgan.errors import InputError
from medgan.io import Volume, write_volume
from medgan.simulation.phantom import make_phantom
from medgan.workflows import cbct2ct
from tests.conftest import REPO
from tests.pipelines.test_pipelines import script

pytestmark = pytest.mark.skipif(importlib.util.find_spec("itk") is None, reason="itk-elastix not installed")


def _real_like_cbct(ct: Volume, rng) -> Volume:
    """Another day's scan: the patient 6 mm and 3 degrees off, -40 HU bias, noise, a truncated FOV (-1000 outside)."""
    img = ct.to_sitk(np.float32)
    centre = img.TransformContinuousIndexToPhysicalPoint([(s - 1) / 2 for s in img.GetSize()])
    t = sitk.Euler3DTransform()
    t.SetCenter(centre)
    t.SetRotation(0.0, 0.0, np.deg2rad(3.0))
    t.SetTranslation((6.0, -4.0, 0.0))
    arr = sitk.GetArrayFromImage(sitk.Resample(img, img, t, sitk.sitkLinear, -1000.0, sitk.sitkFloat32))
    arr = arr - 40.0 + rng.normal(0, 20, arr.shape)
    ny, nx = arr.shape[1:]
    yy, xx = np.indices((ny, nx))
    arr[:, np.hypot(yy - (ny - 1) / 2, xx - (nx - 1) / 2) > 0.47 * nx] = -1000.0
    return ct.with_array(arr.astype(np.float32))


@pytest.mark.slow
def test_real_data_entry_registers_trains_translates_and_evaluates(tmp_path):
    rng = np.random.default_rng(0)
    for d in ("cbct", "ct"):
        (tmp_path / d).mkdir()
    for i in range(4):
        ct, _ = make_phantom(60 + i, shape=(12, 48, 48), spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, tmp_path / "ct" / f"pat{i}.nii.gz")
        write_volume(_real_like_cbct(ct, rng), tmp_path / "cbct" / f"pat{i}.mha")
    write_volume(ct, tmp_path / "ct" / "lonely.nii.gz")                 # no CBCT: skipped with a note
    work = tmp_path / "work"
    # the default config: the starter's paired correction recipe, trained on the registered pairs
    out = script("pipelines/cbct2ct/run.py", "--cbct-dir", tmp_path / "cbct", "--ct-dir", tmp_path / "ct", "-w", work,
                 "--set", "optim.steps=3", "--set", "train.checkpoint_every=3",
                 "--set", "data.patch_size=[32,32]", "--test-cases", "pat3", "--reg-iterations", "40",
                 "--reg-final-iterations", "40", "--reg-resolutions", "2", "-q")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "skipping unmatched name(s): lonely" in out.stderr
    meta = json.loads((work / "data" / "split.json").read_text(encoding="utf-8"))
    assert meta["split"]["test"] == ["pat3"] and "pat3" not in meta["domain_a"] + meta["domain_b"]
    assert meta["paired"] and meta["domain_a"] == meta["domain_b"] == meta["split"]["train"]
    reg = work / "registered"
    from medgan.io import read_volume

    for name in ("pat0", "pat1", "pat2", "pat3"):                      # every patient registered onto its CBCT
        cbct = read_volume(tmp_path / "cbct" / f"{name}.mha")
        assert read_volume(reg / "ct" / f"{name}.nii.gz").same_grid(cbct)
        assert read_volume(reg / "fov" / f"{name}.nii.gz").same_grid(cbct)
        assert (reg / "ct" / f"{name}_qa.png").exists()
    # a training pair: the CBCT in A; in B its registered CT where that has data inside the CBCT's FOV, and the
    # CBCT's own voxels elsewhere (outside the FOV, and where the moved CT does not reach: Elastix's -1024 fill)
    a, b = (read_volume(work / "data" / "train" / d / "pat0.nii.gz").array.astype(np.float32) for d in ("A", "B"))
    ct0 = read_volume(reg / "ct" / "pat0.nii.gz").array.astype(np.float32)
    fov = read_volume(reg / "fov" / "pat0.nii.gz").array > 0
    inside = fov & (ct0 > -1023.5)
    assert 0 < inside.mean() < fov.mean() < 1                     # the 3-degree, 6 mm move leaves corners uncovered
    assert np.array_equal(b[~inside], a[~inside]) and np.abs(b[inside] - ct0[inside]).max() <= 0.5
    for protocol, struct in (("synthrad2023", "ssim"), ("synthrad2025", "ms_ssim")):
        doc = json.loads((work / f"report_{protocol}" / "metrics.json").read_text(encoding="utf-8"))
        assert doc["protocol"] == protocol and doc["mask"] == "body(CT) ∩ FOV(given)"
        assert set(doc["summary"]) == {"input", "linear", "histogram", "prediction"}      # keyed by role
        assert struct in doc["summary"]["prediction"]
        assert {"prediction - input", "prediction - linear", "prediction - histogram"} <= set(doc["paired"])
        # the CBCT's known -40 HU bias survives registration: its mean error against the registered CT
        assert doc["summary"]["input"]["me"]["mean"] == pytest.approx(-40.0, abs=25.0)
    assert "protocol synthrad2025; mask body(CT) ∩ FOV(given)" in out.stdout


def test_real_data_unpaired_domains_and_paired_refusals(tmp_path):
    """An unpaired config trains on the CTs as they are (halves with --disjoint-domains); a paired one refuses
    --disjoint-domains, and refuses to train on pairs that were never registered, each in one line."""
    for d in ("cbct", "ct"):
        (tmp_path / d).mkdir()
    pairs = {}
    for i in range(4):
        ct, _ = make_phantom(80 + i, shape=(4, 24, 24), spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, tmp_path / "ct" / f"p{i}.nii.gz")
        write_volume(ct, tmp_path / "cbct" / f"p{i}.nii.gz")
        pairs[f"p{i}"] = (tmp_path / "cbct" / f"p{i}.nii.gz", tmp_path / "ct" / f"p{i}.nii.gz")
    sp = {"train": ["p0", "p1", "p2"], "test": ["p3"]}
    data = cbct2ct.prepare_real_cohort(tmp_path / "w", pairs, sp, disjoint_domains=True)
    meta = json.loads((data / "split.json").read_text(encoding="utf-8"))
    assert (meta["domain_a"], meta["domain_b"], meta["paired"]) == (["p0", "p2"], ["p1"], False)
    assert sorted(p.name for p in (data / "train" / "B").iterdir()) == ["p1.nii.gz"]
    # another split: nothing of the old one is reused (p3 moves to training, p0 to test)
    data = cbct2ct.prepare_real_cohort(tmp_path / "w", pairs, {"train": ["p1", "p2", "p3"], "test": ["p0"]},
                                       disjoint_domains=True)
    assert sorted(p.name for p in (data / "train" / "A").iterdir()) == ["p1.nii.gz", "p3.nii.gz"]
    assert sorted(p.name for p in (data / "test" / "CBCT").iterdir()) == ["p0.nii.gz"]
    common = {"cbct_dir": tmp_path / "cbct", "ct_dir": tmp_path / "ct", "work": tmp_path / "w2",
              "config": REPO / "configs" / "cbct2ct_correction_paired_cpu.yaml", "test_cases": ["p3"], "quiet": True}
    with pytest.raises(InputError, match="--disjoint-domains is for unpaired configs"):
        cbct2ct.run_real_data(cbct2ct.RealDataOptions(**common, disjoint_domains=True))
    with pytest.raises(InputError, match="run the register stage first"):
        cbct2ct.run_real_data(cbct2ct.RealDataOptions(**common, stages=frozenset({"train"})))
    # the script says it in one line on stderr, exit 1
    proc = script("pipelines/cbct2ct/run.py", "--cbct-dir", common["cbct_dir"], "--ct-dir", common["ct_dir"],
                  "-w", common["work"], "--test-cases", "p3", "-q", "--stages", "train")
    assert proc.returncode == 1 and proc.stderr.startswith("cbct2ct: a paired config trains on registered CTs")
    assert proc.stderr.count("\n") == 1, proc.stderr
