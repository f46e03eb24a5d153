"""Mamba-2 style mixers and gated delta nets split a fused projection by widths
they computed at build time; a cut updates every one of them
(surgeon/rewriters/state_space.py), so the cut runs and verifies (each row:
every sweep stage, as in test_causes.py)."""

import pytest

from tests.coverage.test_causes import architectures, check, run_rows  # noqa: F401

# model type -> the cause its row used to fail on, and the stages it broke
CAUSES = {
    # heads x head_dim with one B/C group per head: num_heads, n_groups,
    # intermediate_size, conv_dim, ssm_state_size
    "mamba2": ("in_proj split by intermediate_size, conv_dim, num_heads", ("widths", "prune")),
    # one B/C group for every head: the state is a group of its own, and conv1d's
    # width (conv_dim) is what both cuts leave
    "bamba": ("conv_dim shared by the heads' and the state's groups", ("widths", "prune")),
    "falcon_h1": ("conv_dim shared by the heads' and the state's groups", ("widths", "prune")),
    # B/C groups x heads per group x head_dim x state: the norm's group_size
    "nemotron_h": ("num_heads is groups x heads per group", ("widths", "prune")),
    # the gated delta net splits q, k, v by key_dim and value_dim
    "olmo_hybrid": ("linear attention split by key_dim, value_dim", ("kv-groups",)),
}


@pytest.fixture(scope="module")
def rows(architectures):  # noqa: F811 - the fixture
    return run_rows(architectures, CAUSES)


@pytest.mark.parametrize("model_type", sorted(CAUSES))
def test_every_stage_passes(rows, model_type):
    check(rows[model_type], model_type, *CAUSES[model_type])
