"""Widths a module keeps for its parent's forward (attribute_table.READ_FROM_ABOVE):
RAFT splits its context encoder's output by ``update_block.hidden_state_size``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.rewriters import attribute_table


class _Gru(nn.Module):
    def __init__(self, state: int, inputs: int) -> None:
        super().__init__()
        self.convz = nn.Conv2d(state + inputs, state, 1)
        self.convq = nn.Conv2d(state + inputs, state, 1)

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(self.convz(hx))
        return (1 - z) * h + z * torch.tanh(self.convq(hx))


class _Update(nn.Module):
    """Keeps its GRU's state width for the parent, as RAFT's UpdateBlock does; its
    motion features are as wide, so the width alone does not say which group it is."""

    def __init__(self, state: int) -> None:
        super().__init__()
        self.motion = nn.Conv2d(2, state, 1)
        self.gru = _Gru(state, 2 * state)
        self.head = nn.Conv2d(state, 2, 1)
        self.state_size = state

    def forward(self, h, context, flow):
        h = self.gru(h, torch.cat([context, torch.relu(self.motion(flow))], dim=1))
        return h, self.head(h)


class _Raft(nn.Module):
    def __init__(self, state: int = 16) -> None:
        super().__init__()
        self.context = nn.Conv2d(3, 2 * state, 3, padding=1)
        self.update = _Update(state)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        out = self.context(image)
        size = self.update.state_size
        h, context = torch.split(out, [size, out.shape[1] - size], dim=1)
        h, context = torch.tanh(h), torch.relu(context)
        flow = torch.zeros_like(image[:, :2])
        for _ in range(2):
            h, delta = self.update(h, context, flow)
            flow = flow + delta
        return flow


@pytest.fixture
def listed(monkeypatch):
    key = f"{_Update.__module__}.{_Update.__qualname__}"
    table = {**attribute_table.READ_FROM_ABOVE, key: {"state_size": "gru.convz.weight"}}
    monkeypatch.setattr(attribute_table, "READ_FROM_ABOVE", table)


def _cut(model, analysis, member):
    group = next(
        g
        for g in analysis.prunable
        if any(m.param == member and m.dim == 0 and m.layout.kind == "unit" for m in g.members)
    )
    plan = surgeon.Plan.for_analysis(analysis, {group.id: list(range(0, group.size, 2))})
    return surgeon.apply(model, plan, analysis=analysis), plan


def test_a_cut_of_the_state_sets_the_width_the_parent_splits_by(listed):
    torch.manual_seed(0)
    model = _Raft().eval()
    image = torch.randn(1, 3, 8, 8)
    analysis = surgeon.analyze(model, inputs=image)
    pruned, plan = _cut(model, analysis, "update.gru.convz.weight")
    assert pruned.update.state_size == 8
    assert surgeon.verify(model, pruned, plan, analysis=analysis, inputs=image).ok


def test_another_group_as_wide_leaves_it(listed):
    torch.manual_seed(0)
    model = _Raft().eval()
    image = torch.randn(1, 3, 8, 8)
    analysis = surgeon.analyze(model, inputs=image)
    pruned, plan = _cut(model, analysis, "update.motion.weight")
    assert pruned.update.state_size == 16
    assert surgeon.verify(model, pruned, plan, analysis=analysis, inputs=image).ok


def test_torchvision_raft_is_listed():
    raft = pytest.importorskip("torchvision.models.optical_flow.raft")
    model = raft.raft_small(weights=None).eval()
    source = attribute_table.READ_FROM_ABOVE[
        f"{raft.UpdateBlock.__module__}.{raft.UpdateBlock.__qualname__}"
    ]["hidden_state_size"]
    assert model.update_block.get_parameter(source).shape[0] == (
        model.update_block.hidden_state_size
    )
