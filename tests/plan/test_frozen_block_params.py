"""A frozen group's parameters are block parameters: the cut groups carry the
target (torchvision's Swin, whose heads are written into its code, is cut by the
same share as timm's, whose heads could be cut)."""

from __future__ import annotations

import torch
from torch import nn

import surgeon
from surgeon.plan.planner import PlanOptions, block_parameters, make_plan


class _TwoMlps(nn.Module):
    """Two pre-norm MLPs; the first rolls its inner channels (a cut could not
    follow the roll), so its group is frozen."""

    def __init__(self) -> None:
        super().__init__()
        self.norm_a, self.norm_b = nn.LayerNorm(16), nn.LayerNorm(16)
        self.a1, self.a2 = nn.Linear(16, 64), nn.Linear(64, 16)
        self.b1, self.b2 = nn.Linear(16, 64), nn.Linear(64, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inner = torch.roll(self.a1(self.norm_a(x)).relu(), 1, dims=-1)
        x = x + self.a2(inner)
        return x + self.b2(self.b1(self.norm_b(x)).relu())


def test_a_frozen_mlp_counts_and_the_cut_one_carries_the_target():
    torch.manual_seed(0)
    model = _TwoMlps()
    analysis = surgeon.analyze(model, inputs=torch.randn(2, 5, 16))
    assert any(g.kind == "mlp" and "a1" in g.touching for g in analysis.frozen)
    cut = next(g for g in analysis.prunable if any(m.module == "b1" for m in g.members))
    first = model.a1.weight.numel() + model.a1.bias.numel() + model.a2.weight.numel()
    assert block_parameters(analysis) == first + cut.params_covered  # not the norms, nor a2.bias
    scores = {cut.id: torch.rand(cut.size, dtype=torch.float64)}
    plan = make_plan(analysis, scores, PlanOptions(ratio=0.25, round_to=1))
    # a quarter of both MLPs' parameters, all from the one that can be cut: half of it
    assert len(plan.keep[cut.id]) == cut.size // 2
