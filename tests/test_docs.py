"""README's numbers are the measurement docs' numbers.

README.md shows a results table, timings of `make demo` and `make test`, and a few measured
figures in its prose. Each of them is measured once and recorded in docs/results.md,
docs/models.md or docs/performance.md; these tests fail when README and those docs disagree.
"""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from benchmarks import render_results
from medgan.errors import InputError, OutputError

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RESULTS = ROOT / "docs" / "results.md"
MODELS = ROOT / "docs" / "models.md"
PERFORMANCE = ROOT / "docs" / "performance.md"

# a decimal number, optionally signed, not part of a word, a version (0.2.0) or a longer number
DECIMAL = re.compile(r"(?<![\w.])[+\-−]?\d+\.\d+(?!\w|\.\d)")
FENCE = re.compile(r"^```.*?^```[^\n]*$", re.MULTILINE | re.DOTALL)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _numbers(text: str) -> list[str]:
    """The decimal numbers of ``text`` as written, with the minus sign as ASCII '-'."""
    return [m.replace("−", "-") for m in DECIMAL.findall(text)]


def _cell(text: str) -> str:
    return " ".join(text.replace("**", "").replace("`", "").split())


def _tables(markdown: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each pipe table outside fenced code as (header cells, body rows), cells without emphasis or backticks."""
    tables: list[tuple[list[str], list[list[str]]]] = []
    lines = FENCE.sub("", markdown).splitlines()
    i = 0
    while i < len(lines):
        if (lines[i].lstrip().startswith("|") and i + 1 < len(lines)
                and re.fullmatch(r"\s*\|(\s*:?-+:?\s*\|)+\s*", lines[i + 1])):
            header = [_cell(c) for c in lines[i].strip().strip("|").split("|")]
            rows = []
            i += 2
            while i < len(lines) and lines[i].lstrip().startswith("|"):
                rows.append([_cell(c) for c in lines[i].strip().strip("|").split("|")])
                i += 1
            tables.append((header, rows))
        else:
            i += 1
    return tables


def _results_tables(markdown: str) -> list[dict[tuple[str, str], list[str]]]:
    """The tables keyed by (held-out case, image), each row mapped to its numbers."""
    out = []
    for header, rows in _tables(markdown):
        if header[:2] == ["held-out case", "image"]:
            out.append({(r[0], r[1]): [n for c in r[2:] for n in _numbers(c)] for r in rows})
    return out


def test_table_parser_reads_cells_numbers_and_skips_code() -> None:
    md = ("text\n```\n| held-out case | image | MAE |\n| --- | --- | --- |\n| x | y | 1.0 |\n```\n"
          "| held-out case | image | HU MAE | mean error |\n| --- | --- | --- | --- |\n"
          "| real `ct` | **sCT** | **40.8** | −5.7 |\n")
    assert _results_tables(md) == [{("real ct", "sCT"): ["40.8", "-5.7"]}]
    assert _numbers("0.2.0, 3D, 40.8. and +0.003 [−0.014, x2.5]") == ["40.8", "+0.003", "-0.014"]


def test_readme_results_tables_equal_rows_of_one_results_md_table() -> None:
    readme_tables = _results_tables(_read(README))
    results_tables = _results_tables(_read(RESULTS))
    assert readme_tables, "README.md has no results table (held-out case | image | ...)"
    for table in readme_tables:
        homes = [t for t in results_tables if set(table) <= set(t)]
        assert homes, f"no table of docs/results.md has all of README's rows {sorted(table)}"
        for key, numbers in table.items():
            assert len(numbers) >= 4, f"README row {key}: expected MAE, ME, PSNR and SSIM, got {numbers}"
            assert any(home[key] == numbers for home in homes), (
                f"README row {key} {numbers} differs from docs/results.md {[home[key] for home in homes]}")


def test_readme_margins_over_the_best_baseline_follow_from_its_table() -> None:
    readme = _read(README)
    (table,) = [t for t in _results_tables(readme) if any(k[1] == "medgan sCT" for k in t)]
    m = re.search(r"by ([\d.]+) HU \(real CT\) and ([\d.]+) HU\s+\(phantom\) over the best baseline", readme)
    assert m, "README's margin sentence (by X HU (real CT) and Y HU (phantom) over the best baseline) not found"
    for case, claimed in (("real abdomen CT", m.group(1)), ("phantom", m.group(2))):
        mae = {image: float(nums[0]) for (c, image), nums in table.items() if c == case}
        best_baseline = min(v for image, v in mae.items() if "baseline" in image)
        assert f"{best_baseline - mae['medgan sCT']:.1f}" == claimed, (case, mae)


def test_readme_seed_mean_is_results_md_mean_of_its_seeds() -> None:
    m = re.search(r"over three seeds the recipe scores ([\d.]+) HU on the real CT", _read(README))
    assert m, "README's three-seed sentence not found"
    r = re.search(r"Over three training seeds it scores ([\d.]+) HU on `example_ct` \(([\d.]+), ([\d.]+), ([\d.]+)\)",
                  _read(RESULTS))
    assert r, "docs/results.md's three-seed sentence not found"
    assert m.group(1) == r.group(1)
    assert f"{sum(float(r.group(i)) for i in (2, 3, 4)) / 3:.1f}" == r.group(1)


def _minutes(text: str) -> float:
    m = re.fullmatch(r"(\d+) min (\d+) s", text)
    assert m, text
    return int(m.group(1)) + int(m.group(2)) / 60


def _jobs_rows() -> list[list[str]]:
    (rows,) = [rows for header, rows in _tables(_read(PERFORMANCE)) if header == ["job", "time"]]
    return rows


def test_readme_make_test_and_make_demo_timings_are_performance_md_rows() -> None:
    first_block = FENCE.search(_read(README))
    assert first_block
    demo, test = first_block.group(0).splitlines()[1:3]
    assert demo.startswith("make demo") and test.startswith("make test")
    m = re.search(r"\((\d+) tests; ([\d.]+) min on 2 CPU cores, ([\d.]+) min with the venv set-up, ([\d-]+)\)", test)
    assert m, test
    n_tests, alone, total, date = m.groups()
    rows = [r for r in _jobs_rows() if "make test" in r[0] and f"{n_tests} tests" in r[0]]
    assert len(rows) == 1, f"performance.md: one `make test` row with {n_tests} tests expected, got {rows}"
    t = re.search(r"(\d+ min \d+ s) \(tests alone (\d+ min \d+ s)", rows[0][1])
    assert t and date in rows[0][1], rows[0]
    assert (f"{_minutes(t.group(1)):.1f}", f"{_minutes(t.group(2)):.1f}") == (total, alone)

    m = re.search(r"\(([\d.]+) min on 2 CPU cores from a fresh clone beside \.\./shared/data, venv included, "
                  r"([\d-]+)\)", demo)
    assert m, demo
    rows = [r for r in _jobs_rows() if "make demo" in r[0] and "fresh clone beside" in r[0]]
    assert rows, "performance.md has no `make demo` from a fresh clone beside ../shared/data row"
    latest = rows[-1]
    t = re.match(r"(\d+ min \d+ s)", latest[1])
    assert t and m.group(2) in " ".join(latest), latest
    assert f"{_minutes(t.group(1)):.1f}" == m.group(1)


def test_every_decimal_in_readme_prose_is_in_a_measurement_doc() -> None:
    """README's measured figures outside code (the table's included) are copied from the measurement docs."""
    docs = " ".join(_read(p) for p in (RESULTS, MODELS, PERFORMANCE))
    signed = set(_numbers(docs))
    unsigned = {n.lstrip("+-") for n in signed}
    prose = re.sub(r"`[^`\n]*`", "", FENCE.sub("", _read(README)))  # inline code: commands and options, not figures
    missing = [n for n in _numbers(prose) if n not in (signed if n[0] in "+-" else unsigned)]
    assert not missing, f"README numbers found in none of results.md, models.md, performance.md: {missing}"


def test_generated_tables_equal_the_rendering_of_their_json_record() -> None:
    """Every table between the generated markers is what benchmarks/render_results.py draws from its record."""
    used: set[str] = set()
    for page in render_results.PAGES:
        text = _read(ROOT / page)
        found = render_results.blocks(text)
        assert len(found) == text.count("<!-- generated table"), f"{page}: a generated-table marker is malformed"
        for name, body in found:
            assert body == render_results.render(name), (
                f"{page}: the {name} table differs from its JSON records; run python benchmarks/render_results.py")
            assert render_results.begin(name) in text, f"{page}: the marker of {name} names other records"
            used.update(render_results.TABLES[name][0])
    records = {p.stem for p in render_results.RECORDS.glob("*.json")}
    assert records and records == used, f"records without a table: {records - used}; tables without a record: " \
                                        f"{used - records}"
    assert {"make_demo"} <= {n for n, _ in render_results.blocks(_read(README))}


def _numbers_in(tree: object) -> list[float]:
    if isinstance(tree, dict):
        return [v for item in tree.values() for v in _numbers_in(item)]
    if isinstance(tree, list):
        return [v for item in tree for v in _numbers_in(item)]
    return [float(tree)] if isinstance(tree, (int, float)) and not isinstance(tree, bool) else []


def test_each_record_names_its_provenance_and_holds_finite_numbers() -> None:
    for path in render_results.RECORDS.glob("*.json"):
        record = json.loads(path.read_text(encoding="utf-8"))
        assert record["table"] == path.stem
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", record["measured"]), path
        assert all(record[k].strip() for k in ("hardware", "command", "source")), path
        report = record["report"]
        assert ("rounded" in record["source"]) == bool(report.get("rounded")), (
            f"{path.name}: a record of rounded values says so in its source and its report")
        numbers = _numbers_in(report)
        assert numbers and all(math.isfinite(v) for v in numbers), path
        for case in report.get("cases", []):                # evaluate's layout: at least the CBCT and the sCT
            assert set(case["metrics"]) >= {"input", "prediction"}, (path.name, case["case"])


def test_results_md_field_of_view_figures_are_the_protocols_record() -> None:
    fov = render_results.load("synthrad_protocols")["report"]["truncated_cbct"]
    text = " ".join(_read(RESULTS).split())
    assert (f"has {100 * fov['body_outside_fov']:.1f} % of its body outside the field of view. That CBCT's MAE is "
            f"{fov['body']['mae']:.1f} HU with the CT body mask, against {fov['body-fov']['mae']:.1f} HU inside "
            "body ∩ FOV") in text


def test_render_rounds_signs_and_marks_the_best_and_the_check_finds_an_edited_cell() -> None:
    assert [render_results.number(v, 1, True) for v in (-3.74, 15.449, 0.04)] == ["−3.7", "+15.4", "+0.0"]
    assert render_results.number(0.97466, 3) == "0.975"
    assert render_results._best({"a": 0.9251, "b": 0.9249, "c": 0.91}, "high", 3) is None   # a tie as shown: no bold
    assert render_results._best({"a": 0.9251, "b": 0.9249, "c": 0.91}, "high", 4) == "a"
    metrics = {"input": (60.0, 2.0, 33.0, 0.95), "linear": (41.0, -9.0, 34.0, 0.93),
               "histogram": (54.0, -17.0, 33.5, 0.96), "prediction": (45.0, 1.0, 35.0, 0.94)}
    record = {"report": {"cases": [{"case": "c", "metrics": {i: dict(zip(("mae", "me", "psnr", "ssim"), v, strict=True))
                                                                for i, v in metrics.items()}}]}}
    labels = {"input": "CBCT", "linear": "lin", "histogram": "hist", "prediction": "sCT"}
    rows = render_results.case_image_table(record, {"c": "case"}, labels).splitlines()[2:]
    assert rows[1] == "| case | lin | **41.0** | −9.0 | 34.00 | 0.930 |"       # the lowest MAE, not the sCT's
    assert rows[3] == "| case | sCT | 45.0 | +1.0 | 35.00 | 0.940 |"
    compact = render_results.case_image_table(record, {"c": "case"}, {f"compact:{i}": v for i, v in labels.items()},
                                              compact=("c",)).splitlines()[2]
    assert compact == ("| case | CBCT / lin / hist / sCT | 60.0 / **41.0** / 54.0 / 45.0 | +2.0 / −9.0 / −17.0 / +1.0 "
                       "| 33.00 / 34.00 / 33.50 / **35.00** | 0.950 / 0.930 / **0.960** / 0.940 |")
    text = _read(RESULTS)
    (name, body), *_ = render_results.blocks(text)
    edited = text.replace(body, body.replace("| **", "| **1", 1))
    assert [b for n, b in render_results.blocks(edited) if n == name][0] != render_results.render(name)
    assert render_results.rendered(edited) == text
    # a table inside a list item: markers and lines indented alike, the indent kept
    stale = f"- item\n\n  {render_results.begin('make_demo')}\n  | old |\n  {render_results.END}\n"
    assert render_results.blocks(stale) == [("make_demo", "| old |")]
    fresh = render_results.rendered(stale)
    assert fresh.splitlines()[3:-1] == [f"  {line}" for line in render_results.render("make_demo").splitlines()]
    assert render_results.blocks(fresh) == [("make_demo", render_results.render("make_demo"))]


def test_results_md_dose_prose_quotes_the_dose_record() -> None:
    record = render_results.load("dose_example_ct")["report"]
    row = {(r["modality"], r["image"]): r for r in record["rows"]}
    cbct, sct, photon = row["proton", "CBCT"], row["proton", "sCT"], (row["photon", "CBCT"], row["photon", "sCT"])
    text = " ".join(_read(RESULTS).split())
    for sentence in (
            f"On the CT the target got D98 = {record['target_D98_ct_gy']:.2f} Gy",
            f"({photon[0]['synthrad_mae_dose_pct_rx']:.2f} → {photon[1]['synthrad_mae_dose_pct_rx']:.2f} % of the "
            "prescription)",
            "overshoot by {range_shift_mean_mm:.1f} mm on average (p95 {range_shift_abs_p95_mm:.1f} mm)".format(**cbct),
            "cuts the mean range error to {range_shift_mean_mm:.1f} mm (p95 {range_shift_abs_p95_mm:.1f} mm)"
            .format(**sct),
            f"pass rate from {cbct['gamma_2pct_2mm']:.1f} to {sct['gamma_2pct_2mm']:.1f} %"):
        assert sentence in text, sentence


def test_the_primary_endpoint_in_results_md_and_readme_is_the_study_record() -> None:
    p = render_results.load("segmentation_study_full")["report"]["primary"]
    ci = render_results.interval(p)
    results = " ".join(_read(RESULTS).split())
    assert (f"**Primary: kidneys (c) − (a) = {render_results.number(p['mean'], 3, True)}**, 95 % CI "
            f"{ci[ci.index('['):]}") in results
    assert (f"{p['seeds_better']}/{p['seeds']} seeds better, sign p {p['sign_p']}, Wilcoxon p {p['wilcoxon_p']}"
            in results)
    assert f"kidney Dice (c) − (a) {ci}, p {p['wilcoxon_p']})" in " ".join(_read(README).split())


def test_a_record_is_written_from_a_metrics_json_and_renders_the_same_table(tmp_path: Path) -> None:
    demo = render_results.load("make_demo")
    report = tmp_path / "metrics.json"
    report.write_text(json.dumps(demo["report"]), encoding="utf-8")
    out = render_results.record_from_report("make_demo", report, "2026-12-03", "2 CPU cores", "make demo",
                                            records=tmp_path)
    record = json.loads(out.read_text(encoding="utf-8"))
    assert record["report"] == demo["report"] and record["measured"] == "2026-12-03"
    assert str(report) in record["source"] and "rounded" not in record["source"]
    original = render_results.RECORDS
    try:
        render_results.RECORDS = tmp_path                # the table drawn from the new record is the committed one
        assert render_results.render("make_demo") in _read(README)
    finally:
        render_results.RECORDS = original
    with pytest.raises(OutputError, match="--overwrite"):
        render_results.record_from_report("make_demo", report, "2026-12-03", "x", "y", records=tmp_path)
    with pytest.raises(InputError, match="YYYY-MM-DD"):
        render_results.record_from_report("other", report, "3 Dec", "x", "y", records=tmp_path)
    report.write_text('{"rows": []}', encoding="utf-8")
    with pytest.raises(InputError, match="no cases"):
        render_results.record_from_report("other", report, "2026-12-03", "x", "y", records=tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["make_demo.json", "metrics.json"]


def _margin(record: str, case: str) -> str:
    """The sCT's MAE lead over the better calibration baseline, as the docs write it."""
    (found,) = [c for c in render_results.load(record)["report"]["cases"] if c["case"] == case]
    mae = {image: found["metrics"][image]["mae"] for image in render_results.IMAGES}
    return f"{min(mae['linear'], mae['histogram']) - mae['prediction']:.1f}"


def test_margins_over_the_best_baseline_in_results_and_models_follow_from_the_records() -> None:
    results = " ".join(_read(RESULTS).split())
    assert (f"by {_margin('make_demo', 'ts_example_ct')} HU on the real CT and {_margin('make_demo', 'phantom05')} "
            "HU on the phantom over the best baseline") in results
    models = " ".join(_read(MODELS).split())
    assert (f"by {_margin('starter_pipeline', 'ts_example_ct')} HU over the best baseline on `example_ct`, "
            f"{_margin('starter_pipeline', 'phantom05')} HU on the") in models
    (case,) = [c for c in render_results.load("starter_pipeline")["report"]["cases"] if c["case"] == "ts_example_ct"]
    shipped = f"{case['metrics']['prediction']['mae']:.1f}"                     # the shipped seed is the first
    assert re.search(rf"Over three training seeds it scores [\d.]+ HU on `example_ct` \({shipped}, ", results)
    assert f"The goal of MAE ≤ 40 HU on `example_ct` is not reached ({shipped} HU)" in models


def test_the_superseded_study_reading_quotes_its_record() -> None:
    d = render_results.load("segmentation_study_3arm")["report"]["minus_a"]["c"]["mean"]
    low, high = (render_results.number(v, 2, True) for v in d["ci95"])
    assert (f"raised mean Dice by **{render_results.number(d['mean'], 3, True)}** (CI {low} to {high}), improving "
            f"{d['patients_better']} of {d['patients']} patients") in " ".join(_read(RESULTS).split())


def test_translate_md_quotes_the_held_out_patient_record() -> None:
    cases = {c["case"]: c["metrics"] for c in render_results.load("starter_held_out_patients")["report"]["cases"]}
    mae = {case: {image: f"{m[image]['mae']:.1f}" for image in m} for case, m in cases.items()}
    text = " ".join(_read(ROOT / "docs" / "translate.md").split())
    aorta, lung, dicom = mae["ts_aorta_ct"], mae["ts_pulmonary_ct"], mae["ts_example_ct_dicom"]
    assert (f"lowered their MAE from {aorta['input']} to {aorta['linear']} HU and from {lung['input']} to "
            f"{lung['linear']} HU") in text
    assert f"({dicom['linear']} and {dicom['histogram']} against {dicom['input']} HU)" in text


def test_data_md_quotes_the_make_demo_cbct() -> None:
    record = render_results.load("make_demo")
    assert (f"{_make_demo_mae('ts_example_ct', 'input'):.1f} HU in the demo's of {record['measured']}"
            in " ".join(_read(ROOT / "docs" / "data.md").split()))


def _make_demo_mae(case: str, image: str) -> float:
    (found,) = [c for c in render_results.load("make_demo")["report"]["cases"] if c["case"] == case]
    return float(found["metrics"][image]["mae"])


def test_models_md_quotes_the_make_demo_record() -> None:
    m = re.search(r"655 projections and other noise seeds: ([\d.]+) HU on `example_ct` and ([\d.]+) HU on the phantom "
                  r"\(([\d-]+)\)", _read(MODELS))
    assert m, "models.md's make demo sentence not found"
    assert m.groups() == (f"{_make_demo_mae('ts_example_ct', 'prediction'):.1f}",
                          f"{_make_demo_mae('phantom05', 'prediction'):.1f}",
                          render_results.load("make_demo")["measured"])


def test_readme_held_out_patient_and_segmentation_figures_are_their_records() -> None:
    readme = " ".join(_read(README).split())
    m = re.search(r"the recipe beats the CBCT and both baselines \(([\d.]+) against ([\d.]+) HU for the CBCT\)", readme)
    assert m, "README's example_ct_dicom sentence not found"
    (case,) = [c for c in render_results.load("starter_held_out_patients")["report"]["cases"]
               if c["case"] == "ts_example_ct_dicom"]
    assert m.groups() == (f"{case['metrics']['prediction']['mae']:.1f}", f"{case['metrics']['input']['mae']:.1f}")
    m = re.search(r"kidney Dice \(c\) − \(a\) (\S+ \[\S+ \S+\]), p ([\d.]+)\)", readme)
    assert m, "README's segmentation endpoint not found"
    r = re.search(r"\*\*Primary: kidneys \(c\) − \(a\) = (\S+)\*\*, 95 % CI (\[\S+ \S+\]).*?Wilcoxon p\s+(\d[\d.]*\d)",
                  _read(RESULTS), re.DOTALL)
    assert r, "results.md's primary endpoint not found"
    assert m.groups() == (f"{r.group(1)} {r.group(2)}", r.group(3))
    m = re.search(r"2D ResNet-9 256² trains at ([\d.]+) pairs/s", readme)
    assert m and f"**{m.group(1)} pairs/s**" in _read(PERFORMANCE), "README's throughput is not performance.md's"


REFERENCE_DOCS = ("index", "quickstart", "io", "translate", "training", "data", "dose", "metrics", "architecture",
                  "reliability")
LAB_NOTES = re.compile(r"\b[Rr]uns? [A-N](?:–[A-N])?\b(?![\w'’-])|\b[Ii]ssues?[ -]#?\d+|\b[Ii]ssue #")


def test_lab_note_pattern_finds_run_letters_and_issue_numbers_only() -> None:
    found = LAB_NOTES.findall("run L below; runs H–L; issue 14; issue-14 criteria; Issue #3; "
                              "2 runs axial slices; the run's folder; runs/starter9; tissue 50.9")
    assert found == ["run L", "runs H–L", "issue 14", "issue-14", "Issue #3"]


def test_reference_docs_carry_no_run_letters_or_issue_numbers() -> None:
    """README and the reference docs say what the software does; trials live in results/models/performance."""
    paths = [README, *(ROOT / "docs" / f"{name}.md" for name in REFERENCE_DOCS)]
    hits = [f"{path.relative_to(ROOT)}:{i}: {line.strip()}"
            for path in paths
            for i, line in enumerate(_read(path).splitlines(), 1)
            if LAB_NOTES.search(line)]
    assert not hits, "\n".join(hits)
