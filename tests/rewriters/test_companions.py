"""Buffers the forward never reads that mirror a cut parameter (I-BERT's
``QuantLinear`` outside quantisation mode) are cut with it, so the cut model's
state is what its config rebuilds."""

import torch
from torch import nn

import surgeon


class QuantLinear(nn.Linear):
    """Keeps integer copies of its weight and bias that only a quantised forward reads."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__(inputs, outputs)
        self.register_buffer("weight_integer", torch.arange(outputs * inputs).view(outputs, inputs))
        self.register_buffer("bias_integer", torch.arange(outputs))
        self.register_buffer("scaling_factor", torch.ones(1))


class Mlp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = QuantLinear(8, 6)
        self.down = QuantLinear(6, 8)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def test_unread_buffers_are_cut_like_the_parameter_they_mirror():
    torch.manual_seed(0)
    model = Mlp().eval()
    x = torch.randn(2, 8)
    analysis = surgeon.analyze(model, x)
    group = analysis.by_kind("mlp")[0]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: [1, 4, 5]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    rows = torch.arange(48).view(6, 8)
    assert torch.equal(pruned.up.weight_integer, rows[[1, 4, 5]])
    assert torch.equal(pruned.up.bias_integer, torch.tensor([1, 4, 5]))
    assert torch.equal(pruned.down.weight_integer, torch.arange(48).view(8, 6)[:, [1, 4, 5]])
    assert pruned.down.bias_integer.shape == (8,)  # mirrors the bias, which keeps 8
    assert pruned.up.scaling_factor.shape == (1,)  # mirrors nothing
    assert model.up.weight_integer.shape == (6, 8)  # the original is untouched
    assert surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis).ok


class IndexedLinear(nn.Linear):
    """A buffer shaped like the weight that the forward reads (LeViT's
    attention_bias_idxs beside its attention_biases): not a companion."""

    def __init__(self, inputs: int, outputs: int) -> None:
        super().__init__(inputs, outputs)
        self.register_buffer("idx", torch.randint(0, 3, (outputs, inputs)))
        self.register_buffer("table", torch.randn(3))

    def forward(self, x):
        return super().forward(x) + self.table[self.idx].sum()


def test_a_buffer_the_forward_reads_is_not_cut_as_a_companion():
    torch.manual_seed(0)
    model = nn.Sequential(IndexedLinear(8, 6), nn.ReLU(), nn.Linear(6, 8)).eval()
    x = torch.randn(2, 8)
    analysis = surgeon.analyze(model, x)
    assert "0.idx" in analysis.read
    group = analysis.by_kind("mlp")[0]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: [0, 2, 4]}, ())
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned[0].weight.shape == (3, 8) and pruned[0].idx.shape == (6, 8)
    assert surgeon.verify(model, pruned, plan, inputs=x, analysis=analysis).ok
