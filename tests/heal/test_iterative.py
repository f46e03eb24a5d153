"""Iterative pruning: K cuts with healing between, distilled from the original,
ending at the one-shot cut's size; the original is left as it was."""

from __future__ import annotations

import pytest
import torch

import surgeon
from surgeon.heal import Schedule
from tests.heal.conftest import TINY

CUT = {"criterion": "magnitude", "layers": 0, "allocation": "uniform", "progress": False}


def test_two_cuts_with_healing_reach_the_one_shot_size(teacher, ids):
    weights = {k: v.clone() for k, v in teacher.state_dict().items()}
    schedule = Schedule(ids, tokens=2 * 2 * 4 * 64, steps=2, options=TINY)
    result = surgeon.heal.iterative(teacher, 0.4, heal=schedule, **CUT)
    once = surgeon.prune(teacher, 0.4, **CUT)
    assert len(result.cuts) == len(result.heals) == 2
    assert [h.steps for h in result.heals] == [2, 2]
    first, last = (c.report.params_after for c in result.cuts)
    assert once.report.params_after < first and last == pytest.approx(
        once.report.params_after, rel=0.03
    )
    assert result.report.params_before == once.report.params_before
    assert result.model is result.heals[-1].model
    assert all(torch.equal(v, teacher.state_dict()[k]) for k, v in weights.items())
    assert "step 2/2: healed" in str(result)


def test_schedule_arguments_are_checked(teacher, ids):
    with pytest.raises(surgeon.InputError, match="steps must be a positive int"):
        Schedule(ids, tokens=100, steps=0)
    with pytest.raises(surgeon.InputError, match="exactly one of ratio"):
        surgeon.heal.iterative(teacher, heal=Schedule(ids, tokens=100), **CUT)


def test_prune_with_heal_runs_the_schedule(teacher, ids):
    schedule = Schedule(ids, tokens=4 * 64, steps=1, options={**TINY, "eval_every": 10**9})
    result = surgeon.prune(teacher, 0.3, heal=schedule, **CUT)
    assert len(result.cuts) == len(result.heals) == 1 and result.heals[0].steps == 1
    assert result.report.params_after < result.report.params_before
