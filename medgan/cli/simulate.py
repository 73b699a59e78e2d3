"""``medgan simulate-cbct``, ``medgan simulate-contrast`` and ``medgan phantom``."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from medgan.cli.common import add_input, add_output, add_overwrite
from medgan.errors import InputError
from medgan.io import read_volume
from medgan.io.formats import OUTPUT_TYPES
from medgan.io.writers import OutputPlan


def add_parser(sub) -> None:
    from medgan.config.sites import site_arg
    from medgan.simulation.cbct import CBCT_PRESETS
    from medgan.simulation.contrast import CONTRAST_PRESETS

    p = sub.add_parser("simulate-cbct", help="simulate a cone-beam CT from a CT (RTK forward projection + FDK)")
    add_input(p, "planning CT in HU")
    add_output(p, "simulated CBCT (on the scanner's reconstruction grid; --on-ct-grid: on the CT's grid)")
    p.add_argument("--preset", choices=list(CBCT_PRESETS), default="varian-obi-pelvis", metavar="PRESET",
                   help="scanner protocol: " + ", ".join(CBCT_PRESETS) + " (head/pelvis/thorax are the Varian "
                        "OBI ones; ideal has no physics degradations; default: varian-obi-pelvis)")
    p.add_argument("--seed", type=int, default=0, help="noise seed (same seed, same CBCT)")
    p.add_argument("--on-ct-grid", action="store_true",
                   help="resample the CBCT onto the CT's grid (voxel-aligned pairs for training and evaluation); "
                        "default: the protocol's reconstruction grid, e.g. 512 x 512 x 0.49 mm, 2.5 mm slices (head)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a protocol parameter, e.g. --set n_projections=330 --set grid=true "
                        "--set breathing_amplitude_mm=10 (repeatable; fields of medgan.simulation.cbct.CBCTParams)")
    p.add_argument("--materials", metavar="MAP", default=None,
                   help="material map on the CT's grid (uint8 labels of medgan.simulation.materials.MATERIAL_LABELS, "
                        "as medgan phantom writes); default: <input stem>_materials.nii.gz beside the input when it "
                        "exists, else every voxel's material comes from the HU table (Schneider et al. 2000)")
    p.add_argument("--inter-fraction", type=int, default=None, metavar="SEED",
                   help="a different day: change the anatomy before scanning (setup error, deformation; per site "
                        "bladder, rectum and gas, or baseline shift and breathing per projection), seeded; needs "
                        "--ct-of-day")
    p.add_argument("--ct-of-day", metavar="PATH",
                   help="with --inter-fraction: write the CT of that day here (the truth for evaluation; "
                        "mid-position when breathing), with NAME_changed.nii.gz (changed-anatomy mask) and NAME.json")
    p.add_argument("--site", type=site_arg(), default=None, metavar="SITE",
                   help="site of the day's changes (default: the preset's; head, head-neck, thorax, abdomen, pelvis)")
    p.set_defaults(func=run_cbct)

    p = sub.add_parser("simulate-contrast", help="add contrast enhancement to a CT from an organ segmentation")
    add_input(p, "non-contrast CT in HU")
    p.add_argument("-l", "--labels", required=True, metavar="PATH",
                   help="TotalSegmentator-style label map on the CT grid")
    add_output(p, "enhanced CT")
    p.add_argument("--phase", choices=list(CONTRAST_PRESETS), default="portal-venous",
                   help="contrast phase whose enhancement is added (default: portal-venous)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-case variation (same seed, same result)")
    p.add_argument("--variation", type=float, default=0.15, help="random +- fraction of each enhancement per case")
    p.set_defaults(func=run_contrast)

    p = sub.add_parser("phantom",
                       help="generate procedural abdomen/pelvis CT phantoms with labels, or a digital Catphan 504")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output folder (files are named for you: phantom_000_ct.nii.gz, ... or catphan504.nii.gz)")
    add_overwrite(p)
    p.add_argument("--kind", choices=("abdomen", "catphan504"), default="abdomen",
                   help="abdomen: random abdomen/pelvis CTs with labels (default); catphan504: one digital "
                        "Catphan 504 in HU (pylinac's CatPhan504 analysis reads it), written as catphan504.nii.gz")
    p.add_argument("-ot", "--output-type", choices=list(OUTPUT_TYPES), default=None,
                   help="catphan504 only: nifti (default), mha, nrrd or dicom (a folder catphan504/)")
    p.add_argument("-n", "--number", type=int, default=None,
                   help="number of abdomen phantoms (default 4; catphan504: 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first phantom (catphan504: of the noise)")
    p.add_argument("--shape", type=int, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="grid size (default abdomen 48 128 128; catphan504 64 512 512: slices from z = -80 mm "
                        "up, CTP404 at z = 0; pylinac needs them to reach +37.5 mm)")
    p.add_argument("--spacing", type=float, nargs=3, default=None, metavar=("Z", "Y", "X"),
                   help="voxel size in mm (default abdomen 3 3 3; catphan504 2.5 0.5 0.5)")
    p.add_argument("--noise", type=float, default=0.0, metavar="HU",
                   help="catphan504 only: white Gaussian noise SD in HU (default 0: the ideal phantom)")
    p.set_defaults(func=run_phantom)


def _params_with_overrides(base, overrides):
    """``--set KEY=VALUE`` on a parameter dataclass; values are checked by its ``__post_init__``."""
    fields = {f.name for f in dataclasses.fields(base) if isinstance(getattr(base, f.name), (bool, int, float, str))}
    changes: dict[str, object] = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise InputError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
        kind = type(getattr(base, key))
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise InputError(f"--set {item}: '{value}' is not true or false")
            changes[key] = value.lower() in ("true", "1", "yes")
            continue
        try:
            changes[key] = kind(value)
        except ValueError:
            raise InputError(f"--set {item}: '{value}' is not a valid {kind.__name__}") from None
    if changes and "water_calibration" in {f.name for f in dataclasses.fields(base)}:
        # a changed protocol needs its own HU calibration (measured on the fly, then cached)
        calibration_free = {"mas", "ring_gain_sd", "breathing_amplitude_mm", "breathing_period_s", "lag",
                            "electronic_noise", "working_max_size", "n_projections", "name", "mode", "recon_matrix",
                            "recon_fov_mm", "slice_thickness_mm", "detector_pixel_mm", "scintillator_blur_mm",
                            "focal_spot_mm", "hann_cutoff", "shepp_logan_cutoff", "detector_oversampling"}
        if set(changes) - calibration_free:
            changes["water_calibration"] = None
    return dataclasses.replace(base, **changes)


def run_cbct(args) -> int:
    from medgan.simulation import interfraction
    from medgan.simulation.cbct import CBCT_PRESETS, require_rtk, simulate_cbct
    from medgan.utils.progress import status

    require_rtk()                               # a missing extra: one line before anything is read or printed
    params = _params_with_overrides(CBCT_PRESETS[args.preset], args.overrides)
    materials_path = _materials_map(args)
    day_outputs = interfraction.day_outputs(args.ct_of_day, args.inter_fraction)
    plan = OutputPlan([(args.output, args.output_type)] + day_outputs,
                      inputs=[args.input] + ([materials_path] if materials_path else []), overwrite=args.overwrite)
    ct = read_volume(args.input, series_uid=args.series_uid)
    materials = read_volume(materials_path) if materials_path else None
    if materials is not None:
        from medgan.simulation.materials import check_material_map

        check_material_map(ct, materials)
    day = None
    if args.inter_fraction is not None:          # a different day: the CBCT scans the CT of that day
        day = interfraction.day_of_treatment(ct, interfraction.site_of(args.preset, args.site), args.inter_fraction)
        ct, params = day.ct, dataclasses.replace(params, **day.cbct_overrides)
        materials = None if materials is None else day.warp_labels(materials)
    stats: dict = {}
    with status(f"simulating CBCT ({params.describe()})") as say:
        cbct = simulate_cbct(ct, params, seed=args.seed, progress=say, stats=stats, materials=materials,
                             output_grid="ct" if args.on_ct_grid else "clinical")
    with plan:
        plan.stage_volume(0, cbct, dtype="int16", series_description=f"medgan simulated CBCT ({params.name})")
        if day is not None:
            interfraction.stage_day(plan, 1, day)
        out = plan.commit()[0]
    spr = stats.get("spr_central_ray_mean")
    print(f"wrote {out}; field of view {stats['fov_diameter_mm']:.0f} mm"
          + (f", scatter-to-primary ratio on the central ray {spr:.2f} (mean over views)" if spr is not None else ""))
    return 0


def _materials_map(args) -> str | None:
    """``--materials``, else the map beside the input (said in one line), else None (the HU table)."""
    from medgan.simulation.materials import map_path_for

    if args.materials is not None:
        if not Path(args.materials).is_file():
            raise InputError(f"--materials {args.materials}: no such file")
        return str(args.materials)
    beside = map_path_for(args.input)
    if beside.is_file():
        print(f"using the material map {beside} (found beside the input; --materials names another)")
        return str(beside)
    return None


def run_contrast(args) -> int:
    from medgan.simulation.contrast import simulate_contrast

    plan = OutputPlan([(args.output, args.output_type)], inputs=[args.input, args.labels], overwrite=args.overwrite)
    ct = read_volume(args.input, series_uid=args.series_uid)
    labels = read_volume(args.labels)
    enhanced, applied = simulate_contrast(ct, labels, args.phase, seed=args.seed, variation=args.variation)
    if not applied:
        raise InputError(f"{args.labels} contains none of the enhancing structures (TotalSegmentator labels)")
    with plan:
        plan.stage_volume(0, enhanced, dtype="int16", series_description=f"medgan simulated contrast ({args.phase})")
        out = plan.commit()[0]
    print(f"wrote {out}; HU added: {json.dumps(applied)}")
    return 0


def _phantom_folder(output: str) -> Path:
    """``phantom -o`` names a folder; a volume file name there (``-o cat.nii.gz``) is refused, not made a folder."""
    from medgan.io.formats import format_of

    out = Path(output)
    if format_of(out) is not None and not out.is_dir():
        raise InputError(f"phantom -o is the output folder (phantom files are named for you); {output} looks like a "
                         f"file name: give a folder such as {out.parent / 'phantoms'}")
    if out.exists() and not out.is_dir():
        raise InputError(f"phantom -o is the output folder, and {output} is an existing file")
    return out


def run_phantom(args) -> int:
    if args.kind == "catphan504":
        return _run_catphan(args)
    from medgan.simulation.phantom import make_phantom, phantom_materials

    if args.output_type is not None or args.noise:
        raise InputError("--output-type and --noise apply to --kind catphan504 only")
    number = 4 if args.number is None else args.number
    if number < 1:
        raise InputError("--number must be at least 1")
    shape = (48, 128, 128) if args.shape is None else args.shape
    spacing = (3.0, 3.0, 3.0) if args.spacing is None else args.spacing
    if min(shape) < 8 or min(spacing) <= 0:
        raise InputError("--shape must be at least 8 voxels per axis and --spacing positive")
    out = _phantom_folder(args.output)
    names = [f"phantom_{args.seed + i:03d}_{kind}.nii.gz" for i in range(number)
             for kind in ("ct", "labels", "ct_materials")]
    plan = OutputPlan([(out / n, None) for n in names], overwrite=args.overwrite)
    with plan:
        for i in range(number):
            ct, labels = make_phantom(args.seed + i, shape=shape, spacing_zyx=spacing)
            plan.stage_volume(3 * i, ct)
            plan.stage_volume(3 * i + 1, labels)
            plan.stage_volume(3 * i + 2, phantom_materials(labels), dtype="uint8")
        plan.commit()
    print(f"wrote {number} phantoms (CT, labels and material map) to {out}")
    return 0


def _run_catphan(args) -> int:
    from medgan.simulation.catphan import make_catphan504, make_catphan504_materials
    from medgan.simulation.materials import map_path_for

    if args.number not in (None, 1):
        raise InputError("--kind catphan504 writes one phantom; leave out -n/--number")
    nz, ny, nx = (64, 512, 512) if args.shape is None else args.shape
    spacing = (2.5, 0.5, 0.5) if args.spacing is None else args.spacing
    if min(nz, ny, nx) < 1 or min(spacing) <= 0:
        raise InputError("--shape and --spacing must be positive")
    if args.noise < 0:
        raise InputError("--noise must be at least 0")
    folder = _phantom_folder(args.output)
    plan = OutputPlan([(folder / "catphan504", args.output_type or "nifti"),
                       (map_path_for(folder / "catphan504"), None)], overwrite=args.overwrite)
    z_first = -spacing[0] * round(80.0 / spacing[0])  # from -80 mm like the real OBI scan, a slice on z = 0
    grid = (tuple(spacing), (ny, nx), (z_first, z_first + (nz - 1) * spacing[0]))
    ct = make_catphan504(*grid, noise_hu=args.noise, seed=args.seed)
    with plan:
        plan.stage_volume(0, ct, dtype="int16", series_description="medgan digital Catphan 504")
        plan.stage_volume(1, make_catphan504_materials(*grid), dtype="uint8")
        written, materials = plan.commit()
    print(f"wrote {written} ({nx}x{ny}x{nz} @ {spacing[2]:g}x{spacing[1]:g}x{spacing[0]:g} mm; CTP404 at z = 0) "
          f"and its material map {materials.name}")
    return 0
