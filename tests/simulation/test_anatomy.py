"""Pseudo-patients (medgan.simulation.anatomy) and the source-patient split (medgan.data.sources).

Displacements are measured from SimpleITK's own displacement field of the transforms, HU changes from the
arrays, label agreement by Dice against a threshold of the deformed image.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from medgan.data.sources import leave_one_source_out, source_groups, split_by_source
from medgan.errors import InputError
from medgan.io import Volume, read_volume, write_volume
from medgan.simulation import anatomy
from medgan.simulation.anatomy import HU_SHIFTS, AnatomyParams, apply_hu_variation, pseudo_patient
from medgan.simulation.phantom import make_phantom

SHAPE, SPACING = (16, 64, 64), (5.0, 5.0, 5.0)


def _phantom(seed: int = 0, bladder: bool = False) -> tuple[Volume, Volume]:
    ct, labels = make_phantom(seed, shape=SHAPE, spacing_zyx=SPACING, noise_hu=0.0)
    if bladder:                       # a water-filled bladder (label 21) in the anterior middle of the body
        z, y, x = np.ogrid[:SHAPE[0], :SHAPE[1], :SHAPE[2]]
        ball = ((z - 8) * 5.0) ** 2 + ((y - 24) * 5.0) ** 2 + ((x - 32) * 5.0) ** 2 <= 25.0 ** 2
        arr, lab = ct.array.copy(), labels.array.copy()
        arr[ball], lab[ball] = 10, 21
        ct, labels = ct.with_array(arr), labels.with_array(lab)
    return ct, Volume(labels.array, ct.spacing, ct.origin, ct.direction)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def test_same_seed_same_result_and_seeds_differ():
    ct, labels = _phantom()
    a, la, ma = pseudo_patient(ct, 3, "pelvis", labels, source="p")
    b, lb, mb = pseudo_patient(ct, 3, "pelvis", labels, source="p")
    c, _, mc = pseudo_patient(ct, 4, "pelvis", labels, source="p")
    np.testing.assert_array_equal(a.array, b.array)
    np.testing.assert_array_equal(la.array, lb.array)
    assert ma == mb
    assert np.abs(a.array - c.array).mean() > 5.0 and ma["body_scale"] != mc["body_scale"]


def test_input_never_modified():
    ct, labels = _phantom(bladder=True)
    before_ct, before_lab, meta_before = ct.array.copy(), labels.array.copy(), dict(ct.meta)
    pseudo_patient(ct, 0, "pelvis", labels, source="p")
    np.testing.assert_array_equal(ct.array, before_ct)
    np.testing.assert_array_equal(labels.array, before_lab)
    assert ct.meta == meta_before


@pytest.mark.parametrize("bound", [4.0, 12.0])
def test_bspline_displacement_within_the_stated_bound(bound):
    ct, _ = _phantom()
    image = ct.to_sitk()
    field = anatomy.displacement(anatomy.bspline_transform(image, np.random.default_rng(1), bound, 40.0), image)
    norm = np.linalg.norm(field, axis=-1)
    assert norm.max() <= bound + 1e-6
    assert norm.max() > 0.3 * bound           # it does deform (not a zero field)


def test_body_scale_measured_on_the_body_width():
    ct, _ = _phantom()
    fixed = dict(deformation_mm=0.0, hu_variation=False, max_gas_pockets=0, bladder_range=(0.0, 0.0))
    out, _, meta = pseudo_patient(ct, 0, "thorax", None, AnatomyParams(scale_range=(0.9, 0.9), **fixed), source="p")
    width_in = (ct.array[8] > -500).any(axis=0).sum()          # body extent along x, mid slice (voxels)
    width_out = (out.array[8] > -500).any(axis=0).sum()
    assert meta["body_scale"] == pytest.approx(0.9)
    assert width_out / width_in == pytest.approx(0.9, abs=2.0 / width_in)
    assert (out.array > -500).any(axis=(1, 2)).sum() == (ct.array > -500).any(axis=(1, 2)).sum()   # slices: same
    # a body larger than the grid holds gets a larger grid: air added around it, at least 2 voxels left
    _, labels = _phantom()
    out, lab, meta = pseudo_patient(ct, 0, "thorax", labels, AnatomyParams(scale_range=(1.5, 1.5), **fixed),
                                    source="p")
    pad = meta["grid_padding_yx"]
    assert meta["body_scale"] == 1.5 and min(pad.values()) > 0
    assert out.shape == (SHAPE[0], SHAPE[1] + pad["rows_before"] + pad["rows_after"],
                         SHAPE[2] + pad["columns_before"] + pad["columns_after"]) == lab.shape
    body = out.array > -500
    assert not body[:, :2].any() and not body[:, -2:].any() and not body[:, :, :2].any() and not body[:, :, -2:].any()
    width_big = (out.array[8] > -500).any(axis=0).sum()
    assert width_big / width_in == pytest.approx(1.5, abs=2.0 / width_in)
    # the grid grew around the same physical place: the first input voxel sits at its padded index
    moved = out.to_sitk().TransformPhysicalPointToContinuousIndex(ct.to_sitk().TransformIndexToPhysicalPoint((0, 0, 0)))
    np.testing.assert_allclose(moved, (pad["columns_before"], pad["rows_before"], 0), atol=1e-6)


def test_hu_variation_within_the_bounds_per_tissue():
    hu = np.linspace(-1024, 2000, 30241, dtype=np.float32)
    for seed in range(20):
        changes = anatomy.hu_anchors(np.random.default_rng(seed))
        out = apply_hu_variation(hu, changes)
        delta = out - hu
        assert np.all(np.diff(out) >= 0)                          # monotone: tissue order kept
        for tissue, (lo, hi) in {"lung": (-950, -700), "fat": (-150, -50), "soft_tissue": (0, 80)}.items():
            inside = (hu >= lo) & (hu <= hi)
            # the map blends towards the neighbouring anchors, so the shift is at most this tissue's bound
            # plus its neighbour's (soft tissue borders fat, fat borders soft tissue, lung borders air)
            neighbour = {"lung": 0.0, "fat": HU_SHIFTS["soft_tissue"][1], "soft_tissue": HU_SHIFTS["fat"][1]}[tissue]
            assert np.abs(delta[inside]).max() <= HU_SHIFTS[tissue][1] + neighbour + 1e-3
        anchor_fat = np.argmin(np.abs(hu - (-100.0)))
        assert delta[anchor_fat] == pytest.approx(changes["fat"], abs=0.2)
        assert abs(changes["fat"]) <= 10 and abs(changes["soft_tissue"]) <= 10 and abs(changes["lung"]) <= 40
        bone = hu > 300
        ratio = (out[bone] - 150.0) / (hu[bone] - 150.0)
        assert np.all((ratio >= 0.85 - 1e-4) & (ratio <= 1.15 + 1e-4))
        assert out[np.argmin(np.abs(hu + 1000))] == pytest.approx(-1000.0, abs=0.2)   # air stays air


def test_hu_variation_on_the_phantom_matches_the_drawn_shifts():
    ct, labels = _phantom()
    params = AnatomyParams(deformation_mm=0.0, scale_range=(1.0, 1.0), max_gas_pockets=0, bladder_range=(0, 0))
    out, _, meta = pseudo_patient(ct, 5, "thorax", labels, params, source="p")
    delta = out.array - ct.array.astype(np.float32)
    fat = labels.array == 200                                   # phantom fat is about -100 HU
    fat_core = fat & (np.abs(ct.array + 100) < 15)
    assert np.median(delta[fat_core]) == pytest.approx(meta["hu_changes"]["fat"], abs=1.5)


def test_labels_follow_the_image():
    ct, labels = _phantom()
    params = AnatomyParams(deformation_mm=10.0, control_spacing_mm=40.0, max_gas_pockets=0)
    out, out_labels, _ = pseudo_patient(ct, 2, "thorax", labels, params, source="p")
    bone_label = np.isin(out_labels.array, (29, 77))
    assert _dice(bone_label, out.array > 250) > 0.8
    # and the deformation moved them (the same comparison against the undeformed labels is worse)
    assert _dice(np.isin(labels.array, (29, 77)), out.array > 250) < _dice(bone_label, out.array > 250)


def test_bladder_filling_changes_the_bladder_volume():
    ct, labels = _phantom(bladder=True)
    vols = {}
    for s in (-0.3, 0.3):
        params = AnatomyParams(deformation_mm=0.0, scale_range=(1.0, 1.0), hu_variation=False, max_gas_pockets=0,
                               bladder_range=(s, s))
        _, lab, meta = pseudo_patient(ct, 0, "pelvis", labels, params, source="p")
        assert meta["bladder"]["found_by"] == "label 21"
        vols[s] = float((lab.array == 21).sum())
    v0 = float((labels.array == 21).sum())
    assert vols[0.3] > 1.3 * v0 and vols[-0.3] < 0.8 * v0


def test_gas_pockets_are_added_in_the_body():
    ct, _ = _phantom()
    params = AnatomyParams(deformation_mm=0.0, scale_range=(1.0, 1.0), hu_variation=False, max_gas_pockets=3,
                           gas_radius_mm=(8.0, 10.0))
    for seed in range(6):
        out, _, meta = pseudo_patient(ct, seed, "pelvis", None, params, source="p")
        new_gas = (out.array < -800) & (ct.array > -300)
        if meta["gas_pockets"]:
            assert new_gas.sum() * 125.0 / 1000.0 > 0.5 * len(meta["gas_pockets"])       # mL, > 0.5 mL each
            break
    else:
        pytest.fail("no seed of 6 placed a gas pocket")


def test_not_ct_is_refused():
    ct, _ = _phantom()
    with pytest.raises(InputError, match="do not look like CT"):
        pseudo_patient(ct.with_array(np.zeros(SHAPE, np.float32)), 0, "pelvis")


def test_written_cohort_is_split_by_source(tmp_path):
    a, la = _phantom(0)
    b, _ = _phantom(1)
    write_volume(a, tmp_path / "alice.nii.gz")
    write_volume(la, tmp_path / "alice_labels.nii.gz")
    write_volume(b, tmp_path / "bob.nii.gz")
    out = tmp_path / "cohort"
    names_a = anatomy.write_pseudo_patients(str(tmp_path / "alice.nii.gz"), str(out), 3, 0, "pelvis",
                                            labels_path=str(tmp_path / "alice_labels.nii.gz"))
    names_b = anatomy.write_pseudo_patients(str(tmp_path / "bob.nii.gz"), str(out), 2, 7, "pelvis")
    write_volume(a, out / "alice.nii.gz")                     # the real patient itself, no sidecar
    assert names_a == ["alice_pp000", "alice_pp001", "alice_pp002"] and names_b == ["bob_pp007", "bob_pp008"]
    side = json.loads((out / "alice_pp001.json").read_text())
    assert side["source"] == "alice" and side["seed"] == 1
    back = read_volume(out / "labels" / "alice_pp001.nii.gz")
    assert back.shape == a.shape and set(np.unique(back.array)) <= set(np.unique(la.array))
    groups = source_groups(out)
    assert groups == {"alice": "alice", **{n: "alice" for n in names_a}, **{n: "bob" for n in names_b}}
    train, test = split_by_source(groups, ["alice"])
    assert test == ["alice", *names_a] and train == names_b
    for held, train, test in leave_one_source_out(groups):
        assert not {groups[c] for c in train} & {held} and {groups[c] for c in test} == {held}
    with pytest.raises(InputError, match="unknown source"):
        split_by_source(groups, ["alcie"])


def test_cli_makes_pseudo_patients_and_refuses_bad_input(run_cli, tmp_path):
    ct, _ = _phantom()
    src = write_volume(ct, tmp_path / "pat.nii.gz")
    code, out, err = run_cli("pseudo-patients", "-i", src, "-o", tmp_path / "pp", "-n", "2", "--site", "prostate")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "pp").iterdir()) == ["pat_pp000.json", "pat_pp000.nii.gz",
                                                                    "pat_pp001.json", "pat_pp001.nii.gz"]
    assert json.loads((tmp_path / "pp" / "pat_pp000.json").read_text())["site"] == "pelvis"
    flat = write_volume(ct.with_array(np.zeros(SHAPE, np.int16)), tmp_path / "flat.nii.gz")
    for args in (("-i", flat, "-o", tmp_path / "x", "--site", "pelvis"),
                 ("-i", tmp_path / "missing.nii.gz", "-o", tmp_path / "x", "--site", "pelvis"),
                 ("-i", src, "-o", tmp_path / "pp", "--site", "pelvis", "-n", "2")):      # exists: no --overwrite
        code, _, err = run_cli("pseudo-patients", *args)
        assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    code, _, err = run_cli("pseudo-patients", "-i", src, "-o", tmp_path / "x", "--site", "knee")
    assert code == 2 and "unknown site" in err
    assert not (tmp_path / "x").exists()


def test_scan_ends_are_not_filled_with_air():
    """Anatomy moved in from beyond the first or last slice is the edge slice repeated, not -1000 HU."""
    ct, _ = _phantom()
    params = AnatomyParams(deformation_mm=12.0, control_spacing_mm=30.0, scale_range=(1.0, 1.0), max_gas_pockets=0)
    area_in = (ct.array > -500).sum(axis=(1, 2))
    for seed in range(3):
        out, _, _ = pseudo_patient(ct, seed, "thorax", None, params, source="p")
        area_out = (out.array > -500).sum(axis=(1, 2))
        assert np.all(area_out > 0.8 * area_in), (seed, area_out / area_in)


@pytest.mark.shared_data
def test_real_ct_labels_follow_the_vertebrae(shared_data):
    """The real ``example_ct_sm`` with its reference segmentation: the deformed vertebra labels (26-50) hold the
    deformed bone (> 100 HU near them) about as well as the real labels hold the real bone, and better than the
    undeformed labels do."""
    ct = read_volume(shared_data / "totalsegmentator" / "example_ct_sm.nii.gz")
    seg = read_volume(shared_data / "totalsegmentator" / "example_seg.nii.gz")

    def dice_in_spine(image: np.ndarray, labels: np.ndarray) -> float:
        vertebrae = (labels >= 26) & (labels <= 50)
        near = ndimage.binary_dilation(vertebrae, iterations=2)
        return _dice(vertebrae, (image > 100) & near)

    reference = dice_in_spine(ct.array, seg.array)
    out, lab, _ = pseudo_patient(ct, 1, "abdomen", seg, AnatomyParams(max_gas_pockets=0), source="example_ct")
    assert out.shape == ct.shape == lab.shape                  # this seed draws a body that fits the grid
    deformed = dice_in_spine(out.array, lab.array)
    assert reference > 0.7 and deformed > reference - 0.05
    assert deformed > dice_in_spine(out.array, seg.array) + 0.03
    assert set(np.unique(lab.array)) <= set(np.unique(seg.array))
