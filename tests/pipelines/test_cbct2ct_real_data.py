"""pipelines/cbct2ct real-data entry.

--cbct-dir + --ct-dir -> register -> unpaired training -> translate -> evaluate."""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import SimpleITK as sitk

from medgan.io import Volume, write_volume
from medgan.simulation.phantom import make_phantom
from tests.conftest import REPO
from tests.pipelines.test_pipelines import _load

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
def test_real_data_entry_registers_trains_translates_and_evaluates(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for d in ("cbct", "ct"):
        (tmp_path / d).mkdir()
    for i in range(4):
        ct, _ = make_phantom(60 + i, shape=(12, 48, 48), spacing_zyx=(5.0, 8.0, 8.0))
        write_volume(ct, tmp_path / "ct" / f"pat{i}.nii.gz")
        write_volume(_real_like_cbct(ct, rng), tmp_path / "cbct" / f"pat{i}.mha")
    write_volume(ct, tmp_path / "ct" / "lonely.nii.gz")                 # no CBCT: skipped with a note
    run = _load("pipelines/cbct2ct/run.py", "cbct2ct_run")
    work = tmp_path / "work"
    code = run.main(["--cbct-dir", str(tmp_path / "cbct"), "--ct-dir", str(tmp_path / "ct"), "-w", str(work),
                     "-c", str(REPO / "configs" / "tiny_cpu.yaml"), "--set", "optim.steps=3",
                     "--set", "train.checkpoint_every=3", "--set", "train.val_every=0",
                     "--set", "data.patch_size=[32,32]", "--test-cases", "pat3", "--reg-iterations", "40",
                     "--reg-final-iterations", "40", "--reg-resolutions", "2", "-q"])
    assert code == 0
    out = capsys.readouterr()
    assert "skipping unmatched name(s): lonely" in out.err
    meta = json.loads((work / "data" / "split.json").read_text(encoding="utf-8"))
    assert meta["split"]["test"] == ["pat3"] and "pat3" not in meta["domain_a"] + meta["domain_b"]
    reg = work / "registered"
    from medgan.io import read_volume

    cbct = read_volume(tmp_path / "cbct" / "pat3.mha")
    assert read_volume(reg / "ct" / "pat3.nii.gz").same_grid(cbct)
    assert read_volume(reg / "fov" / "pat3.nii.gz").same_grid(cbct)
    assert (reg / "ct" / "pat3_qa.png").exists()
    for protocol, struct in (("synthrad2023", "ssim"), ("synthrad2025", "ms_ssim")):
        doc = json.loads((work / f"report_{protocol}" / "metrics.json").read_text(encoding="utf-8"))
        assert doc["protocol"] == protocol and doc["mask"] == "body(CT) ∩ FOV(given)"
        assert set(doc["summary"]) == {"CBCT", "sCT"} and struct in doc["summary"]["sCT"]
        assert "sCT - CBCT" in doc["paired"]
        # the CBCT's known -40 HU bias survives registration: its mean error against the registered CT
        assert doc["summary"]["CBCT"]["me"]["mean"] == pytest.approx(-40.0, abs=25.0)
    assert "protocol synthrad2025; mask body(CT) ∩ FOV(given)" in out.out
