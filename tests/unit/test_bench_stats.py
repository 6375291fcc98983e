"""The statistics every benchmark reports with (bench/benchlib.py): percentiles, spreads, paired ratios and the
A B A B interleaving. Pure functions; the benchmarks themselves run with `make bench`, never in the test suite."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

_SPEC = importlib.util.spec_from_file_location(
    "benchlib", Path(__file__).resolve().parents[2] / "bench" / "benchlib.py"
)
assert _SPEC and _SPEC.loader
benchlib = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(benchlib)


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert benchlib.percentile(values, 50) == 50
    assert benchlib.percentile(values, 99) == 99
    assert benchlib.percentile(values, 100) == 100
    assert benchlib.percentile([7.0], 99) == 7.0
    assert benchlib.percentile([3, 1, 2], 0) == 1  # order of the input does not matter
    with pytest.raises(ValueError):
        benchlib.percentile([], 50)


def test_spread_is_median_min_max() -> None:
    assert benchlib.spread([3.0, 1.0, 2.0]) == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert benchlib.spread([1.0, 4.0])["median"] == 2.5
    with pytest.raises(ValueError):
        benchlib.spread([])


def test_ratios_pair_rounds_measured_next_to_each_other() -> None:
    assert benchlib.paired_ratios([10, 20, 30], [20, 20, 20]) == [0.5, 1.0, 1.5]
    assert benchlib.ratio([10, 20, 30], [20, 20, 20]) == {"median": 1.0, "min": 0.5, "max": 1.5, "n": 3}
    assert math.isinf(benchlib.paired_ratios([1], [0])[0])
    with pytest.raises(ValueError):
        benchlib.paired_ratios([1, 2], [1])


def test_interleave_runs_a_b_a_b() -> None:
    calls: list[str] = []

    def arm(name: str):
        def run(i: int) -> str:
            calls.append(f"{name}{i}")
            return f"{name}{i}"

        return run

    results = benchlib.interleave([("a", arm("a")), ("b", arm("b"))], 3)
    assert calls == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert results == {"a": ["a0", "a1", "a2"], "b": ["b0", "b1", "b2"]}


def test_latency_summary() -> None:
    summary = benchlib.latency_summary([float(x) for x in range(1, 201)])
    assert (summary["n"], summary["p50_ms"], summary["p99_ms"], summary["max_ms"]) == (200, 100.0, 198.0, 200.0)
    assert benchlib.latency_summary([]) == {"n": 0}
