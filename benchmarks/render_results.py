"""The measurement tables of README.md and docs/, rendered from the JSON records in benchmarks/results/.

    python benchmarks/render_results.py           # rewrite every generated table in place
    python benchmarks/render_results.py --check   # exit 1, naming each table that differs from its JSON
    python benchmarks/render_results.py --record make_demo --report demo_output/report/metrics.json \\
        --measured 2026-12-03 --hardware "x86_64, 2 CPU cores, no GPU" --command "make demo" --overwrite
                                                  # a new measurement: its record first, then every table

A generated table sits between two marker lines::

    <!-- generated table NAME (from benchmarks/results/RECORD.json) by benchmarks/render_results.py: edit the JSON, ...
    | ... the table ... |
    <!-- end of generated table -->

Each record holds the numbers of one measurement with their provenance (``measured``: the date, ``hardware``,
``command``, ``source``: where the numbers were taken from) and a ``report`` shaped like ``medgan evaluate``'s
metrics.json (``cases[].metrics[image][metric]``).  Records copied from a command's JSON keep its full precision;
records of earlier measurements whose JSON was not kept hold the values as that command printed them (rounded),
and say so in ``source``.  ``tests/test_docs.py`` checks that every generated table equals its rendering, so a
number lives in one JSON record however many pages show it.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "benchmarks" / "results"
#: the pages that hold generated tables
PAGES = ("README.md", "docs/results.md", "docs/models.md")
BEGIN = ("<!-- generated table {name} (from {sources}) by benchmarks/render_results.py: "
         "edit the JSON, not the table -->")
END = "<!-- end of generated table -->"
#: a generated table; its markers and lines may be indented alike (a table inside a list item)
BLOCK = re.compile(r"^(?P<indent>[ ]*)<!-- generated table (?P<name>[\w-]+) \(from [^)\n]*\) by "
                   r"benchmarks/render_results\.py: edit the JSON, not the table -->\n(?P<body>.*?)"
                   r"^(?P=indent)<!-- end of generated table -->$", re.MULTILINE | re.DOTALL)

IMAGES = ("input", "linear", "histogram", "prediction")
#: a case-image table's columns: (header, metric key, digits, signed, better: "low" / "high" / None)
COLUMNS = (("HU MAE", "mae", 1, False, "low"), ("mean error", "me", 1, True, None),
           ("PSNR (dB)", "psnr", 2, False, "high"), ("SSIM", "ssim", 3, False, "high"))


def number(value: float, digits: int, signed: bool = False) -> str:
    """``value`` to ``digits`` decimals, with a typographic minus, and a plus sign when ``signed``."""
    text = f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"
    return text.replace("-", "−")


def _best(values: dict[str, float], better: str | None, digits: int = 9) -> str | None:
    """The image with the best value as shown (``digits``), or None when none is better or two tie."""
    if better is None:
        return None
    shown = {image: round(v, digits) for image, v in values.items()}
    best = (min if better == "low" else max)(shown.values())
    winners = [image for image, v in shown.items() if v == best]
    return winners[0] if len(winners) == 1 else None


def _compact_cells(metrics: dict) -> list[str]:
    """One cell per column listing the four images' values (``CBCT / linear / histogram / sCT``), the best bold."""
    cells = []
    for _, metric, digits, signed, better in COLUMNS:
        best = _best({i: metrics[i][metric] for i in IMAGES}, better, digits)
        cells.append(" / ".join(f"**{v}**" if i == best else v for i in IMAGES
                                for v in [number(metrics[i][metric], digits, signed)]))
    return cells


def _case(record: dict, key: str) -> dict:
    cases: list[dict] = [c for c in record["report"]["cases"]
                         if f"{c.get('run')}/{c['case']}" == key or c["case"] == key]
    (case,) = cases
    return case


def case_image_table(record: dict, case_labels: dict[str, str], image_labels: dict[str, str],
                     overrides: dict[tuple[str, str], str] | None = None,
                     compact: tuple[str, ...] = ()) -> str:
    """One row per (case, image): the CBCT, the two calibration baselines and the sCT.

    The lowest MAE of each case is bold, and so is the sCT's image label when the sCT has it.  A case named in
    ``compact`` is one row whose cells list the four images' values (``CBCT / linear / histogram / sCT``), with the
    best MAE, PSNR and SSIM bold.  ``case_labels`` is keyed by the case's ``key`` (its ``run/case`` when the record
    names the run, else its case name).
    """
    overrides = overrides or {}
    lines = ["| held-out case | image | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in COLUMNS) + " |"]
    for case in record["report"]["cases"]:
        key = f"{case['run']}/{case['case']}" if "run" in case else case["case"]
        metrics = case["metrics"]
        label = case_labels[key]
        if key in compact:
            cells = _compact_cells(metrics)
            lines.append(f"| {label} | " + " / ".join(image_labels[f"compact:{i}"] for i in IMAGES) + " | "
                         + " | ".join(cells) + " |")
            continue
        best_mae = _best({i: metrics[i]["mae"] for i in IMAGES}, "low", 1)
        for image in IMAGES:
            name = overrides.get((key, image), image_labels[image])
            if image == "prediction" and best_mae == "prediction":
                name = f"**{name}**"
            cells = [number(metrics[image][metric], digits, signed) for _, metric, digits, signed, _ in COLUMNS]
            if image == best_mae:
                cells[0] = f"**{cells[0]}**"
            lines.append(f"| {label} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def patient_table(rows: list[tuple[str, list[tuple[str, str]], str]]) -> str:
    """One row per patient: its label, the four images' values in each column (several cases joined by "and"),
    and a verdict.  ``rows`` holds (label, [(record name, case key), ...], verdict)."""
    lines = ["| held-out real patient | " + " | ".join(c[0] for c in COLUMNS) + " | verdict |",
             "| --- | " + " | ".join("---" for _ in COLUMNS) + " | --- |"]
    for label, cases, verdict in rows:
        per_case = [_compact_cells(_case(load(name), key)["metrics"]) for name, key in cases]
        cells = [" and ".join(column) for column in zip(*per_case, strict=True)]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {verdict} |")
    return "\n".join(lines)


def protocols_table(record: dict, case_labels: dict[str, str], image_labels: dict[str, str]) -> str:
    """SynthRAD2023 and SynthRAD2025 side by side, one row per (case, image), then the mean over the cases; MAE and
    ME are the 2023 protocol's (equal under both).  The lowest MAE of each case is bold, with the sCT's label."""
    columns = (("MAE (HU)", "synthrad2023", "mae", 1, False), ("ME (HU)", "synthrad2023", "me", 1, True),
               ("PSNR 2023 (dB)", "synthrad2023", "psnr", 2, False), ("SSIM 2023", "synthrad2023", "ssim", 4, False),
               ("PSNR 2025 (dB)", "synthrad2025", "psnr", 2, False),
               ("MS-SSIM 2025", "synthrad2025", "ms_ssim", 4, False))
    lines = ["| case | image | " + " | ".join(c[0] for c in columns) + " |",
             "| --- | --- | " + " | ".join("---" for _ in columns) + " |"]
    report = record["report"]
    protocols = ("synthrad2023", "synthrad2025")
    groups = [(c["case"], {p: _case({"report": report[p]}, c["case"])["metrics"] for p in protocols})
              for c in report["synthrad2023"]["cases"]]
    groups.append(("mean", {p: report[p]["mean_of_cases"] for p in protocols}))
    for key, metrics in groups:
        best_mae = _best({i: metrics["synthrad2023"][i]["mae"] for i in IMAGES}, "low", 1)
        for image in IMAGES:
            cells = [number(metrics[p][image][m], digits, signed) for _, p, m, digits, signed in columns]
            name = image_labels[image]
            if image == best_mae:
                cells[0] = f"**{cells[0]}**"
                name = f"**{name}**" if image == "prediction" else name
            lines.append(f"| {case_labels[key]} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the dose table's columns: (header, key, digits, signed, better: "high", "low" or "zero" (closest to 0))
DOSE_COLUMNS = (("γ 3%/3mm", "gamma_3pct_3mm", 1, False, "high"), ("γ 2%/2mm", "gamma_2pct_2mm", 1, False, "high"),
                ("γ 1%/1mm", "gamma_1pct_1mm", 1, False, "high"),
                ("target D98 − CT (Gy)", "target_D98_diff_gy", 3, True, "zero"),
                ("target V95 − CT (%)", "target_V95_diff_pct", 2, True, "zero"),
                ("SynthRAD dose MAE (% Rx)", "synthrad_mae_dose_pct_rx", 2, False, "low"),
                ("SynthRAD DVH", "synthrad_dvh", 3, False, "low"),
                ("range shift, mean (mm)", "range_shift_mean_mm", 2, True, "zero"),
                ("\\|range shift\\| p95 (mm)", "range_shift_abs_p95_mm", 2, False, "low"))


def dose_table(record: dict, image_labels: dict[str, str], highlight: str = "sCT") -> str:
    """One row per (modality, image); the ``highlight`` image's cells are bold where no image of its modality does
    better (a tie counts as best), and its label is bold.  A metric a row does not have is a dash."""
    lines = ["| modality | image | " + " | ".join(c[0] for c in DOSE_COLUMNS) + " |",
             "| --- | --- | " + " | ".join("---" for _ in DOSE_COLUMNS) + " |"]
    rows = record["report"]["rows"]
    for row in rows:
        others = [r for r in rows if r["modality"] == row["modality"]]
        cells = []
        for _, key, digits, signed, better in DOSE_COLUMNS:
            if key not in row:
                cells.append("–")
                continue
            text = number(row[key], digits, signed)
            score = {"high": lambda v: -v, "low": lambda v: v, "zero": abs}[better]
            shown = [score(round(r[key], digits)) for r in others]
            if row["image"] == highlight and score(round(row[key], digits)) <= min(shown):
                text = f"**{text}**"
            cells.append(text)
        name = image_labels[row["image"]]
        name = f"**{name}**" if row["image"] == highlight else name
        lines.append(f"| {row['modality']} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: the segmentation study's arms
ARMS = {"a": "contrast CT only", "b": "+ intensity augmentation", "c": "+ medgan synthetic non-contrast",
        "d": "+ re-sampled contrast (equal data)", "e": "+ random per-organ HU shift", "f": "oracle: true non-contrast"}
ORGANS = ("spleen", "kidneys", "liver", "aorta", "mean")


def dice_table(record: dict) -> str:
    """The real patient's Dice per arm and organ, mean ± SD over the seeds (the SD left out when it is 0)."""
    lines = ["| arm | " + " | ".join(ORGANS) + " |", "| --- | " + " | ".join("---" for _ in ORGANS) + " |"]
    for arm, organs in record["report"]["real_patient"].items():
        cells = [number(organs[o]["mean"], 3) + (f" ± {number(organs[o]['sd'], 3)}" if organs[o]["sd"] else "")
                 for o in ORGANS]
        lines.append(f"| ({arm}) {ARMS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def interval(diff: dict) -> str:
    """``+0.074 [+0.044, +0.103]``: a paired difference and its 95 % CI."""
    low, high = diff["ci95"]
    return f"{number(diff['mean'], 3, True)} [{number(low, 3, True)}, {number(high, 3, True)}]"


def phantom_dice_table(record: dict, focus: str = "c") -> str:
    """The phantoms' kidney and mean Dice per arm and kidneys − (a); the ``focus`` arm's difference bold, with its
    sign-test p."""
    lines = ["| arm | kidneys | mean Dice | kidneys − (a) [95 % CI] (patients better) |", "| --- | --- | --- | --- |"]
    for arm, row in record["report"]["phantoms"].items():
        diff = row.get("kidneys_minus_a")
        cell = f"{interval(diff)} ({diff['patients_better']}/{diff['patients']})" if diff else ""
        if diff and arm == focus:
            cell = f"**{cell}**" + (f", sign p {diff['sign_p']}" if "sign_p" in diff else "")
        last = f" {cell} |" if cell else " |"                 # an empty cell for (a) itself
        lines.append(f"| ({arm}) | {number(row['kidneys'], 3)} | {number(row['mean'], 3)} |{last}")
    return "\n".join(lines)


def before_after_table(record: dict, case_labels: dict[str, str]) -> str:
    """CBCT beside sCT for each metric, one row per case and one for the mean over the cases; the sCT's MAE bold."""
    metrics = (("MAE", "mae", 1, False), ("ME", "me", 1, True), ("PSNR", "psnr", 2, False), ("SSIM", "ssim", 3, False))
    lines = ["| held-out case | " + " | ".join(f"{image} {m[0]}" for m in metrics for image in ("CBCT", "sCT")) + " |",
             "| --- | " + " | ".join("---" for _ in range(2 * len(metrics))) + " |"]
    report = record["report"]
    for key, values in [*((c["case"], c["metrics"]) for c in report["cases"]), ("mean", report["mean_of_cases"])]:
        cells = []
        for _, metric, digits, signed in metrics:
            cbct, sct = (number(values[i][metric], digits, signed) for i in ("input", "prediction"))
            cells += [cbct, f"**{sct}**" if metric == "mae" else sct]
        lines.append(f"| {case_labels[key]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def dice_sd_table(record: dict) -> str:
    """Dice per arm and organ, mean ± SD; the highest mean of each organ bold."""
    dice = record["report"]["dice"]
    best = {o: max(dice, key=lambda arm: dice[arm][o]["mean"]) for o in ORGANS}
    lines = ["| arm | " + " | ".join(ORGANS) + " |", "| --- | " + " | ".join("---" for _ in ORGANS) + " |"]
    for arm, organs in dice.items():
        cells = [(f"**{number(organs[o]['mean'], 3)}**" if best[o] == arm else number(organs[o]["mean"], 3))
                 + f" ± {number(organs[o]['sd'], 3)}" for o in ORGANS]
        lines.append(f"| ({arm}) {ARMS[arm]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def paired_dice_table(record: dict, focus: str = "c") -> str:
    """Each arm minus (a) per organ: mean [95 % CI, 2 decimals] patients better; the ``focus`` arm's mean bold where
    its CI lies above 0."""
    lines = ["| | " + " | ".join(ORGANS) + " |", "| --- | " + " | ".join("---" for _ in ORGANS) + " |"]
    for arm, organs in record["report"]["minus_a"].items():
        cells = []
        for o in ORGANS:
            d = organs[o]
            mean = number(d["mean"], 3, True)
            mean = f"**{mean}**" if arm == focus and d["ci95"][0] > 0 else mean
            low, high = (number(v, 2, True) for v in d["ci95"])
            cells.append(f"{mean} [{low}, {high}] {d['patients_better']}/{d['patients']}")
        lines.append(f"| ({arm}) − (a) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fidelity_table(record: dict) -> str:
    """The translator's fidelity: body HU MAE of the contrast and the synthetic CT, and the enhancement removed."""
    groups = record["report"]["fidelity"]
    lines = ["| | test patients (mean of 9) | the real `example_ct_sm` |", "| --- | --- | --- |"]
    for label, key in (("body HU MAE, contrast CT → true", "body_mae_contrast_hu"),
                       ("body HU MAE, synthetic → true", "body_mae_synthetic_hu")):
        lines.append(f"| {label} | " + " | ".join(number(g[key], 1) for g in groups.values()) + " |")
    for organ in groups["test_patients_mean"]["enhancement_removed_pct"]:
        cells = [groups[g]["enhancement_removed_pct"][organ] for g in groups]
        lines.append(f"| {organ} enhancement removed | "
                     + " | ".join(f"{number(v, 0)} %" + (" (brighter)" if v < 0 else "") for v in cells) + " |")
    return "\n".join(lines)


SCT = {"input": "CBCT", "linear": "`linear` baseline", "histogram": "`histogram` baseline"}
#: table name -> (the records it is drawn from, how)
TABLES: dict[str, tuple[tuple[str, ...], Callable[[], str]]] = {
    "make_demo": (("make_demo",), lambda: case_image_table(
        load("make_demo"), {"phantom05": "phantom", "ts_example_ct": "real abdomen CT"},
        {**SCT, "prediction": "medgan sCT"})),
    "starter_pipeline": (("starter_pipeline",), lambda: case_image_table(
        load("starter_pipeline"), {"phantom05": "phantom05", "ts_example_ct": "real `example_ct`"},
        {**SCT, "input": "simulated CBCT", "prediction": "starter sCT"})),
    "starter_held_out_patients": (("starter_held_out_patients",), lambda: case_image_table(
        load("starter_held_out_patients"),
        {"lopo_dicom_L/ts_example_ct_dicom": "real `example_ct_dicom`",
         "lopo_dicom_L/phantom05": "phantom05 (same fold)",
         "lopo_crops_L/ts_aorta_ct": "real `aorta_report` crop",
         "lopo_crops_L/ts_pulmonary_ct": "real `pulmonary_report` crop",
         "lopo_crops_L/phantom05": "phantom05 (same fold)"},
        {**SCT, "input": "simulated CBCT", "prediction": "sCT", "compact:input": "CBCT",
         "compact:linear": "`linear`", "compact:histogram": "`histogram`", "compact:prediction": "sCT"},
        overrides={("lopo_crops_L/ts_aorta_ct", "prediction"): "sCT (guard: returned unchanged)",
                   ("lopo_crops_L/ts_pulmonary_ct", "prediction"): "sCT (guard: returned unchanged)"},
        compact=("lopo_dicom_L/phantom05", "lopo_crops_L/phantom05"))),
    "synthrad_protocols": (("synthrad_protocols",), lambda: protocols_table(
        load("synthrad_protocols"),
        {"phantom05": "phantom05", "ts_example_ct": "real `example_ct`", "mean": "mean of 2"},
        {"input": "CBCT", "linear": "`linear`", "histogram": "`histogram`", "prediction": "sCT"})),
    "dose_example_ct": (("dose_example_ct",), lambda: dose_table(
        load("dose_example_ct"), {"CBCT": "CBCT", "linear": "`linear`", "histogram": "`histogram`", "sCT": "sCT"})),
    "segmentation_real_patient": (("segmentation_study_full",), lambda: dice_table(load("segmentation_study_full"))),
    "segmentation_phantoms": (("segmentation_study_full",),
                              lambda: phantom_dice_table(load("segmentation_study_full"))),
    "first_starter": (("first_starter",), lambda: before_after_table(
        load("first_starter"), {"phantom05": "phantom05", "ts_example_ct": "real `example_ct`", "mean": "mean"})),
    "segmentation_3arm_dice": (("segmentation_study_3arm",), lambda: dice_sd_table(load("segmentation_study_3arm"))),
    "segmentation_3arm_paired": (("segmentation_study_3arm",),
                                 lambda: paired_dice_table(load("segmentation_study_3arm"))),
    "segmentation_3arm_fidelity": (("segmentation_study_3arm",),
                                   lambda: fidelity_table(load("segmentation_study_3arm"))),
    # models.md: the starter pipeline's real test patient and the held-out ones, one row each
    "real_patients_held_out": (("starter_pipeline", "starter_held_out_patients"), lambda: patient_table([
        ("`example_ct` (the starter itself)", [("starter_pipeline", "ts_example_ct")],
         "all criteria hold; goal ≤ 40 HU missed"),
        ("`example_ct_dicom` (`runs/lopo_dicom_L`)",
         [("starter_held_out_patients", "lopo_dicom_L/ts_example_ct_dicom")],
         "all criteria hold; still over-corrected (mean error −27.5 HU); bone MAE unchanged (228.0 → 228.1 HU)"),
        ("contrast CT crops `aorta_report` / `pulmonary_report` (`runs/lopo_crops_L`)",
         [("starter_held_out_patients", "lopo_crops_L/ts_aorta_ct"),
          ("starter_held_out_patients", "lopo_crops_L/ts_pulmonary_ct")],
         "the guard flags both (body HU 157 and 212 HU from the training inputs', limit 60) and returns the CBCT "
         "unchanged: never worse, but the `linear` baseline is far better")])),
}


def load(name: str) -> dict:
    record: dict = json.loads((RECORDS / f"{name}.json").read_text(encoding="utf-8"))
    return record


def render(name: str) -> str:
    """The markdown table ``name`` (without the marker lines)."""
    if name not in TABLES:
        raise KeyError(f"no generated table {name}; known: {', '.join(sorted(TABLES))}")
    return TABLES[name][1]()


def begin(name: str) -> str:
    """The marker line before table ``name``, naming its records."""
    return BEGIN.format(name=name, sources=", ".join(f"benchmarks/results/{r}.json" for r in TABLES[name][0]))


def _dedent(body: str, indent: str) -> str:
    return "\n".join(line[len(indent):] if line.startswith(indent) else line for line in body.rstrip("\n").split("\n"))


def blocks(text: str) -> list[tuple[str, str]]:
    """The generated tables of a page as (table name, table text without the markers and the indent)."""
    return [(m.group("name"), _dedent(m.group("body"), m.group("indent"))) for m in BLOCK.finditer(text)]


def _block(m: re.Match) -> str:
    indent = m.group("indent")
    lines = [begin(m.group("name")), *render(m.group("name")).split("\n"), END]
    return "\n".join(indent + line for line in lines)


def rendered(text: str) -> str:
    """``text`` with every generated table replaced by its rendering."""
    return BLOCK.sub(_block, text)


def record_from_report(name: str, report: Path, measured: str, hardware: str, command: str, notes: str = "",
                       records: Path = RECORDS, overwrite: bool = False) -> Path:
    """Write record ``name`` from a command's metrics.json (``medgan evaluate``'s layout), copied verbatim with its
    provenance; an existing record is replaced only with ``overwrite``."""
    from medgan.errors import InputError, OutputError
    from medgan.io.writers import atomic_write_text

    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", measured):
        raise InputError(f"--measured {measured!r}: expected a date YYYY-MM-DD")
    try:
        data = json.loads(Path(report).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the report {report}: {exc}") from None
    if not isinstance(data, dict) or not data.get("cases"):
        raise InputError(f"{report} is not a metrics.json of medgan evaluate (no cases)")
    out = Path(records) / f"{name}.json"
    if out.exists() and not overwrite:
        raise OutputError(f"{out} exists; add --overwrite to replace it")
    record = {"table": name, "measured": measured, "hardware": hardware, "command": command,
              "source": f"{report} written by that command, copied verbatim as report", "notes": notes, "report": data}
    return atomic_write_text(out, json.dumps(record, indent=1, ensure_ascii=False) + "\n")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 when a table differs from its JSON")
    p.add_argument("--record", metavar="NAME", help="first write benchmarks/results/NAME.json from --report")
    p.add_argument("--report", type=Path, metavar="FILE", help="a metrics.json of the command that measured it")
    p.add_argument("--measured", metavar="YYYY-MM-DD", help="the date it was measured")
    p.add_argument("--hardware", help="where it ran, e.g. 'x86_64, 2 CPU cores, no GPU'")
    p.add_argument("--command", dest="what", metavar="COMMAND", help="the command that measured it")
    p.add_argument("--notes", default="", help="what else a reader needs (data, seeds, settings)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing record")
    args = p.parse_args(argv)
    if args.record:
        missing = [f"--{k}" for k in ("report", "measured", "hardware", "what") if not getattr(args, k)]
        if missing:
            p.error(f"--record needs {', '.join(missing)}".replace("--what", "--command"))
        from medgan.errors import MedganError

        try:
            out = record_from_report(args.record, args.report, args.measured, args.hardware, args.what, args.notes,
                                     overwrite=args.overwrite)
            print(f"wrote {out}")
        except MedganError as exc:
            print(f"render_results: error: {exc}", file=sys.stderr)
            return 1
    stale = []
    for page in PAGES:
        path = REPO / page
        text = path.read_text(encoding="utf-8")
        new = rendered(text)
        if new != text:
            stale += [f"{page}: {name}" for (name, body), (_, fresh) in zip(blocks(text), blocks(new), strict=True)
                      if body != fresh] or [f"{page}: a marker line"]
            if not args.check:
                from medgan.io.writers import atomic_write_text

                atomic_write_text(path, new)
    for item in stale:
        print(("differs from its JSON: " if args.check else "rewritten: ") + item)
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
