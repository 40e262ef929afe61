"""The model-server benchmark runs and reports what docs/benchmarks.md quotes."""

import json

import pytest

from agent import benchmark_serve


def test_ipc_overhead_report(tmp_path):
    out = tmp_path / "ipc.json"
    assert benchmark_serve.main(["--ipc-ticks", "30", "--skip-throughput", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    ipc = report["ipc"]
    assert ipc["ticks"] == 30 and ipc["image_bytes"] == 3 * 160 * 288 * 3
    times = ipc["round_trip_ms"]
    assert 0 < times["median"] <= times["p90"] <= times["p99"]
    assert report["num_samples"] == 4  # from weights/ik-tiny/agent.yaml


@pytest.mark.slow
def test_throughput_rows_for_both_modes(tmp_path):
    out = tmp_path / "bench.json"
    assert benchmark_serve.main(["--ipc-ticks", "10", "--plans", "3", "--clients", "1", "2", "--rounds", "1",
                                 "--num-samples", "1", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())["throughput"]
    assert sorted((r["kind"], r["clients"]) for r in rows) == [("inprocess", 1), ("inprocess", 2),
                                                              ("server", 1), ("server", 2)]
    for row in rows:
        assert row["plans_per_s"] > 0 and row["latency_ms"]["median"] > 0
        assert 1.0 <= row["mean_batch"] <= row["clients"]
