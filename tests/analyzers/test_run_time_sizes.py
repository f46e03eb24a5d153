"""Data-dependent sizes (tokens split per expert by counts known only at run
time) leave the token axis whole and every other axis to its rules: analysis
neither crashes on them nor freezes the widths they pass through."""

import torch
from torch import nn

import surgeon


class Routed(nn.Module):
    """Tokens chosen by a gate, split by a run-time count, and added back."""

    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.gate = nn.Linear(8, 2)
        self.down = nn.Linear(16, 8)

    def forward(self, x):
        h = torch.relu(self.up(x))
        chosen = (self.gate(x)[:, 0] > 0).nonzero().squeeze(-1)  # a run-time count
        picked = h[chosen]
        first, second = torch.split(picked, [1, picked.shape[0] - 1])
        routed = torch.cat([first * 3, second * 2])
        h = h.index_add(0, chosen, routed)
        return self.down(h)


def test_run_time_split_keeps_the_width_prunable():
    torch.manual_seed(0)
    model = Routed().eval()
    x = torch.randn(12, 8)
    analysis = surgeon.analyze(model, inputs=x)
    widths = [g for g in analysis.prunable if g.size == 16]
    assert len(widths) == 1, [(g.id, g.size, g.frozen) for g in analysis.groups]
    keep = {widths[0].id: list(range(0, 16, 2))}
    plan = surgeon.Plan.for_analysis(analysis, keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.up.out_features == 8 and pruned.down.in_features == 8
    assert surgeon.verify(model, pruned, plan, analysis=analysis, inputs=x).ok
