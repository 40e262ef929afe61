"""The agent latency benchmark runs end to end (numbers are recorded in docs/benchmarks.md)."""

import json


def test_benchmark_runs_and_reports_percentiles(tmp_path):
    from agent.benchmark_agent import main

    out = tmp_path / "bench.json"
    results = main(["--ticks", "6", "--warmup", "2", "--planning-hz", "10", "--json", str(out)])
    assert set(results) == {"every tick (20 Hz)", "planning at 10 Hz"}
    for stats in results.values():
        assert 0.0 < stats["median_ms"] <= stats["p90_ms"] <= stats["max_ms"]
        assert stats["plan_median_ms"] > 0.0 and stats["decode_median_ms"] > 0.0
    assert json.loads(out.read_text()) == results
