"""The bounded slice of the coverage sweep (bench/coverage.py --slice): a few
diverse architectures through every stage, each in its own forked process.
No stage may return a model its own check rejects (mismatch), crash or hang."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import coverage  # noqa: E402
import coverage_stages  # noqa: E402


def test_slice_has_no_mismatch_crash_or_timeout():
    coverage_stages.prepare()
    chosen = [a for a in coverage.discover() if a.model_type in coverage.SLICE]
    assert {a.model_type for a in chosen} == set(coverage.SLICE)
    rows = coverage.sweep(chosen, {}, {a.model_type for a in chosen}, cache=False)
    assert set(rows) == set(coverage.SLICE)
    for name, row in rows.items():
        assert coverage.buildable(row), f"{name}: {row['stages'].get('build')}"
        assert row["stages"]["analyze"]["status"] == "pass", f"{name}: {row['stages']['analyze']}"
    bad = {
        name: {s: r["reason"] for s, r in row["stages"].items() if s in coverage.failed(row)}
        for name, row in rows.items()
        if coverage.failed(row)
    }
    assert not bad, bad
    # the slice exercises every kind of cut somewhere
    passed = {s for row in rows.values() for s, r in row["stages"].items() if r["status"] == "pass"}
    assert set(coverage.STAGES) <= passed, set(coverage.STAGES) - passed
