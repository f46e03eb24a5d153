"""The sweep's own random cuts (bench/coverage_plans.py) keep what the planner
accepts: a channel axis never down to one unit (resolve refuses that, since an
axis of size 1 broadcasts silently); attention levels may keep one head."""

import random
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import coverage_plans  # noqa: E402

from surgeon import Group, GroupKind, Layout, Level, Member  # noqa: E402


def _group(kind: GroupKind, size: int) -> Group:
    member = Member("fc.weight", 0, Layout("unit", size, level="unit"), "fc", (size, 3))
    return Group(f"{kind}@fc", kind, (Level("unit", size),), (member,))


def test_a_random_channel_cut_keeps_two_units_or_none():
    rng = random.Random(0)
    assert coverage_plans.half(_group(GroupKind.CHANNELS, 2), "unit", rng) is None
    assert len(coverage_plans.half(_group(GroupKind.CHANNELS, 3), "unit", rng)) == 2
    assert len(coverage_plans.half(_group(GroupKind.MLP, 8), "unit", rng)) == 4


def test_an_attention_level_may_keep_one_head():
    kept = coverage_plans.half(_group(GroupKind.ATTENTION, 2), "unit", random.Random(0))
    assert kept is not None and len(kept) == 1
