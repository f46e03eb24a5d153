"""Python control flow on a tensor's value (Longformer's "any global
attention?") stops torch.export; the capture then runs the example inputs for
real (torch.export.draft_export), follows their branch, and says so."""

import sys
from pathlib import Path

import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from coverage_models import Architecture, build  # noqa: E402

import surgeon  # noqa: E402


class Branchy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 16)
        self.down = nn.Linear(16, 8)

    def forward(self, x):
        h = torch.relu(self.up(x))
        if (x[:, 0] > 0).any():  # a branch on values: export cannot decide it
            h = h * 2
        return self.down(h)


def test_a_branch_on_values_is_captured_along_the_examples_and_named():
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(4, 8)
    analysis = surgeon.analyze(model, inputs=x)
    assert analysis.capture_method.startswith("draft_export")
    assert "test_draft_capture.py" in analysis.capture_method
    assert "if (x[:, 0] > 0).any()" in analysis.capture_method
    (group,) = [g for g in analysis.prunable if g.size == 16]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: list(range(0, 16, 2))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.up.out_features == 8
    assert surgeon.verify(model, pruned, plan, analysis=analysis, inputs=x).ok


class Narrow(nn.Module):
    def forward(self, h):
        return h.reshape(h.shape[0], 7)  # a width written in the code: 16 does not fit


class BranchThenBroken(Branchy):
    def __init__(self) -> None:
        super().__init__()
        self.narrow = Narrow()

    def forward(self, x):
        h = self.up(x)
        if (x[:, 0] > 0).any():
            h = h * 2
        return self.narrow(h)


def test_a_run_past_the_branch_names_where_it_stopped():
    # the draft export ran the inputs past the branch: its failure is the cause to
    # name (the post-cut check reports it), not export's stop at the branch
    model = BranchThenBroken().eval()
    with pytest.raises(surgeon.CaptureError) as caught:
        surgeon.analyze(model, inputs=torch.randn(4, 8))
    assert caught.value.module == "narrow"
    assert "shape '[4, 7]' is invalid" in caught.value.cause


class Routed(nn.Module):
    """An expert loop routing tokens by torch.where (LongCat-Flash, Switch)."""

    def __init__(self) -> None:
        super().__init__()
        self.router = nn.Linear(8, 3)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(8, 12), nn.Linear(12, 8)) for _ in "abc"
        )

    def forward(self, x):
        top = self.router(x).topk(2, dim=-1).indices  # (tokens, 2)
        mask = nn.functional.one_hot(top, 3).permute(2, 1, 0)  # (experts, 2, tokens)
        out = torch.zeros_like(x)
        for hit in mask.sum((-1, -2)).nonzero():
            expert = int(hit.item())
            _, tokens = torch.where(mask[expert])
            out = out.index_add(0, tokens, self.experts[expert](x[tokens]))
        return out


def test_an_expert_loop_routing_by_where_is_captured_along_the_examples():
    torch.manual_seed(0)
    model = Routed().eval()
    analysis = surgeon.analyze(model, inputs=torch.randn(16, 8))
    assert analysis.capture_method.startswith("draft_export")
    assert "test_draft_capture.py" in analysis.capture_method
    assert " capture.py" not in analysis.capture_method  # not the where as nonzero
    assert any(g.size == 12 for g in analysis.prunable)


class Skipping(nn.Module):
    """Tokens routed by value; the second expert reads the hidden size too."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(10, 8)
        self.experts = nn.ModuleList(nn.Linear(8, 8) for _ in "ab")
        self.unused = nn.Linear(8, 8)  # never called: no branch the examples skipped
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = self.embed(x)
        expert = self.experts[1] if (x[:, 0] > 4).all() else self.experts[0]
        return self.head(h + expert(h))  # a residual stream: the hidden size


def test_a_parameter_the_examples_branched_past_freezes_the_hidden_size():
    analysis = surgeon.analyze(Skipping().eval(), inputs=torch.randint(0, 5, (3, 4)))
    (hidden,) = analysis.by_kind("hidden")
    assert "never reached 'experts.1.weight'" in hidden.frozen
    assert "unused" not in hidden.frozen


class Sampled(nn.Module):
    """BLT's patcher: a distribution over its logits, positions picked by a mask."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(8, 12), nn.Linear(12, 8)

    def forward(self, x):
        entropy = torch.distributions.Categorical(logits=x).entropy()  # validates its logits
        h = torch.relu(self.up(x))[entropy > 0]  # (positions picked, 12)
        return self.down(h)


def test_a_distribution_and_a_boolean_mask_capture():
    analysis = surgeon.analyze(Sampled().eval(), inputs=torch.randn(2, 5, 8))
    assert [g.size for g in analysis.prunable] == [12]
    assert torch.distributions.Distribution._validate_args  # restored


class Pooled(nn.Module):
    """BLT's patch_reduce: bytes' features scattered (amax) into their patches."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = nn.Linear(8, 12), nn.Linear(12, 8)

    def forward(self, x, patch):  # x: (batch, bytes, 8), patch: (batch, bytes)
        h = self.up(x)
        index = patch.unsqueeze(-1).expand(-1, -1, h.shape[-1])
        pooled = torch.zeros(x.shape[0], 3, 12).scatter_reduce(
            1, index, h, reduce="amax", include_self=False
        )
        return self.down(pooled)


def test_scattered_features_stay_the_same_axis():
    patch = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 1, 2]])
    analysis = surgeon.analyze(Pooled().eval(), inputs=(torch.randn(2, 5, 8), patch))
    (group,) = [g for g in analysis.prunable if g.size == 12]
    assert {"up.weight", "down.weight"} <= set(group.params)


def test_experts_picked_by_name_with_a_single_routed_token_capture():
    """SwitchTransformers' loop picks each expert hit by name
    (``self[f"expert_{expert_idx[0]}"]``) and gathers its tokens by
    ``hidden[None, top_x]``, a (1, 1, d) tensor where one token is routed to
    it, which torch's draft export refused as not dense."""
    model = build(
        Architecture(
            "switch_transformers", "SwitchTransformersForConditionalGeneration", "seq2seq-lm"
        )
    )
    analysis = surgeon.analyze(model)
    assert analysis.capture_method.startswith("draft_export")
    assert 'self[f"expert_{expert_idx[0]}"]' in analysis.capture_method
    assert {"attention", "mlp"} <= {str(g.kind) for g in analysis.prunable}
