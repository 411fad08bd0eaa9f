"""``triage bench``: the JSON shape of a short real run, and the helpers."""

from __future__ import annotations

import json
import math

import pytest

from helpdesk_triage.api.cli import main
from helpdesk_triage.api.serving_bench import METRIC_KEYS, format_table, memory_mb, percentile


def test_percentile():
    assert percentile([3, 1, 2], 50) == 2
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([5], 99) == 5
    assert percentile(list(range(101)), 95) == 95
    assert math.isnan(percentile([], 50))


def test_memory_of_this_process_is_known():
    import os

    found = memory_mb(os.getpid())
    assert found.get("VmRSS", 0) > 10


def test_table_shows_both_servers_and_the_ratios():
    row = dict(zip(METRIC_KEYS, (8.0, 12.0, 15.0, 200.0, 70.0, 90.0, 400.0, 2.0)))
    naive = dict(zip(METRIC_KEYS, (24.0, 30.0, 35.0, 40.0, 390.0, 420.0, 950.0, 7.0)))
    result = {"config": {"concurrency": 16}, "ours": row, "naive": naive,
              "ratio": {"throughput": 5.0, "p50": 3.0}, "store": {"sqlite_commit_p50_ms": 4.0, "sqlite_commit_p95_ms": 5.0}}
    table = format_table(result)
    assert "throughput at concurrency 16" in table and "5.0x" in table and "3.0x" in table and "SQLite" in table


def test_bench_arguments_are_checked(tmp_path, capsys):
    assert main(["bench", "--seconds", "0", "--out", str(tmp_path / "b.json")]) == 2
    assert main(["bench", "--concurrency", "0", "--out", str(tmp_path / "b.json")]) == 2
    assert main(["bench", "--model", str(tmp_path), "--out", str(tmp_path / "b.json")]) == 2
    assert "--seconds must be positive" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_smoke_runs_both_servers_and_writes_the_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["bench", "--seconds", "1", "--concurrency", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    for server in ("ours", "naive"):
        assert set(METRIC_KEYS) <= set(result[server]), result[server]
        figures = result[server]
        assert all(isinstance(figures[k], (int, float)) and figures[k] > 0 for k in METRIC_KEYS), figures
        assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
        assert figures["errors"] == 0 and figures["sequential_requests"] >= 20
    assert set(result["ratio"]) >= {"throughput", "p50"}
    assert result["ratio"]["throughput"] == pytest.approx(result["ours"]["throughput_rps"] / result["naive"]["throughput_rps"], rel=0.02)
    assert result["ratio"]["p50"] == pytest.approx(result["naive"]["p50_ms"] / result["ours"]["p50_ms"], rel=0.02)
    printed = capsys.readouterr().out
    assert "ours" in printed and "naive" in printed and "throughput at concurrency 2" in printed
