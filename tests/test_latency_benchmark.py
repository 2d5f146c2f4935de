"""benchmarks/latency.py: the compact model gets crop rows (fp32, INT8, ONNX) and stream rows."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import latency  # noqa: E402


def test_compact_model_rows(tmp_path):
    pytest.importorskip("onnxruntime")
    rows = latency.run(repeats=1, hops=3, work=tmp_path, models=["compact_crn"])
    got = {(r["model"], r["variant"], r["def"]) for r in rows}
    assert got == {("compact_crn", v, "crop") for v in ("fp32", "int8", "onnx")} | {
        ("compact_crn", v, "stream") for v in ("fp32", "int8", "onnx")}
    assert all(r["median"] > 0 and r["cpu_median"] > 0 and r["size_mb"] > 0 for r in rows)
    table = latency.format_table(rows)
    assert "compact_crn  int8    stream" in table and "RTF < 0.05" in table
