"""Regression tests for the failures of the 10,000-example fuzz run with seed 0
(docs/reliability.md), each reduced to a small module, then replayed whole."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.plan.planner import PlanOptions, make_plan
from tests.fuzz.harness import cut_and_verify


class TransposedHeads(nn.Module):
    """``view(b, s, self.n_heads, -1)``: the head count is written, the head width inferred."""

    def __init__(self):
        super().__init__()
        self.n_heads = 2
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x):
        b, s, _ = x.shape
        y = torch.relu(self.inp(x).view(b, s, self.n_heads, -1))
        return self.out(y.transpose(2, 3).reshape(b, s, -1))


def test_a_size_written_beside_minus_one_is_kept_whole():
    """Fuzz seed 0, examples 2642, 5812, 8013, 8858: removing a head left
    ``n_heads`` at 2 and the -1 re-split the 4 kept channels into 2 x 2."""
    torch.manual_seed(0)
    model, x = TransposedHeads().eval(), torch.randn(2, 3, 4)
    analysis = surgeon.analyze(model, x)
    group = analysis.group("mlp")
    assert [lv.name for lv in group.levels] == ["u0", "u1"]
    ((level, why),) = group.whole_levels
    assert level == "u0" and "aten.view.default" in why and "beside a -1" in why
    assert "mlp level u0: aten.view.default" in analysis.summary()
    with pytest.raises(surgeon.PlanError, match="written into the code beside a -1"):
        surgeon.apply(model, {group.id: [4, 5, 6, 7]}, analysis=analysis)
    report, pruned, _ = cut_and_verify(model, x, {group.id: [0, 2, 4, 6]})  # the inferred level
    assert report.ok, str(report)
    assert pruned.inp.out_features == 4


class SplitAcrossAxes(nn.Module):
    """``view(b, s * 2, -1)``: the written ``s * 2`` takes a factor 2 of the channels."""

    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(8, 4)

    def forward(self, x):
        b, s, _ = x.shape
        y = torch.relu(self.inp(x).view(b, s * 2, -1))
        return self.out(y.reshape(b, s, -1))


def test_a_written_size_that_takes_a_factor_of_the_cut_axis_is_kept_whole():
    analysis = surgeon.analyze(SplitAcrossAxes().eval(), torch.randn(2, 3, 4))
    group = analysis.group("mlp")
    assert [(lv.name, lv.size) for lv in group.levels] == [("u0", 2), ("u1", 4)]
    assert [level for level, _ in group.whole_levels] == ["u0"]


class SummedHeads(nn.Module):
    """Heads summed without a weight (not mask-equivalent), sizes written in full."""

    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(4, 8), nn.Linear(2, 4)

    def forward(self, x):
        b, s, _ = x.shape
        return self.out(torch.sigmoid(self.inp(x).view(b, s, 4, 2)).sum(2))


class SummedHeadsBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.heads = SummedHeads()

    def forward(self, x):
        return x + self.heads(x)


class SummedHeadsStack(nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList([SummedHeadsBlock(), SummedHeadsBlock()])

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def test_verify_measures_an_inexact_group_with_the_plans_blocks_removed():
    """Fuzz seed 0, examples 3857, 5253, 8018: verify cut each inexact group
    alone to measure its error, without the plan's depth cut, so a group inside
    a removed block no longer ran and verify crashed with a RewriteError."""
    torch.manual_seed(0)
    model, x = SummedHeadsStack().eval(), torch.randn(2, 3, 4)
    plan = surgeon.Plan({"mlp@blocks.1.heads": [0, 1, 2, 3]}, ("blocks.1",))
    report, _, analysis = cut_and_verify(model, x, plan)
    assert not analysis.group("mlp@blocks.1.heads").mask_equivalent
    assert report.ok and report.inexact == {"mlp@blocks.1.heads": pytest.approx(0.0)}


class GatherToInputWidth(nn.Module):
    """An MoE that gathers its experts' outputs with an index expanded to the
    input's width (``d = h.shape[-1]``), not to the experts' output width."""

    def __init__(self):
        super().__init__()
        self.stem, self.router = nn.Linear(3, 4), nn.Linear(4, 2, bias=False)
        self.experts = nn.ModuleList(nn.Linear(4, 4) for _ in range(2))

    def forward(self, x):
        h = self.stem(x)
        d = h.shape[-1]
        chosen = self.router(h).argmax(-1, keepdim=True)
        outs = torch.stack([expert(h) for expert in self.experts], 1)
        return outs.gather(1, chosen.unsqueeze(-1).expand(-1, -1, d)).squeeze(1)


def test_an_output_that_changes_shape_is_refused_and_rolled_back():
    """Fuzz seed 0, example 8562: cutting the input stream shrank ``d``, so the
    gather read the first 11 of 13 output columns; the output shrank with it."""
    torch.manual_seed(0)
    model, x = GatherToInputWidth().eval(), torch.randn(5, 3)
    analysis = surgeon.analyze(model, x)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(surgeon.RewriteError, match=r"output 'output' changed shape"):
        # the stream through the stem and experts: one block, so an mlp-kind group
        surgeon.apply(model, {"mlp": [0, 1]}, inplace=True, analysis=analysis)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


class GatherPrefix(nn.Module):
    def __init__(self):
        super().__init__()
        self.inp, self.out = nn.Linear(3, 6), nn.Linear(4, 2)

    def forward(self, x):
        index = torch.zeros(x.shape[0], 4, dtype=torch.long, device=x.device)
        return self.out(self.inp(x).gather(0, index))


def test_a_gather_reading_a_prefix_freezes_the_axis():
    analysis = surgeon.analyze(GatherPrefix().eval(), torch.randn(5, 3))
    frozen = [g for g in analysis.frozen if "gather reads only its first 4" in g.frozen]
    assert [m.param for m in frozen[0].members] == ["inp.weight", "inp.bias"]


# The eight failures of the 10,000-example run (seed 0), replayed with their plans.
SEED0_FAILURES = {
    2642: (
        "Arch(family='seq', seed=28831, batch=2, length=3, features=4, width=9, layers=("
        "Heads(n=2, d=4, op='transpose', sizes='infer_d', act='relu', residual=False), "
        "Proj(out=10, act='silu', bias=False, via='einsum'), Heads(n=3, d=4, op='sum', "
        "sizes='infer_n', act='gelu', residual=True)), head=Head(pool='mean', proj='none', "
        "out=5, aux=''), trunk='attrs', positions=False, stem_via='einsum')",
        {"mlp": list(range(9)), "mlp@layer0": [4, 5, 6, 7], "mlp#2": [0, 2]},
        (),
    ),
    3857: (
        "Arch(family='seq', seed=29131, batch=2, length=4, features=5, width=16, layers=("
        "Stack(n=2, body=(Attn(kv=2, rep=3, head_dim=3, gqa='enable_gqa', impl='sdpa', "
        "causal=False, fused=False, qk_norm=False, sizes='infer', via='flinear', bias=False, "
        "residual=False), Heads(n=4, d=2, op='sum', sizes='infer_d', act='sigmoid', "
        "residual=False)), pre_norm=None), Heads(n=3, d=2, op='transpose', sizes='infer_n', "
        "act='softplus', residual=False), Proj(out=8, act='tanh', bias=True, via='einsum'), "
        "Mlp(hidden=6, act='softplus', gated=False, residual=True, via='module', bias=False)), "
        "head=Head(pool='mean', proj='matmul_t', out=5, aux='dict'), trunk='sequential', "
        "positions=False, stem_via='flinear')",
        {
            "attention@trunk.0.blocks.0.body.0": [0, 1, 2],
            "attention@trunk.0.blocks.1.body.0": [0, 1, 2, 3, 4, 5],
            "mlp@trunk.0.blocks.1.body": list(range(16)),
            "mlp@trunk.0.blocks.1.body.1": [0, 1, 4, 5, 6, 7],
            "mlp@trunk.1": [0, 1, 2, 3],
            "mlp@trunk": [3, 8, 11, 12, 13],
            "mlp@trunk.3": [0, 1, 2, 3, 4],
        },
        ("trunk.0.blocks.1",),
    ),
    5253: (
        "Arch(family='seq', seed=5904, batch=2, length=3, features=6, width=6, layers=("
        "Stack(n=3, body=(Heads(n=4, d=3, op='sum', sizes='infer_d', act='silu', "
        "residual=False),), pre_norm=Norm(kind='batch', groups=1)), Moe(experts=3, top_k=1, "
        "hidden=5, style='einsum', act='tanh', renorm=False, router='flinear', residual=True, "
        "pick='gather'), Heads(n=3, d=3, op='sum', sizes='infer_d', act='sigmoid', "
        "residual=False)), head=Head(pool='none', proj='flinear', out=1, aux='tuple'), "
        "trunk='modulelist', positions=False, stem_via='einsum')",
        {"hidden": [0, 1, 2, 3, 4], "mlp@trunk.0.blocks.2.body.0": [6, 7]},
        ("trunk.0.blocks.2",),
    ),
    5812: (
        "Arch(family='seq', seed=46257, batch=2, length=5, features=3, width=14, layers=("
        "Heads(n=2, d=4, op='transpose', sizes='infer_d', act='relu', residual=False), "
        "Proj(out=6, act='relu', bias=True, via='matmul_t'), Split(half=3, mode='unbind', "
        "combine='mul')), head=Head(pool='none', proj='linear', out=5, aux=''), "
        "trunk='modulelist', positions=False, stem_via='module')",
        {"mlp@trunk.0": [0, 1, 2, 3]},
        (),
    ),
    8013: (
        "Arch(family='tokens', seed=35610, batch=2, length=6, features=14, width=12, layers=("
        "Heads(n=2, d=4, op='transpose', sizes='infer_d', act='identity', residual=False), "
        "Mlp(hidden=4, act='silu', gated=True, residual=False, via='matmul', bias=False)), "
        "head=Head(pool='none', proj='none', out=6, aux=''), trunk='sequential', "
        "positions=False, stem_via='module')",
        {
            "hidden": [4, 10],
            "mlp@trunk.0": [4, 5, 6, 7],
            "mlp@trunk": [0, 1, 2, 3, 4, 6, 7, 9, 11],
            "mlp@trunk.1": [2, 3],
        },
        (),
    ),
    8018: (
        "Arch(family='seq', seed=4049, batch=2, length=5, features=5, width=11, layers=("
        "Split(half=5, mode='chunk', combine='swap_cat'), Mlp(hidden=14, act='gelu', "
        "gated=True, residual=False, via='module', bias=False), Split(half=8, "
        "mode='split_int', combine='gate'), Stack(n=2, body=(Heads(n=4, d=4, op='sum', "
        "sizes='infer_d', act='softplus', residual=False),), pre_norm=Norm(kind='rms', "
        "groups=1))), head=Head(pool='mean', proj='matmul_t', out=2, aux='dict'), "
        "trunk='sequential', positions=False, stem_via='matmul_t')",
        {
            "mlp": [0, 1, 7, 9, 10],
            "mlp@trunk.1": [0, 1, 2, 3, 7, 8, 10, 11, 13],
            "mlp@trunk.3.blocks.1.body.0": [4, 5, 7, 8, 9, 11, 12, 13, 15],
        },
        ("trunk.3.blocks.1",),
    ),
    8562: (
        "Arch(family='seq', seed=50162, batch=2, length=3, features=7, width=13, layers=("
        "Moe(experts=5, top_k=2, hidden=6, style='modulelist', act='silu', renorm=False, "
        "router='module', residual=False, pick='gather'),), head=Head(pool='none', "
        "proj='none', out=6, aux='tuple'), trunk='sequential', positions=False, "
        "stem_via='einsum')",
        {
            "hidden": [0, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12],
            "mlp@trunk.0.experts.0": [0, 1, 4, 5],
            "mlp@trunk.0.experts.1": [0, 1, 3, 4],
            "mlp@trunk.0.experts.4": [0, 1, 2, 3, 4, 5],
        },
        (),
    ),
    8858: (
        "Arch(family='tokens', seed=42369, batch=2, length=4, features=15, width=8, layers=("
        "Norm(kind='layer', groups=1), Heads(n=2, d=4, op='transpose', sizes='infer_d', "
        "act='tanh', residual=False)), head=Head(pool='mean', proj='flinear', out=5, aux=''), "
        "trunk='modulelist', positions=True, stem_via='module')",
        {"mlp": list(range(8)), "mlp@trunk.1": [4, 5, 6, 7]},
        (),
    ),
}


@pytest.mark.parametrize("index", sorted(SEED0_FAILURES))
def test_the_seed0_fuzz_failures_now_verify_or_are_refused(index):
    from tests.fuzz import spec as spec_module
    from tests.fuzz.build import build
    from tests.fuzz.harness import check
    from tests.fuzz.plans import Trial

    text, keep, blocks = SEED0_FAILURES[index]
    spec = eval(text, vars(spec_module))  # a spec's repr is valid Python over these names
    outcome = check(build(spec), lambda analysis: Trial(surgeon.Plan(keep, blocks)))
    assert not outcome.failed, outcome.describe()
    assert outcome.status == "refused"


def test_the_planner_leaves_groups_with_a_whole_level_alone():
    """Its flat units would cut the level the code keeps whole: plans would be refused."""
    model, x = TransposedHeads().eval(), torch.randn(2, 3, 4)
    analysis = surgeon.analyze(model, x)
    scores = {g.id: torch.arange(g.size, dtype=torch.float64) for g in analysis.prunable}
    plan = make_plan(analysis, scores, PlanOptions(ratio=0.3, kinds=("mlp",)))
    assert analysis.group("mlp").whole_levels and plan.keep == {}
