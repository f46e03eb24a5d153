"""Every failure the fuzzer found, shrunk to a tiny model: each must now verify
or be refused before anything changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from tests.fuzz.harness import cut_and_verify


class Res(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return x + self.fc(x)


class MixedContainer(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(4, 4), Res(), Res()])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def test_a_depth_cut_removes_the_named_child_of_a_mixed_container():
    torch.manual_seed(0)
    model = MixedContainer().eval()
    report, pruned, analysis = cut_and_verify(
        model, torch.randn(2, 4), surgeon.Plan(remove_blocks=("layers.2",))
    )
    assert [(b.name, b.index) for b in analysis.blocks] == [("layers.1", 1), ("layers.2", 2)]
    assert report.ok and torch.equal(pruned.layers[1].fc.weight, model.layers[1].fc.weight)


def test_a_depth_cut_of_the_root_container():
    torch.manual_seed(0)
    model = nn.Sequential(Res(), Res()).eval()
    report, pruned, _ = cut_and_verify(model, torch.randn(2, 4), surgeon.Plan(remove_blocks=("1",)))
    assert report.ok and [name for name, _ in pruned.named_children()] == ["0"]


class Nested(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.ModuleList([Res(), Res()])

    def forward(self, x):
        h = x
        for layer in self.body:
            h = layer(h)
        return x + h


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([Nested(), Nested()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


@pytest.mark.parametrize(
    "blocks", [("blocks.0", "blocks.0.body.1"), ("blocks.0", "blocks.1.body.1")]
)
def test_nested_blocks_are_removed_innermost_first(blocks):
    torch.manual_seed(0)
    report, _, _ = cut_and_verify(
        Outer().eval(), torch.randn(2, 4), surgeon.Plan(remove_blocks=blocks)
    )
    assert report.ok


class Moe(nn.Module):
    def __init__(self, style):
        super().__init__()
        self.style, self.router = style, nn.Linear(4, 3, bias=False)
        if style == "modulelist":
            self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))
        else:
            self.w = nn.Parameter(torch.randn(3, 4, 4))

    def forward(self, x):
        weights, chosen = torch.softmax(self.router(x), -1).topk(1, dim=-1)
        if self.style == "modulelist":
            outs = torch.stack([expert(x) for expert in self.experts], dim=1)
            picked = outs[torch.arange(x.shape[0]).unsqueeze(1), chosen]
        else:
            outs = torch.einsum("td,edo->teo", x, self.w)
            picked = outs.gather(1, chosen.unsqueeze(-1).expand(-1, -1, 4))
        return (picked * weights.unsqueeze(-1)).sum(1)


def test_expanded_top_k_indices_couple_router_rows_with_the_experts():
    torch.manual_seed(0)
    model, x = Moe("einsum").eval(), torch.randn(6, 4)
    analysis = surgeon.analyze(model, x)
    (group,) = [
        g
        for g in analysis.prunable
        if ("router.weight", 0) in {(m.param, m.dim) for m in g.members}
    ]
    assert ("w", 0) in {(m.param, m.dim) for m in group.members}
    report, _, _ = cut_and_verify(model, x, {group.id: [0, 2]})
    assert report.ok


def test_router_rows_over_stacked_expert_modules_are_frozen():
    torch.manual_seed(0)
    analysis = surgeon.analyze(Moe("modulelist").eval(), torch.randn(6, 4))
    router = next(
        g
        for g in analysis.groups
        if g.members[0].param == "router.weight" and g.members[0].dim == 0
    )
    assert "stacks 3 separate tensors" in router.frozen


class SoftmaxMlp(nn.Module):
    def __init__(self):
        super().__init__()
        self.w_up, self.down = nn.Parameter(torch.randn(4, 6)), nn.Linear(6, 4)

    def forward(self, x):
        return self.down(torch.softmax(x @ self.w_up, dim=-1))


class GatedSoftmax(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate, self.up, self.down = nn.Linear(4, 6), nn.Linear(4, 6), nn.Linear(6, 4)

    def forward(self, x):
        return self.down(torch.softmax(self.gate(x), dim=-1) * self.up(x))


@pytest.mark.parametrize(
    "model_class, router", [(SoftmaxMlp, "w_up"), (GatedSoftmax, "gate.weight")]
)
def test_only_the_router_is_masked_with_minus_infinity(model_class, router):
    torch.manual_seed(0)
    model, x = model_class().eval(), torch.randn(3, 4)
    analysis = surgeon.analyze(model, x)
    (group,) = analysis.prunable
    assert group.routers == (router,)
    report, _, _ = cut_and_verify(model, x, {group.id: [0, 1, 2]})
    assert report.ok, str(report)


class SwapHalves(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(3, 6), nn.Linear(6, 2)

    def forward(self, x):
        a, b = self.inp(x).chunk(2, dim=-1)
        return self.out(torch.cat([b, a], dim=-1))


def test_chunk_pieces_in_different_groups_are_frozen():
    analysis = surgeon.analyze(SwapHalves().eval(), torch.randn(4, 3))
    assert not analysis.prunable
    assert all("splits into equal pieces" in g.frozen for g in analysis.frozen if g.kind == "mlp")


class NarrowBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.out = nn.Linear(2, 1), nn.Linear(2, 3), nn.Linear(4, 2)

    def forward(self, x):
        return self.out(torch.cat([self.a(x), self.b(x)], dim=-1))


def test_a_width_one_concat_branch_keeps_its_offset():
    model, x = NarrowBranch().eval(), torch.randn(3, 2)
    analysis = surgeon.analyze(model, x)
    assert str(analysis.group("mlp").members[-1].layout) == "[1 | unit(3)]"
    report, pruned, _ = cut_and_verify(model, x, {"mlp": [0, 2]})
    assert report.ok and pruned.out.in_features == 3


class DepthwiseAfterConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv1d(2, 2, 1), nn.Conv1d(2, 4, 1)
        self.dw = nn.Conv1d(6, 6, 3, padding=1, groups=6)
        self.out = nn.Conv1d(6, 2, 1)

    def forward(self, x):
        return self.out(self.dw(torch.cat([self.a(x), self.b(x)], dim=1)))


def test_a_single_kept_unit_is_refused_because_broadcasting_would_hide_errors():
    model = NarrowBranch().eval()
    analysis = surgeon.analyze(model, torch.randn(3, 2))
    with pytest.raises(surgeon.PlanError, match="keeps a single unit"):
        surgeon.apply(model, {"mlp": [1]}, analysis=analysis)


def test_a_depthwise_convolution_after_a_concat_stays_depthwise():
    torch.manual_seed(0)
    report, pruned, _ = cut_and_verify(
        DepthwiseAfterConcat().eval(), torch.randn(2, 2, 5), {"channels#2": [0, 3]}
    )
    assert report.ok and (pruned.dw.groups, pruned.dw.in_channels) == (4, 4)
