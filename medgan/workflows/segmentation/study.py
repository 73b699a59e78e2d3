"""Does synthetic non-contrast CT help a segmentation model trained on contrast CT? (Sandfort et al. 2019)

Training data are contrast-enhanced CTs with organ labels; the test data are
*non-contrast* CTs of other patients with the same labels.  Six arms train the same
MONAI 2D ``UNet`` (Dice + cross-entropy) on:

(a) the contrast CTs only;
(b) the contrast CTs with standard intensity augmentation (MONAI scale/shift/gamma/noise);
(c) the contrast CTs plus their medgan synthetic non-contrast versions, translated by a
    contrast -> non-contrast CycleGAN trained *unpaired* on the training patients
    (contrast CTs of one half, non-contrast CTs of the other half);
(d) equal-data control: the contrast CTs plus as many re-sampled contrast slices as (c) adds
    (simulated contrast drawn again with another seed; real contrast CTs repeated);
(e) random per-organ HU-shift control: the contrast CTs plus copies in which each labelled organ
    is shifted by a random, not learned, HU amount (``random_organ_shift``);
(f) oracle: the true non-contrast CTs of the training patients (an upper bound).

Dice per organ is measured on the non-contrast test patients, per arm and seed.  The primary
endpoint (declared in pipelines/segmentation_augmentation/README.md before any run) is kidney Dice
on the *real* non-contrast test CTs, arm (c) against arm (a); everything else is secondary and
Holm-corrected (``analyse``).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medgan.errors import InputError
from medgan.evaluation.statistics import bootstrap_ci, hierarchical_bootstrap, holm, paired_comparison, sign_test
from medgan.io import Volume
from medgan.workflows.cohort import split_study

#: organ -> TotalSegmentator ``total`` label values merged into it
ORGANS = {"spleen": (1,), "kidneys": (2, 3), "liver": (5,), "aorta": (52,)}
ARMS = {"a": "contrast CT only", "b": "+ intensity augmentation", "c": "+ medgan synthetic non-contrast",
        "d": "+ re-sampled contrast (equal data)", "e": "+ random per-organ HU shift",
        "f": "oracle: true non-contrast"}
#: the pre-declared primary endpoint: (organ, arm, reference arm), on the real non-contrast test CTs
PRIMARY = ("kidneys", "c", "a")
#: secondary comparisons (arm, reference): every arm against (a), and (c) against its two controls
SECONDARY_PAIRS = (("b", "a"), ("c", "a"), ("d", "a"), ("e", "a"), ("f", "a"), ("c", "d"), ("c", "e"))
#: HU scale of the random per-organ shift of arm (e): about each organ's portal-venous enhancement
SHIFT_HU = {"spleen": 80.0, "kidneys": 160.0, "liver": 60.0, "aorta": 130.0}


@dataclasses.dataclass
class StudySize:
    """How big the study is: ``tiny`` for the test suite, ``cpu`` for a quick look, ``full`` for the reported study."""
    phantoms: int = 8
    phantom_shape: tuple = (32, 128, 128)
    use_real: bool = True
    spacing: float = 3.0                 #: in-plane mm every volume is resampled to
    slice_size: int = 128                #: slices are padded/cropped to this square
    cyclegan_steps: int = 400
    cyclegan_overrides: tuple = ("model.generator_args.channels=16", "model.generator_args.n_blocks=3",
                                 "model.discriminator_args.channels=16", "data.patch_size=[96,96]")
    seg_iterations: int = 300
    seg_batch: int = 16
    seg_channels: tuple = (16, 32, 64, 128)
    seeds: tuple = (0, 1, 2)
    test_fraction: float = 0.35


SIZES = {
    "tiny": StudySize(phantoms=5, phantom_shape=(12, 64, 64), use_real=False, spacing=6.0, slice_size=64,
                      cyclegan_steps=4, cyclegan_overrides=(
                          "model.generator_args.channels=8", "model.generator_args.n_blocks=1",
                          "model.discriminator_args.channels=8", "data.patch_size=[48,48]",
                          "optim.batch_size=2", "data.samples_per_volume=4", "data.queue_length=8"),
                      seg_iterations=6, seg_batch=4, seg_channels=(8, 16, 32), seeds=(0, 1)),
    "cpu": StudySize(),
    # the study in docs/results.md (6 arms x 5 seeds; run 2026-11-28, the CycleGAN and U-Nets on a GPU)
    "full": StudySize(phantoms=24, cyclegan_steps=2000, seg_iterations=600, seeds=(0, 1, 2, 3, 4)),
    # a scale-up of "full" for a GPU (not run in this project)
    "large": StudySize(phantoms=40, cyclegan_steps=20000, cyclegan_overrides=("data.patch_size=[128,128]",),
                       seg_iterations=4000, seg_batch=32, seg_channels=(32, 64, 128, 256), seeds=(0, 1, 2, 3, 4)),
}


def scaled(size: StudySize, **counts: int | None) -> StudySize:
    """``size`` with the given counts replaced (``seeds=N`` means seeds 0..N-1); ``None`` keeps the size's own."""
    changes: dict[str, Any] = {k: v for k, v in counts.items() if v is not None}
    for k, v in changes.items():
        if v < (0 if k == "phantoms" else 1):
            raise InputError(f"--{k.replace('_', '-')} must be at least "
                             f"{0 if k == 'phantoms' else 1}, got {v}")
    if "seeds" in changes:
        changes["seeds"] = tuple(range(changes["seeds"]))
    return dataclasses.replace(size, **changes)


# ---------------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class Patient:
    name: str
    native: Volume | None              #: non-contrast CT (HU); None: training-only patient
    labels: Volume                     #: TotalSegmentator label values
    contrast: Volume | None = None     #: contrast-enhanced CT; simulated from the labels when absent
    segment: bool = True               #: False: a contrast CT for the CycleGAN only (partial labels)


def load_user_cohort(root: Path) -> list[Patient]:
    """``root/ct/<case>``, ``root/labels/<case>`` and optionally ``root/contrast/<case>`` (any medgan format)."""
    from medgan.io import read_volume
    from medgan.io.cases import index_cases

    def index(folder):
        return index_cases(folder) if folder.is_dir() else {}

    cts, labels, contrast = index(root / "ct"), index(root / "labels"), index(root / "contrast")
    if not cts:
        raise InputError(f"{root / 'ct'} holds no CTs (layout: ct/, labels/, optional contrast/)")
    missing = sorted(set(cts) - set(labels))
    if missing:
        raise InputError(f"no label map for {', '.join(missing)} in {root / 'labels'}")
    return [Patient(n, read_volume(cts[n]), read_volume(labels[n]),
                    read_volume(contrast[n]) if n in contrast else None) for n in sorted(cts)]


def default_cohort(size: StudySize, shared: Path | None) -> list[Patient]:
    """Real native CTs with reference labels from ../shared/data (when present) plus phantoms."""
    from medgan.io import read_volume
    from medgan.simulation.phantom import make_phantom

    patients = []
    if size.use_real and shared is not None:
        ts = shared / "totalsegmentator"
        if (ts / "example_ct_sm.nii.gz").exists() and (ts / "example_seg.nii.gz").exists():
            # native phase (aorta ~40 HU): a non-contrast patient, contrast simulated for training
            patients.append(Patient("ts_example_ct_sm", read_volume(ts / "example_ct_sm.nii.gz"),
                                    read_volume(ts / "example_seg.nii.gz")))
        if (ts / "example_ct_dicom").exists() and (ts / "example_seg_dicom.nii.gz").exists():
            # already contrast-enhanced (aorta ~170 HU, liver ~90 HU): a real contrast CT, training only
            patients.append(Patient("ts_example_ct_dicom", None, read_volume(ts / "example_seg_dicom.nii.gz"),
                                    contrast=read_volume(ts / "example_ct_dicom")))
        crop = ts / "aorta_report" / "test_result" / "models"
        if (crop / "ct_cropped.nii.gz").exists() and (crop / "aorta.nii.gz").exists():
            # early-arterial contrast CT with only an aorta mask: a real contrast-domain image for the
            # CycleGAN, not a segmentation training case (its other organs are unlabelled).  The
            # pulmonary_report crop is the same patient and scan (chest): not used, never double-counted.
            mask = read_volume(crop / "aorta.nii.gz")
            aorta = mask.with_array((np.asarray(mask.array) > 0).astype(np.int16) * 52)
            patients.append(Patient("ts_aorta_crop", None, aorta, contrast=read_volume(crop / "ct_cropped.nii.gz"),
                                    segment=False))
    for i in range(size.phantoms):
        ct, lab = make_phantom(2000 + i, shape=size.phantom_shape,
                               spacing_zyx=(4.0, 384.0 / size.phantom_shape[1], 384.0 / size.phantom_shape[2]))
        patients.append(Patient(f"phantom{i:02d}", ct, lab))
    return patients


def organ_map(labels: np.ndarray) -> np.ndarray:
    """TotalSegmentator labels -> 0 background, 1..len(ORGANS) in ORGANS order."""
    out = np.zeros(labels.shape, np.int64)
    for k, values in enumerate(ORGANS.values(), start=1):
        out[np.isin(labels, values)] = k
    return out


def prepare_patient(p: Patient, size: StudySize, seed: int) -> dict:
    """Resample to the study spacing, simulate contrast when none is given; arrays [z, y, x]."""
    from medgan.data.resample import resample_like, resample_to_spacing
    from medgan.simulation.contrast import simulate_contrast

    labels = p.labels
    ref = p.native if p.native is not None else p.contrast
    if ref is None:
        raise InputError(f"{p.name}: neither a non-contrast nor a contrast CT")
    if ref.grid_difference(labels) is not None:
        # e.g. a NIfTI segmentation of a DICOM series stored with the rows flipped: same voxels, other
        # index order.  Map it onto the CT's grid physically (nearest neighbour), refuse if it does not overlap.
        labels = resample_like(labels, ref, labels=True)
        if not labels.array.any():
            raise InputError(f"{p.name}: the label map does not overlap the CT")
    contrast = p.contrast
    if contrast is not None and contrast.grid_difference(ref) is not None:
        contrast = resample_like(contrast, ref)
    simulated = contrast is None
    if contrast is None:
        assert p.native is not None                  # without a contrast CT, ref is the non-contrast one
        contrast, _ = simulate_contrast(p.native, labels, phase="portal-venous", seed=seed)
        # arm (d): the same patient's contrast drawn again (new levels, new perturbed masks)
        resampled, _ = simulate_contrast(p.native, labels, phase="portal-venous", seed=seed + 10_000)
    else:
        resampled = contrast
    sp = [size.spacing, size.spacing]
    native = resample_to_spacing(p.native, sp) if p.native is not None else None
    contrast = resample_to_spacing(contrast, sp)
    return {"name": p.name, "native": native, "contrast": contrast,
            "resampled": resample_to_spacing(resampled, sp) if simulated else contrast,
            "labels": organ_map(resample_to_spacing(labels, sp, labels=True).array),
            "segment": p.segment, "cohort": cohort_of(p.name)}


def cohort_of(name: str) -> str:
    """``"phantom"`` for the procedural phantoms, ``"real"`` for every patient CT."""
    return "phantom" if name.startswith("phantom") else "real"


def random_organ_shift(hu: np.ndarray, organs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Arm (e): each labelled organ shifted by a random HU amount, ``-U(0, 1.5) x SHIFT_HU[organ]``, blended
    over one voxel at its border.  Not learned and not physical: it tells whether (c) helps more than
    merely moving the organs' HU about."""
    from scipy import ndimage

    out = np.asarray(hu, np.float32).copy()
    tissue = out > -500
    for k, organ in enumerate(ORGANS, start=1):
        m = organs == k
        if m.any():
            soft = ndimage.gaussian_filter(m.astype(np.float32), 0.7)
            out -= (rng.uniform(0.0, 1.5) * SHIFT_HU[organ] * soft * tissue).astype(np.float32)
    return np.asarray(out)


def split(names: list[str], test_fraction: float, seed: int = 0, has_native=None) -> tuple[list[str], list[str]]:
    """Patient-level train/test split (:func:`medgan.workflows.cohort.split_study`); every real non-contrast CT
    (not a ``phantom``, :func:`cohort_of`) is in the test set.  Only patients with a non-contrast CT
    (``has_native``, default all) can be test patients."""
    return split_study(names, test_fraction, seed, has_native, is_real=lambda n: cohort_of(n) == "real")


# ---------------------------------------------------------------------------------------------- model
def normalise(hu: np.ndarray) -> np.ndarray:
    """The ct-abdomen window (-1024..1500 HU) to [-1, 1], as the CycleGAN sees it."""
    from medgan.data.hu import HU_PRESETS

    return np.asarray(HU_PRESETS["ct-abdomen"].normalize(np.asarray(hu, np.float32)))


def denormalise(x: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalise`: [-1, 1] back to HU of the ct-abdomen window."""
    from medgan.data.hu import HU_PRESETS

    return np.asarray(HU_PRESETS["ct-abdomen"].denormalize(np.asarray(x, np.float32)))


def to_slices(image: np.ndarray, labels: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Axial slices padded (air / background) or centre-cropped to side x side.

    Returns images and labels, each [n, 1, side, side]."""
    from monai.transforms import ResizeWithPadOrCrop

    fit_img = ResizeWithPadOrCrop((side, side), constant_values=-1.0)
    fit_lab = ResizeWithPadOrCrop((side, side))
    img = np.stack([np.asarray(fit_img(s[None])) for s in normalise(image)])
    lab = np.stack([np.asarray(fit_lab(s[None])) for s in labels.astype(np.float32)])
    return img.astype(np.float32), lab.astype(np.int64)


def build_unet(size: StudySize):
    from monai.networks.nets import UNet

    ch = tuple(size.seg_channels)
    return UNet(spatial_dims=2, in_channels=1, out_channels=len(ORGANS) + 1, channels=ch,
                strides=(2,) * (len(ch) - 1), num_res_units=1)


def intensity_augment(batch: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Standard intensity augmentation with MONAI's array transforms, one draw per slice."""
    from monai.transforms import Compose, RandAdjustContrast, RandGaussianNoise, RandScaleIntensity, RandShiftIntensity

    aug = Compose([RandScaleIntensity(factors=0.15, prob=1.0), RandShiftIntensity(offsets=0.1, prob=1.0),
                   RandAdjustContrast(gamma=(0.7, 1.5), prob=0.5), RandGaussianNoise(std=0.03, prob=0.5)])
    aug.set_random_state(seed=int(rng.integers(2 ** 31)))
    out = []
    for x in batch:
        # gamma needs a non-negative image: shift [-1, 1] to [0, 2] and back
        out.append(torch.as_tensor(np.asarray(aug(x + 1.0))) - 1.0)
    return torch.stack(out).float()


def train_segmenter(images: np.ndarray, labels: np.ndarray, size: StudySize, seed: int, augment: bool,
                    device: torch.device, progress=None) -> torch.nn.Module:
    """Dice + CE training on slices; slices holding an organ are drawn 4x as often as empty ones."""
    from monai.losses import DiceCELoss

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net: torch.nn.Module = build_unet(size).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    weights = np.where(labels.reshape(len(labels), -1).max(axis=1) > 0, 4.0, 1.0)
    weights /= weights.sum()
    its = range(size.seg_iterations)
    for _ in (progress(its) if progress else its):
        idx = rng.choice(len(images), size=size.seg_batch, p=weights)
        x, y = torch.from_numpy(images[idx]), torch.from_numpy(labels[idx])
        if rng.random() < 0.5:                                  # left-right flip, every arm alike
            x, y = x.flip(-1), y.flip(-1)
        if augment:
            x = intensity_augment(x, rng)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(net(x.to(device)), y.to(device))
        loss.backward()
        opt.step()
    net.eval()
    return net


@torch.no_grad()
def dice_per_organ(net: torch.nn.Module, image: np.ndarray, labels: np.ndarray, size: StudySize,
                   device: torch.device) -> dict[str, float]:
    """3D Dice per organ over the whole test volume (NaN where the organ is absent from the reference)."""
    from monai.metrics import DiceMetric
    from monai.networks.utils import one_hot

    x, y = to_slices(image, labels, size.slice_size)
    pred = torch.cat([net(torch.from_numpy(x[i:i + 32]).to(device)).argmax(1, keepdim=True).cpu()
                      for i in range(0, len(x), 32)])
    # [slices, 1, H, W] -> one volume [1, C, slices, H, W]
    n_cls = len(ORGANS) + 1
    p = one_hot(pred.permute(1, 0, 2, 3)[None], n_cls)
    t = one_hot(torch.from_numpy(y).permute(1, 0, 2, 3)[None], n_cls)
    metric = DiceMetric(include_background=False, reduction="none", ignore_empty=True)
    d = torch.as_tensor(metric(p, t))[0].tolist()
    return {organ: (float(v) if not math.isnan(v) else float("nan")) for organ, v in zip(ORGANS, d, strict=True)}


def translation_quality(cases: dict) -> dict:
    """How well the CycleGAN removed the contrast, on patients whose true non-contrast CT is known.

    ``cases``: name -> {"contrast", "synthetic", "native"} Volumes on one grid and "labels" (organ
    map).  Per case: medgan's body-mask HU MAE and bias of the contrast CT (the baseline) and of
    the synthetic non-contrast CT against the true one, and per organ the share of the contrast
    enhancement removed, ``1 - mean(synthetic - native) / mean(contrast - native)`` (1: all of it,
    0: none, < 0: made brighter; NaN where the enhancement is under 10 HU).  The translator must
    also leave non-enhanced tissue alone: ``mae_unenhanced`` is the HU MAE of the synthetic CT against
    the true one over the body voxels the contrast changed by at most 10 HU (``mae_unenhanced_contrast``
    the same for the contrast CT itself, the do-nothing baseline).  ``mean`` averages the cases.
    """
    from medgan.data.body_mask import body_mask
    from medgan.evaluation import evaluate_case

    out: dict = {"cases": {}}
    for name, c in cases.items():
        res = evaluate_case(c["synthetic"], c["native"], input=c["contrast"], case=name)
        row = {"mae_contrast": res.rows["input"]["mae"], "mae_synthetic": res.rows["prediction"]["mae"],
               "me_contrast": res.rows["input"]["me"], "me_synthetic": res.rows["prediction"]["me"]}
        con, syn, nat = (np.asarray(c[k].array, np.float64) for k in ("contrast", "synthetic", "native"))
        calm = body_mask(nat) & (np.abs(con - nat) <= 10.0)
        row["mae_unenhanced"] = float(np.abs(syn - nat)[calm].mean()) if calm.any() else float("nan")
        row["mae_unenhanced_contrast"] = float(np.abs(con - nat)[calm].mean()) if calm.any() else float("nan")
        for k, organ in enumerate(ORGANS, start=1):
            m = c["labels"] == k
            enhancement = float((con[m] - nat[m]).mean()) if m.any() else float("nan")
            ok = math.isfinite(enhancement) and enhancement >= 10.0
            row[f"removed_{organ}"] = 1.0 - float((syn[m] - nat[m]).mean()) / enhancement if ok else float("nan")
        out["cases"][name] = row
    keys: list[str] = list(next(iter(out["cases"].values()), {}))
    out["mean"] = {k: float(np.nanmean([r[k] for r in out["cases"].values()]))
                   if any(math.isfinite(r[k]) for r in out["cases"].values()) else float("nan") for k in keys}
    return out


def summarise(rows: list[dict]) -> dict:
    """arm -> organ -> {mean, std, n} over test patients x seeds (NaN rows skipped)."""
    out: dict = {}
    for arm in ARMS:
        out[arm] = {}
        for organ in list(ORGANS) + ["mean"]:
            vals = [r["dice"] for r in rows if r["arm"] == arm and r["organ"] == organ and math.isfinite(r["dice"])]
            out[arm][organ] = {"mean": float(np.mean(vals)) if vals else float("nan"),
                               "std": float(np.std(vals, ddof=1)) if len(vals) > 1 else float("nan"), "n": len(vals)}
    return out


def compare_arms(rows: list[dict], reference: str = "a", confidence: float = 0.95) -> dict:
    """arm -> organ -> paired Dice difference to ``reference`` with a bootstrap CI over test patients.

    The patient is the independent unit: each patient's difference (arm - reference) is first
    averaged over the seeds both arms share, then the CI of the mean over patients is
    bootstrapped.  ``better`` counts the patients where the arm's Dice is higher.
    """
    def table(arm):
        return {(r["organ"], r["patient"], r["seed"]): r["dice"] for r in rows
                if r["arm"] == arm and r["dice"] is not None and math.isfinite(r["dice"])}

    ref = table(reference)
    out: dict = {}
    for arm in sorted({r["arm"] for r in rows} - {reference}):
        cur = table(arm)
        out[arm] = {}
        for organ in list(ORGANS) + ["mean"]:
            per_patient: dict = {}
            for key in sorted(set(ref) & set(cur)):
                if key[0] == organ:
                    per_patient.setdefault(key[1], []).append(cur[key] - ref[key])
            diffs = [float(np.mean(v)) for v in per_patient.values()]
            lo, hi = bootstrap_ci(diffs, confidence=confidence)
            out[arm][organ] = {"diff": float(np.mean(diffs)) if diffs else float("nan"), "ci": [lo, hi],
                               "better": int(sum(d > 0 for d in diffs)), "n": len(diffs)}
    return out


# ----------------------------------------------------------------------------------------- statistics
# Holm's correction, the sign test and the hierarchical (patient, seed) bootstrap are medgan.evaluation.statistics'.
def paired_tests(per_patient_seed: dict) -> dict:
    """Sign test and Wilcoxon signed-rank p of the differences (two-sided), and the unit they treat as independent.

    The unit is the patient (its seeds averaged) when there are at least two patients; with one patient
    it is the seed, and the p then speaks about training noise on that one patient only.
    """
    groups = {p: [v for v in vals if math.isfinite(v)] for p, vals in per_patient_seed.items()}
    groups = {p: v for p, v in groups.items() if v}
    if len(groups) >= 2:
        unit, diffs = "patient", [float(np.mean(v)) for v in groups.values()]
    else:
        unit, diffs = "seed (one patient)", [float(x) for v in groups.values() for x in v]
    sign_p = sign_test(diffs)
    # medgan.evaluation.statistics: Wilcoxon signed-rank over the units (each unit its own "patient")
    wil = paired_comparison(diffs, [0.0] * len(diffs)) if diffs else {"wilcoxon_p": float("nan")}
    return {"unit": unit, "n_units": len(diffs), "improved": int(sum(d > 0 for d in diffs)),
            "sign_p": sign_p, "wilcoxon_p": float(wil["wilcoxon_p"])}


def _differences(rows: list[dict], arm: str, reference: str, organ: str) -> dict:
    """patient -> [arm - reference Dice, per seed both have a finite value]."""
    table = {(r["arm"], r["patient"], r["seed"]): r["dice"] for r in rows
             if r["organ"] == organ and r["dice"] is not None and math.isfinite(r["dice"])}
    out: dict = {}
    for (a, patient, seed), value in sorted(table.items()):
        if a == arm and (reference, patient, seed) in table:
            out.setdefault(patient, []).append(value - table[(reference, patient, seed)])
    return out


def _comparison(rows, arm, reference, organ, n_resamples, seed) -> dict:
    diffs = _differences(rows, arm, reference, organ)
    est, lo, hi = hierarchical_bootstrap(diffs, n_resamples=n_resamples, seed=seed)
    return {"arm": arm, "reference": reference, "organ": organ, "diff": est, "ci": [lo, hi],
            "n_patients": len(diffs), "n_pairs": sum(len(v) for v in diffs.values()), **paired_tests(diffs)}


def seed_spread(rows: list[dict]) -> dict:
    """arm -> organ -> SD over seeds of the seed's mean Dice over the test patients (and the per-seed means)."""
    out: dict = {}
    for arm in sorted({r["arm"] for r in rows}):
        out[arm] = {}
        for organ in list(ORGANS) + ["mean"]:
            by_seed: dict = {}
            for r in rows:
                if r["arm"] == arm and r["organ"] == organ and math.isfinite(r["dice"]):
                    by_seed.setdefault(r["seed"], []).append(r["dice"])
            means = [float(np.mean(v)) for _, v in sorted(by_seed.items())]
            out[arm][organ] = {"seed_means": means,
                               "sd": float(np.std(means, ddof=1)) if len(means) > 1 else float("nan")}
    return out


def analyse(rows: list[dict], n_resamples: int = 2000, seed: int = 0) -> dict:
    """The pre-declared analysis, separately for the real patients and the phantoms.

    Per cohort: ``primary`` (``PRIMARY``: kidney Dice, (c) - (a)) with its hierarchical-bootstrap CI and
    sign/Wilcoxon p; ``secondary``: every ``SECONDARY_PAIRS`` comparison on every organ and the mean,
    without the primary, with Holm-adjusted p (``sign_p_holm``, ``wilcoxon_p_holm``) over that family;
    ``seed_spread``.  Only the real cohort's primary is the study's answer; the phantom one is a check.
    """
    out: dict = {}
    arms = {r["arm"] for r in rows}
    for cohort in ("real", "phantom"):
        sub = [r for r in rows if r.get("cohort", cohort_of(r["patient"])) == cohort]
        if not sub:
            continue
        organ, arm, ref = PRIMARY
        res: dict = {"patients": sorted({r["patient"] for r in sub}), "seeds": sorted({r["seed"] for r in sub})}
        res["primary"] = _comparison(sub, arm, ref, organ, n_resamples, seed) if {arm, ref} <= arms else None
        family = [_comparison(sub, a, b, o, n_resamples, seed) for a, b in SECONDARY_PAIRS if {a, b} <= arms
                  for o in list(ORGANS) + ["mean"] if (o, a, b) != PRIMARY]
        for key in ("sign_p", "wilcoxon_p"):
            for c, adj in zip(family, holm([c[key] for c in family]), strict=True):
                c[key + "_holm"] = adj
        res["secondary"] = family
        res["seed_spread"] = seed_spread(sub)
        out[cohort] = res
    return out


def read_rows(path: Path) -> list[dict]:
    """``results.csv`` back into rows (seed int, dice float, NaN kept; ``cohort`` from the name if absent)."""
    import csv

    with Path(path).open(newline="") as fh:
        return [{"arm": r["arm"], "seed": int(r["seed"]), "patient": r["patient"], "organ": r["organ"],
                 "dice": float(r["dice"]) if r["dice"] not in ("", "nan", "None") else float("nan"),
                 "cohort": r.get("cohort") or cohort_of(r["patient"])}
                for r in csv.DictReader(fh)]


def dice_figure(path: Path, summary: dict, comparison: dict | None = None) -> Path:
    """Dice per organ and arm (mean ± std); with ``comparison``, a second panel of the paired
    differences to arm (a) with their 95 % bootstrap CIs, which is what decides between arms."""
    from medgan.utils.figures import _plt, _save

    plt = _plt()
    organs = list(ORGANS) + ["mean"]
    x = np.arange(len(organs))
    panels = 2 if comparison else 1
    fig, axes = plt.subplots(1, panels, figsize=(8 * panels, 3.8), squeeze=False)
    ax = axes[0, 0]
    width = 0.8 / len(ARMS)
    for i, (arm, label) in enumerate(ARMS.items()):
        means = [summary[arm][o]["mean"] for o in organs]
        stds = [0.0 if not math.isfinite(summary[arm][o]["std"]) else summary[arm][o]["std"] for o in organs]
        ax.bar(x + i * width, means, width, yerr=stds, capsize=3, label=f"({arm}) {label}", color=f"C{i}")
    ax.set_xticks(x + width, organs)
    ax.set_ylabel("Dice on non-contrast CT")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8, loc="lower right")
    ax.set_title("Dice (mean ± std over test patients x seeds)")
    if comparison:
        ax = axes[0, 1]
        others = [a for a in ARMS if a in comparison]
        width = 0.8 / max(1, len(others))
        for i, arm in enumerate(others):
            c = [comparison[arm][o] for o in organs]
            diff = np.array([v["diff"] for v in c])
            lo, hi = np.array([v["ci"] for v in c], dtype=float).T
            err = np.nan_to_num(np.stack([diff - lo, hi - diff]), nan=0.0)
            colour = f"C{list(ARMS).index(arm)}"
            ax.bar(x + i * width, diff, width, yerr=err, capsize=3, color=colour,
                   label=f"({arm}) - (a)")
        ax.axhline(0.0, color="k", lw=0.8)
        ax.set_xticks(x + width * (len(others) - 1) / 2, organs)
        ax.set_ylabel("Dice difference to (a)")
        ax.legend(fontsize=8)
        ax.set_title("Paired difference to (a), 95 % bootstrap CI over patients")
    fig.suptitle("Segmentation trained on contrast CT, tested on non-contrast CT", fontsize=11)
    _save(fig, Path(path))
    plt.close(fig)
    return Path(path)


def write_json(path: Path, doc: dict) -> None:
    """``doc`` as JSON, atomically, with NaN/inf written as null."""
    from medgan.io.writers import atomic_write_text

    def clean(o):
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, list):
            return [clean(v) for v in o]
        return o

    atomic_write_text(path, json.dumps(clean(doc), indent=2))
