"""Every zoo model called the user's way: a tokenizer's BatchEncoding with a
padding mask, a dict without ``use_cache``, a plain tensor. Each gives the
groups the derived inputs give, and a cut verified on those inputs passes
with a check that can see the cut."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.analyzers.untouched import diff, state_of
from surgeon.verify import WEAK_POWER
from tests.analyzers.test_zoo import table
from tests.zoo import HF_MODELS, VOCAB


def user_inputs(name: str, model) -> dict[str, object]:
    """What a user has at hand for ``model``: tokenizer or image processor
    output, a bare dict, a bare tensor (or an (args, kwargs) pair)."""
    generator = torch.Generator().manual_seed(0)
    if name == "vit":
        pixels = torch.randn(2, 3, 32, 32, generator=generator)
        return {
            "BatchFeature": hf.BatchFeature({"pixel_values": pixels}),
            "dict": {"pixel_values": pixels},
            "tensor": pixels,
        }
    ids = torch.randint(0, VOCAB, (2, 8), generator=generator)
    mask = torch.ones_like(ids)
    mask[0, :3] = 0  # left padding
    batch = {"input_ids": ids, "attention_mask": mask}
    if model.config.is_encoder_decoder:
        batch["decoder_input_ids"] = ids
        return {
            "BatchEncoding": hf.BatchEncoding(batch),
            "dict": {"input_ids": ids, "decoder_input_ids": ids},
            "(args, kwargs)": ((ids,), {"decoder_input_ids": ids}),
        }
    return {"BatchEncoding": hf.BatchEncoding(batch), "dict": {"input_ids": ids}, "tensor": ids}


@pytest.mark.parametrize("name", sorted(HF_MODELS))
def test_user_style_inputs_give_the_derived_groups_and_a_verified_cut(name):
    model = HF_MODELS[name]()
    expected = table(surgeon.analyze(model))
    before = state_of(model)
    for style, inputs in user_inputs(name, model).items():
        analysis = surgeon.analyze(model, inputs)
        assert table(analysis) == expected, style
    assert not diff(before, state_of(model))
    # a cut verified on the first style (BatchEncoding / BatchFeature)
    inputs = next(iter(user_inputs(name, model).values()))
    group = next(g for g in analysis.prunable if g.kind.value in ("mlp", "expert_mlp"))
    plan = surgeon.Plan.for_analysis(analysis, {group.id: list(range(0, group.size, 2))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    after_apply = state_of(pruned)
    report = surgeon.verify(model, pruned, plan, inputs, analysis=analysis)
    assert report.ok, str(report)
    assert report.max_rel <= report.tolerance
    assert report.power > WEAK_POWER * report.tolerance and not report.weak
    assert not diff(before, state_of(model))
    assert not diff(after_apply, state_of(pruned))


class StateCache:
    """A cache object a plain model returns beside its output."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state


class ReturnsCache(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(6, 10), torch.nn.Linear(10, 6)

    def forward(self, x: torch.Tensor):
        hidden = torch.relu(self.up(x))
        return {"out": self.down(hidden), "cache": StateCache(hidden)}


def test_cache_objects_are_dropped_from_what_is_captured_and_compared():
    torch.manual_seed(0)
    model, x = ReturnsCache().eval(), torch.randn(3, 6)
    analysis = surgeon.analyze(model, x)
    (mlp,) = [g for g in analysis.prunable if g.size == 10]
    plan = {mlp.id: list(range(0, 10, 2))}
    report = surgeon.verify(model, surgeon.apply(model, plan, analysis=analysis), plan, x)
    assert [o.name for o in report.outputs] == ["['out']"] and report.ok


def test_a_user_who_asks_for_the_cache_gets_it_left_out_of_the_check():
    model = HF_MODELS["llama"]()
    ids = torch.randint(0, VOCAB, (2, 8), generator=torch.Generator().manual_seed(0))
    inputs = {"input_ids": ids, "use_cache": True}
    analysis = surgeon.analyze(model, inputs)
    assert table(analysis) == table(surgeon.analyze(model))
    mlp = analysis.by_kind("mlp")[0]
    plan = surgeon.Plan.for_analysis(analysis, {mlp.id: list(range(0, mlp.size, 2))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, inputs, analysis=analysis)
    assert [o.name for o in report.outputs] == ["['logits']"] and report.ok


class _Opaque:
    def __init__(self, value: torch.Tensor) -> None:
        self.value = value


def test_an_output_that_is_not_a_cache_is_not_silently_dropped():
    class ReturnsOpaque(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(4, 4)

        def forward(self, x):
            return _Opaque(self.fc(x))

    with pytest.raises(surgeon.CaptureError, match="could not capture ReturnsOpaque"):
        surgeon.analyze(ReturnsOpaque().eval(), torch.randn(2, 4))
