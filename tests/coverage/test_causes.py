"""One architecture per failure cause that the coverage sweep found and that is
now mended at its root: each runs every stage of the sweep (bench/coverage.py)
in its own forked process and must pass every stage that applies to it."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import coverage  # noqa: E402
import coverage_stages  # noqa: E402

# model type -> the cause its row used to fail on
CAUSES = {
    # head-structured groups outside an attention: the sparse-attention indexer
    # reshapes its queries by ``n_heads``, which was left at the old count
    "deepseek_v32": "indexer heads counted by an attribute (n_heads)",
    # a hidden cut updates the widths the code reads under less common names
    "granitemoe_swa": "experts reshape their output by input_size",
    "cpmant": "the norm checks its input against dim_norm",
    # hyper-connections: the residual stream is hidden x streams (two levels);
    # the router reads hidden_dim, which only the hidden level changes
    "hy_v4": "hidden level of a hidden x streams group",
}


@pytest.fixture(scope="module")
def architectures():
    coverage_stages.prepare()
    return {a.model_type: a for a in coverage.discover()}


@pytest.mark.parametrize("model_type", sorted(CAUSES))
def test_every_stage_passes(architectures, model_type):
    row = coverage.run_model(architectures[model_type], timeout=600)
    assert coverage.buildable(row), row["stages"].get("build")
    bad = {s: r["reason"] for s, r in coverage.applicable(row).items() if r["status"] != "pass"}
    assert not bad, f"{model_type} ({CAUSES[model_type]}): {bad}"
