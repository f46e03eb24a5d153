"""The learning rate and the data order are functions of the step alone."""

from __future__ import annotations

import math

import pytest
import torch

from surgeon.heal.options import DEFAULT_LORA_LR, DEFAULT_LR, HealOptions
from surgeon.heal.schedule import DataOrder, learning_rate


def test_warm_up_then_cosine_to_the_floor():
    options = HealOptions(lr=1e-3, warmup=0.1, min_lr=0.1)
    rates = [learning_rate(options, step, 100) for step in range(100)]
    assert rates[0] == pytest.approx(1e-4) and rates[9] == pytest.approx(1e-3)
    assert rates[10] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert rates[55] == pytest.approx(1e-4 + 0.9e-3 * 0.5 * (1 + math.cos(math.pi * 45 / 89)))
    assert all(a >= b for a, b in zip(rates[10:], rates[11:], strict=False))
    linear = HealOptions(lr=1e-3, warmup=0.0, schedule="linear", min_lr=0.0)
    assert learning_rate(linear, 50, 101) == pytest.approx(0.5e-3)
    assert learning_rate(HealOptions(lr=1e-3, schedule="constant"), 90, 100) == 1e-3


def test_defaults_differ_for_lora():
    assert HealOptions().peak_lr == DEFAULT_LR and HealOptions(lora=True).peak_lr == DEFAULT_LORA_LR
    assert HealOptions(lora=True, lr=1e-4).peak_lr == 1e-4


def test_every_epoch_visits_each_row_once_in_a_seeded_order():
    order = DataOrder(rows=10, batch=4, seed=7)
    seen = torch.cat([order.step(s) for s in range(5)])  # 20 rows: two epochs
    assert sorted(seen[:10].tolist()) == list(range(10)) == sorted(seen[10:].tolist())
    assert not torch.equal(seen[:10], seen[10:])
    again = DataOrder(rows=10, batch=4, seed=7)
    assert torch.equal(again.step(3), order.step(3))  # any step, in any order
    assert not torch.equal(DataOrder(10, 4, seed=8).step(0), order.step(0))
