"""The metric registry feeds the protocols' columns, image_metrics, metrics.csv/json, the printed summary."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from medgan.errors import ConfigError
from medgan.evaluation import evaluate_case, summary_table
from medgan.evaluation import registry as reg
from medgan.evaluation.metrics import PROTOCOLS, get_protocol, image_metrics
from medgan.evaluation.tables import format_summary, write_tables
from medgan.io import Volume


def _vol(arr):
    return Volume(np.asarray(arr, np.float32), (1.0, 1.0, 2.0), (0.0, 0.0, 0.0))


def _case(offset: float):
    rng = np.random.default_rng(1)
    ct = np.full((10, 24, 24), -1000.0)
    ct[:, 4:20, 4:20] = rng.normal(40, 30, (10, 16, 16))
    return evaluate_case(_vol(ct + offset), _vol(ct), case=f"c{offset:g}")


def test_builtin_columns_and_their_declarations():
    assert get_protocol("synthrad2023").columns[:7] == ("mae", "me", "psnr", "ssim", "mae_air", "mae_soft_tissue",
                                                        "mae_bone")
    assert get_protocol("synthrad2025").columns[:7] == ("mae", "me", "psnr", "ms_ssim", "mae_air",
                                                        "mae_soft_tissue", "mae_bone")
    mae, me, ssim = reg.get_metric("mae"), reg.get_metric("me"), reg.get_metric("ssim")
    assert (mae.header, mae.better, mae.digits) == ("MAE (HU)", "lower", 1)
    assert me.better == "zero" and me.fmt(2.345) == "+2.3" and mae.fmt(2.345) == "2.3"
    assert mae.fmt(float("nan")) == "n/a" and mae.fmt(float("inf")) == "inf"
    assert ssim.header == "SSIM" and ssim.better == "higher" and ssim.protocols == ("synthrad2023",)
    for name in PROTOCOLS:                      # the printed summary: the four SynthRAD columns
        assert [m.name for m in reg.metrics_for(name, summary_only=True)] == [
            "mae", "me", "psnr", "ssim" if name == "synthrad2023" else "ms_ssim"]
    with pytest.raises(ConfigError, match="better must be one of"):
        reg.Metric("x", "X", "", 1, "bigger", lambda p, t, m, pr: 0.0)
    with pytest.raises(ConfigError, match="unknown metric 'nope'"):
        reg.get_metric("nope")


@pytest.fixture
def p95_metric():
    """A metric registered for the test only: the 95th percentile of |error| in the mask."""
    reg.metrics_for("synthrad2023")             # the other metrics are loaded first, so this one comes last
    metric = reg.register_metric(reg.Metric(
        "p95_error", "P95 |error|", "HU", 1, "lower",
        lambda p, t, m, pr: float(np.percentile(np.abs(p - t)[m], 95)), ("synthrad2023",), summary=True))
    yield metric
    del reg.METRICS["p95_error"]


def test_one_registration_reaches_every_table(tmp_path, p95_metric):
    with pytest.raises(ConfigError, match="already registered"):
        reg.register_metric(reg.Metric("p95_error", "other", "", 1, "lower", lambda p, t, m, pr: 0.0))
    assert get_protocol("synthrad2023").columns[-1] == "p95_error"
    assert "p95_error" not in get_protocol("synthrad2025").columns
    rng = np.random.default_rng(0)
    t = rng.normal(0, 300, (8, 16, 16))
    p = t + rng.normal(0, 50, t.shape)
    mask = np.ones(t.shape, bool)
    got = image_metrics(p, t, mask, "synthrad2023")
    assert got["p95_error"] == pytest.approx(np.percentile(np.abs(p - t), 95))
    assert "p95_error" not in image_metrics(p, t, mask, "synthrad2025")
    results = [_case(10.0), _case(-20.0)]
    summary = summary_table(results)
    csv_path, json_path = write_tables(tmp_path, results, summary)
    rows = list(csv.DictReader(csv_path.open(encoding="utf-8")))
    assert [r["case"] for r in rows] == ["c10", "c-20"] and all(r["p95_error"] for r in rows)
    # a constant offset: every voxel's |error| is the offset (float32 volumes: HU within 1e-3)
    assert [float(r["p95_error"]) for r in rows] == pytest.approx([10.0, 20.0], abs=1e-3)
    doc = json.loads(json_path.read_text(encoding="utf-8"))
    assert doc["columns"]["p95_error"] == {"label": "P95 |error|", "unit": "HU", "digits": 1, "better": "lower"}
    assert doc["columns"]["mae"]["better"] == "lower" and list(doc["columns"]) == list(get_protocol(
        "synthrad2023").columns)
    assert doc["summary"]["prediction"]["p95_error"]["mean"] == pytest.approx(15.0, abs=1e-3)
    header = format_summary(results, summary).splitlines()[2]
    assert header.split()[-3:] == ["P95", "|error|", "(HU)"]


def test_the_report_module_writes_through_the_one_writer():
    from medgan.evaluation import report, tables

    assert report.write_tables is tables.write_tables
