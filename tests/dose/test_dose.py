"""Dose evaluation (medgan.dose, ``medgan dose``): physics checks on a water phantom, bad input, the missing extra.

The planning tests need the ``medgan[dose]`` extra (pyRadPlan, pymedphys, numba) and skip without it.
"""
from __future__ import annotations

import csv
import importlib.util
import json
import math

import numpy as np
import pytest

from medgan.errors import InputError
from medgan.io import Volume, write_volume

HAVE_DOSE = all(importlib.util.find_spec(m) is not None for m in ("pyRadPlan", "pymedphys", "numba"))
needs_dose = pytest.mark.skipif(not HAVE_DOSE, reason="needs the medgan[dose] extra (pyRadPlan, pymedphys, numba)")

SP = 4.0  # mm
SHAPE = (12, 60, 80)  # z, y, x: an abdomen-sized water ellipse (320 x 240 mm), 48 mm thick
SEMI = (118.0, 158.0)  # semi-axes (y, x) in mm of the body
TARGET = (160.0, 120.0, 22.0, 12.0)  # x, y, z, r (mm): the centre of the slab


def phantom() -> tuple[Volume, np.ndarray]:
    z, y, x = np.indices(SHAPE, dtype=float) * SP
    body = ((y - 120.0) / SEMI[0]) ** 2 + ((x - 160.0) / SEMI[1]) ** 2 <= 1.0
    hu = np.where(body, 0.0, -1000.0).astype(np.float32)
    return Volume(hu, (SP, SP, SP), (0.0, 0.0, 0.0)), body


def ellipse_entry(origin, direction) -> float:
    """Analytic entry depth t (t along ``direction`` from ``origin``) of a ray into the body ellipse (in-plane beam)."""
    oy, ox = origin[1] - 120.0, origin[2] - 160.0
    dy, dx = direction[1], direction[2]
    a = (dy / SEMI[0]) ** 2 + (dx / SEMI[1]) ** 2
    b = 2 * (oy * dy / SEMI[0] ** 2 + ox * dx / SEMI[1] ** 2)
    c = (oy / SEMI[0]) ** 2 + (ox / SEMI[1]) ** 2 - 1
    return (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)


@pytest.fixture(scope="module")
def runs():
    if not HAVE_DOSE:
        pytest.skip("needs the medgan[dose] extra")
    from medgan.dose import DoseOptions, run_dose

    ct, body = phantom()
    soft = body & (ct.array > -100) & (ct.array < 100)
    images = {"same": ct.with_array(ct.array.copy()),
              "plus50": ct.with_array(np.where(soft, ct.array + 50.0, ct.array).astype(np.float32))}
    oar = ct.with_array(((np.indices(SHAPE)[2] * SP - 215.0) ** 2 + (np.indices(SHAPE)[1] * SP - 120.0) ** 2
                         <= 20.0 ** 2).astype(np.uint8))
    out = {}
    for modality, opts in (("photon", dict(photon_angles=(0, 120, 240))), ("proton", dict(proton_angles=(90, 270)))):
        out[modality] = run_dose(ct, images, TARGET, {"oar": oar},
                                 DoseOptions(modality=modality, site="abdomen", dose_grid_mm=SP, bixel_mm=8.0,
                                             gamma_subset=None, **opts))
    return out


@needs_dose
@pytest.mark.slow
@pytest.mark.parametrize("modality", ["photon", "proton"])
def test_identical_images_agree_perfectly(runs, modality):
    res = runs[modality]
    row = res.row(modality, "same")
    for dd, dta in ((3, 3), (2, 2), (1, 1)):
        assert row[f"gamma_{dd}pct_{dta}mm"] == 100.0
    assert row["gamma_points"] > 100
    for key in ("D98", "D95", "D50", "D2", "mean", "V95"):
        assert abs(row[f"target_{key}_diff"]) < 1e-4
    assert abs(row["oar_mean_diff"]) < 1e-4 and abs(row["oar_max_diff"]) < 1e-4
    assert row["synthrad_mae_dose"] < 1e-5 and row["synthrad_dvh"] < 1e-5
    # the plan is a plan: the target gets its prescription (within 5 %) and the OAR less
    rx = res.options.rx
    assert abs(row["target_D50_ct"] - rx) < 0.05 * rx
    assert row["oar_mean_ct"] < 0.8 * rx
    if modality == "proton":
        assert row["range_rays"] > 20 and abs(row["range_shift_mean_mm"]) < 1e-3


@needs_dose
@pytest.mark.slow
def test_plus_50_hu_shortens_proton_range_as_stopping_power_predicts(runs):
    """Water (HU 0, rSP 1.000) -> HU 50 (rSP 1.0475 in pyRadPlan's table): range shrinks by 1 - 1/1.0475."""
    from medgan.dose.backend import relative_stopping_power

    res = runs["proton"]
    rsp0, rsp1 = relative_stopping_power([0.0, 50.0])
    assert rsp0 == pytest.approx(1.0) and rsp1 == pytest.approx(1.0475)
    row = res.row("proton", "plus50")
    predicted = []
    for beam in res.modalities["proton"].ranges["plus50"]:
        for origin, t_ref in zip(beam["origin"], beam["t_ref"], strict=True):
            depth = t_ref - ellipse_entry(origin, beam["direction"])  # water depth of the CT's R80
            predicted.append(-depth * (1.0 - rsp0 / rsp1))
    expected = float(np.mean(predicted))
    assert expected < -4.0  # ~100 mm of water: ~4.5 mm
    assert row["range_shift_mean_mm"] < 0
    assert row["range_shift_mean_mm"] == pytest.approx(expected, rel=0.2)
    assert row["range_shift_abs_p95_mm"] >= abs(row["range_shift_mean_mm"]) * 0.9
    assert row["gamma_2pct_2mm"] < 100.0


@needs_dose
@pytest.mark.slow
def test_plus_50_hu_fails_some_photon_gamma(runs):
    row = runs["photon"].row("photon", "plus50")
    assert row["gamma_2pct_2mm"] < 100.0
    assert row["gamma_1pct_1mm"] <= row["gamma_2pct_2mm"] <= row["gamma_3pct_3mm"]
    # denser tissue attenuates more: less dose in the target behind ~10 cm of it
    assert row["target_mean_diff"] < 0


@needs_dose
@pytest.mark.slow
def test_shifted_target_loses_coverage(runs):
    from medgan.dose.metrics import dvh_points

    res = runs["photon"]
    dose = res.modalities["photon"].doses["CT"]
    target = res.structures["PTV"][1]
    shifted = np.roll(target, 3, axis=2)  # 12 mm to the right
    planned, moved = dvh_points(dose, target, res.options.rx), dvh_points(dose, shifted, res.options.rx)
    assert moved["D98"] < planned["D98"] - 0.05 * res.options.rx
    assert moved["V95"] < planned["V95"]
    assert moved["mean"] < planned["mean"]


@needs_dose
@pytest.mark.slow
def test_report_files_read_back(runs, tmp_path):
    from medgan.dose.report import write_report

    res = runs["proton"]
    paths = write_report(res, tmp_path / "rep", case="phantom")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert [r["image"] for r in rows] == ["same", "plus50"]
    assert float(rows[1]["range_shift_mean_mm"]) == pytest.approx(res.row("proton", "plus50")["range_shift_mean_mm"])
    doc = json.loads(paths["json"].read_text(encoding="utf-8"))
    assert doc["rows"][1]["gamma_2pct_2mm"] == pytest.approx(res.row("proton", "plus50")["gamma_2pct_2mm"])
    assert doc["structures"]["PTV"]["voxels"] == int(res.structures["PTV"][1].sum())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_dose
def test_gamma_matches_known_shift():
    """A 1-voxel shift of a smooth dose (4 mm) passes 3%/3mm... only where the gradient allows; 0 shift passes all."""
    from medgan.dose.metrics import gamma_pass_rates

    z, y, x = np.indices((10, 30, 30)) * 2.0
    dose = np.exp(-((x - 30) ** 2 + (y - 30) ** 2 + (z - 10) ** 2) / (2 * 12.0 ** 2))
    same = gamma_pass_rates(dose, dose.copy(), (2.0, 2.0, 2.0), subset=None)
    assert same["gamma_1pct_1mm"] == 100.0
    # a 2 mm shift: within 3 mm and 2 mm DTA everywhere, not within 1 mm where the gradient is steep
    shifted = np.roll(dose, 1, axis=2)
    r = gamma_pass_rates(dose, shifted, (2.0, 2.0, 2.0), subset=None)
    assert r["gamma_3pct_3mm"] == 100.0 and r["gamma_2pct_2mm"] == 100.0
    assert r["gamma_1pct_1mm"] < 100.0


# --------------------------------------------------------------------------- bad input
def _write(tmp_path, name, vol):
    p = tmp_path / name
    write_volume(vol, p)
    return p


def test_structure_checks_without_the_extra():
    from medgan.dose.backend import Grid
    from medgan.dose.recompute import build_structures

    ct, body = phantom()
    grid = Grid(SHAPE, (SP, SP, SP), (0.0, 0.0, 0.0))
    with pytest.raises(InputError, match="outside the body"):
        build_structures(ct, grid, ct.array, (5.0, 5.0, 22.0, 10.0), None)
    with pytest.raises(InputError, match="empty"):
        build_structures(ct, grid, ct.array, ct.with_array(np.zeros(SHAPE, np.uint8)), None)
    with pytest.raises(InputError, match="no voxel"):
        build_structures(ct, grid, ct.array, (5000.0, 5.0, 22.0, 10.0), None)
    structures, name = build_structures(ct, grid, ct.array, TARGET, None)
    assert structures[name][0] == "TARGET" and structures["BODY"][1].sum() == body.sum()


def test_missing_extra_is_one_line(run_cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyRadPlan" else real(n, *a))
    code, out, err = run_cli("dose", "--ct", "a.nii.gz", "--sct", "b.nii.gz", "--target-sphere", "0,0,0,10",
                             "-o", tmp_path / "r")
    assert code == 1 and err.count("\n") == 1 and "medgan[dose]" in err and "Traceback" not in err


@needs_dose
def test_cli_bad_input_is_one_line(run_cli, tmp_path):
    ct, _ = phantom()
    ctp = _write(tmp_path, "ct.nii.gz", ct)
    other = Volume(ct.array[:, :50], ct.spacing, ct.origin)
    cases = {
        "different grids": (["--sct", _write(tmp_path, "small.nii.gz", other), "--target-sphere", "160,120,22,12"],
                            "different grids"),
        "outside": (["--sct", ctp, "--target-sphere", "5,5,22,10"], "outside the body"),
        "empty label": (["--sct", ctp, "--target", _write(tmp_path, "empty.nii.gz",
                                                               ct.with_array(np.zeros(SHAPE, np.uint8)))], "empty"),
        "bad sphere": (["--sct", ctp, "--target-sphere", "1,2,3"], "x,y,z,r"),
    }
    for name, (args, msg) in cases.items():
        code, out, err = run_cli("dose", "--ct", ctp, *args, "-o", tmp_path / "rep")
        assert code == 1, name
        assert err.count("\n") == 1 and msg in err and "Traceback" not in err, (name, err)
    assert not (tmp_path / "rep").exists()


def test_pipeline_hook_skips_with_a_notice_without_the_extra(monkeypatch, tmp_path):
    from medgan.dose.recompute import pipeline_dose

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pymedphys" else real(n, *a))
    ct, _ = phantom()
    lines = []
    assert pipeline_dose(ct, {"sCT": ct}, tmp_path / "dose", "phantom", printer=lines.append) == []
    assert len(lines) == 1 and "skipped" in lines[0] and "medgan[dose]" in lines[0]
    assert not (tmp_path / "dose").exists()


def test_auto_target_is_soft_tissue_inside_the_body():
    from medgan.dose.structures import auto_sphere

    ct, body = phantom()
    x, y, z, r = auto_sphere(ct, 12.0)
    iz, iy, ix = (int(round(v / SP)) for v in (z, y, x))
    assert body[iz, iy, ix] and ct.array[iz, iy, ix] == 0.0
    # the whole sphere is inside the ellipse
    assert ((y - 120.0) / (SEMI[0] - r)) ** 2 + ((x - 160.0) / (SEMI[1] - r)) ** 2 <= 1.0


# --------------------------------------------------------------------------- medgan evaluate --dose (folders)
def _small_case(shift_hu: float) -> Volume:
    """A smaller water ellipse (semi-axes 70 x 90 mm, 40 mm thick at 4 mm) + ``shift_hu`` inside the body."""
    _, y, x = np.indices((10, 44, 56), dtype=float) * SP
    body = ((y - 86.0) / 70.0) ** 2 + ((x - 110.0) / 90.0) ** 2 <= 1.0
    return Volume(np.where(body, shift_hu, -1000.0).astype(np.float32), (SP, SP, SP), (0.0, 0.0, 0.0))


@needs_dose
@pytest.mark.slow
def test_evaluate_dose_on_folders_joins_image_metrics(run_cli, tmp_path):
    """Two cases matched by name: the exact copy gives 100 % gamma and no range shift, +50 HU shortens the range;
    the image MAE joined to each dose row is the one computed by hand (|+50 HU| over the body)."""
    for d in ("ct", "sct", "cbct"):
        (tmp_path / d).mkdir()
    # case a: sCT exact, CBCT +50 HU; case b: the other way round
    for name, (sct, cbct) in {"a": (0.0, 50.0), "b": (50.0, 0.0)}.items():
        write_volume(_small_case(0.0), tmp_path / "ct" / f"{name}.nii.gz")
        write_volume(_small_case(sct), tmp_path / "sct" / f"{name}.nii.gz")
        write_volume(_small_case(cbct), tmp_path / "cbct" / f"{name}.mha")  # matched by stem, any format
    write_volume(_small_case(0.0), tmp_path / "sct" / "orphan.nii.gz")  # no CT of that name: a failed case
    code, out, err = run_cli("evaluate", "--pred", tmp_path / "sct", "--reference", tmp_path / "ct",
                             "--input", tmp_path / "cbct", "--pred-label", "sCT", "--input-label", "CBCT",
                             "--mask-mode", "body", "--dose", "--modality", "proton", "--proton-angles", "90,270",
                             "--dose-grid", "4", "--gamma-subset", "0", "-o", tmp_path / "rep", "-q")
    assert code == 1 and "orphan: FAILED: no reference named orphan" in err  # the two real cases still ran
    rows = list(csv.DictReader((tmp_path / "rep" / "dose.csv").open()))
    assert sorted((r["case"], r["image"], r["modality"]) for r in rows) == [
        ("a", "CBCT", "proton"), ("a", "sCT", "proton"), ("b", "CBCT", "proton"), ("b", "sCT", "proton")]
    by = {(r["case"], r["image"]): r for r in rows}
    for exact, shifted in ((("a", "sCT"), ("a", "CBCT")), (("b", "CBCT"), ("b", "sCT"))):
        e, s = by[exact], by[shifted]
        assert float(e["mae"]) == 0.0 and float(s["mae"]) == pytest.approx(50.0, abs=1e-3)  # joined image metrics
        assert float(e["me"]) == 0.0 and float(s["me"]) == pytest.approx(50.0, abs=1e-3)
        assert float(e["gamma_1pct_1mm"]) == 100.0 and abs(float(e["target_D98_diff"])) < 1e-4
        assert abs(float(e["range_shift_mean_mm"])) < 1e-3
        assert float(s["range_shift_mean_mm"]) < -1.0  # denser water stops the protons short
        assert float(s["gamma_2pct_2mm"]) < 100.0
    # the automatic target: one 25 mm sphere per case, inside the body
    doc = json.loads((tmp_path / "rep" / "dose.json").read_text(encoding="utf-8"))
    assert set(doc["cases"]) == {"a", "b"} and doc["options"]["modality"] == "proton"
    for case in doc["cases"].values():
        x, y, _, r = case["target_sphere_xyzr_mm"]
        assert case["target_source"] == "automatic" and r == 25.0
        assert ((y - 86.0) / (70.0 - r)) ** 2 + ((x - 110.0) / (90.0 - r)) ** 2 <= 1.0
    # the summary over the two patients is the mean of the rows
    metrics = json.loads((tmp_path / "rep" / "metrics.json").read_text(encoding="utf-8"))
    st = metrics["dose"]["summary"]["proton"]["prediction"]["gamma_2pct_2mm"]   # keyed by role, as the image rows
    assert st["n"] == 2 and st["mean"] == pytest.approx(
        np.mean([float(by[("a", "sCT")]["gamma_2pct_2mm"]), float(by[("b", "sCT")]["gamma_2pct_2mm"])]), abs=1e-5)
    assert "dose (mean over 2 patient(s)" in out
    assert (tmp_path / "rep" / "a_dose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_evaluate_dose_flags_need_dose(run_cli, tmp_path):
    write_volume(_small_case(0.0), tmp_path / "t.nii.gz")
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz",
                             "--modality", "proton", "--target-sphere", "110,86,20,10")
    assert code == 1 and err.count("\n") == 1 and "--target-sphere, --modality only apply with --dose" in err


def test_evaluate_dose_missing_extra_is_one_line(run_cli, tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "pyRadPlan" else real(n, *a))
    write_volume(_small_case(0.0), tmp_path / "t.nii.gz")
    code, _, err = run_cli("evaluate", "--pred", tmp_path / "t.nii.gz", "--reference", tmp_path / "t.nii.gz",
                             "--dose", "-o", tmp_path / "rep")
    assert code == 1 and err.count("\n") == 1 and "medgan[dose]" in err and "Traceback" not in err
    assert not (tmp_path / "rep").exists()


@pytest.mark.parametrize("text, expected", [("90,270", (90.0, 270.0)), (" 0, 51.5 ", (0.0, 51.5)), (None, None)])
def test_beam_angles_parse(text, expected):
    from medgan.cli.common import parse_angles

    assert parse_angles(text) == expected


def test_dose_and_evaluate_share_one_set_of_dose_flags():
    """The dose flags are registered once (medgan.cli.common) and read the same way by both commands."""
    from medgan.cli.common import DOSE_DEFAULTS, dose_options
    from medgan.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command").choices
    flags = ["--modality", "both", "--site", "brain", "--prescription", "2.5", "--photon-angles", "0,120,240",
             "--proton-angles", "90", "--dose-grid", "4", "--slab-margin", "-1", "--gamma-subset", "0",
             "--target-sphere", "1,2,3,4"]
    a = sub["dose"].parse_args(["--ct", "c", "--sct", "s", "-o", "o", *flags])
    b = sub["evaluate"].parse_args(["--pred", "p", "--reference", "t", "--dose", *flags])
    for k in DOSE_DEFAULTS:
        assert getattr(a, k) == getattr(b, k), k
    oa, ob = dose_options(a), dose_options(b)
    assert oa == ob and oa.proton_angles == (90.0,) and oa.slab_margin_mm is None and oa.gamma_subset is None
    assert oa.angles("photon") == (0.0, 120.0, 240.0) and oa.rx == 2.5
