"""bench.json: a versioned schema that round-trips, and clear refusals of files it cannot read."""

from __future__ import annotations

import json

import pytest

from edgekit.bench import SCHEMA_VERSION, BenchReport, load_report, run_bench
from edgekit.core.errors import ConfigError


@pytest.fixture
def report(small_bundle) -> BenchReport:
    return run_bench(small_bundle, {"iterations": 12, "warmup": 2}, progress=False)


def test_round_trip_is_lossless(report, tmp_path):
    path = report.write(tmp_path / "bench.json")
    again = load_report(path)
    assert again == report
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION == 1
    assert len(data["timeline"]["end_to_end_ms"]) == 12


def test_write_is_atomic_and_leaves_no_temporaries(report, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    report.write(out / "bench.json")
    assert sorted(p.name for p in out.iterdir()) == ["bench.json"]


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.update(schema_version=99), "bench schema v99"),
    (lambda d: d.pop("schema_version"), "not a bench result"),
    (lambda d: d["latency"]["end_to_end"].update(n="many"), "latency.end_to_end.n"),
    (lambda d: d.update(surprise=1), "surprise"),
])
def test_unreadable_results_are_one_clear_line(report, tmp_path, mutate, message):
    data = json.loads(report.model_dump_json())
    mutate(data)
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as e:
        load_report(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_missing_and_garbage_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_report(tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(ConfigError, match="cannot read bench result"):
        load_report(tmp_path / "x.json")
