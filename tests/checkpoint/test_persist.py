"""save / load round trips."""

from __future__ import annotations

import json

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.rewriters.resolve import units_of
from tests.zoo import HF_MODELS, small_cnn


def same_state(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize("name", ["llama", "gemma3", "mixtral", "phi3"])
def test_a_uniform_cut_reloads_with_plain_from_pretrained(name, tmp_path):
    model = HF_MODELS[name]()
    analysis = surgeon.analyze(model)
    kind = "mlp" if analysis.by_kind("mlp") else "expert_mlp"
    pruned = surgeon.apply(
        model, {g.id: list(range(0, g.size, 2)) for g in analysis.by_kind(kind)}, analysis=analysis
    )
    surgeon.save(pruned, tmp_path)
    assert json.loads((tmp_path / "surgeon.json").read_text())["plain_from_pretrained"]
    plain = hf.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(plain, ids), logits(pruned, ids))
    options = dict(max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(plain.generate(ids, **options), pruned.generate(ids, **options))


@pytest.mark.parametrize("name", ["llama", "mixtral", "qwen2"])
def test_a_ragged_cut_reloads_with_surgeon_load_bit_for_bit(name, tmp_path):
    model = HF_MODELS[name]()
    analysis = surgeon.analyze(model)
    first = analysis.by_kind("attention")[0]
    plan = surgeon.Plan(  # 6 query heads (not a divisor of hidden 64) in layer 0 only
        {first.id: units_of({"kv": (0, 1), "q": (0, 1, 2)}, first)}
    )
    pruned = surgeon.apply(model, plan, analysis=analysis)
    surgeon.save(pruned, tmp_path)
    assert not json.loads((tmp_path / "surgeon.json").read_text())["plain_from_pretrained"]
    with pytest.raises(Exception, match=r"surgeon\.load"):
        hf.AutoModelForCausalLM.from_pretrained(tmp_path)
    loaded = surgeon.load(tmp_path)
    assert same_state(loaded, pruned)
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(loaded, ids), logits(pruned, ids))


def test_save_casts_to_the_dtype_asked_for_and_load_keeps_it(tmp_path):
    model = HF_MODELS["llama"]()
    pruned = surgeon.apply(model, {"mlp@model.layers.0.mlp": list(range(40))})
    surgeon.save(pruned, tmp_path, dtype="bfloat16")
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    loaded = surgeon.load(tmp_path)
    for name, tensor in pruned.named_parameters():
        saved = loaded.get_parameter(name)
        assert saved.dtype == torch.bfloat16 and torch.equal(saved, tensor.to(torch.bfloat16))
    with pytest.raises(surgeon.SurgeonError, match="floating-point dtype"):
        surgeon.save(pruned, tmp_path / "bad", dtype="int8")


def test_chained_cuts_replay_in_order(tmp_path):
    model = HF_MODELS["llama"]()
    once = surgeon.apply(model, {"mlp@model.layers.0.mlp": list(range(64))})
    twice = surgeon.apply(once, {"mlp@model.layers.0.mlp": list(range(0, 64, 4))})
    surgeon.save(twice, tmp_path)
    assert len(json.loads((tmp_path / "surgeon.json").read_text())["plans"]) == 2
    assert same_state(surgeon.load(tmp_path), twice)


def test_a_plain_module_is_replayed_on_a_fresh_original(tmp_path):
    model, x = small_cnn(), torch.randn(2, 3, 16, 16)
    analysis = surgeon.analyze(model, x)
    pruned = surgeon.apply(model, {"channels": [0, 3, 8, 9]}, analysis=analysis)
    surgeon.save(pruned, tmp_path)
    with pytest.raises(surgeon.SurgeonError, match="pass a fresh copy of the original"):
        surgeon.load(tmp_path)
    loaded = surgeon.load(tmp_path, model=small_cnn())
    assert same_state(loaded, pruned)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))


def test_loading_a_directory_without_a_manifest_is_refused(tmp_path):
    with pytest.raises(surgeon.SurgeonError, match="no surgeon.json"):
        surgeon.load(tmp_path)


def test_the_planner_can_keep_results_loadable_by_plain_from_pretrained(tmp_path):
    from surgeon.calibrate.criteria import score_group

    model = HF_MODELS["llama"]()
    analysis = surgeon.analyze(model)
    scores = {
        g.id: score_group(model, g, "magnitude", None)[0]
        for g in analysis.prunable
        if g.kind in ("attention", "mlp")
    }
    options = dict(ratio=0.3, kinds=("attention", "mlp"), heads="q", allocation="uniform")
    ragged = surgeon.make_plan(analysis, scores, surgeon.PlanOptions(**options))
    loadable = surgeon.make_plan(analysis, scores, surgeon.PlanOptions(**options, hf_loadable=True))
    assert {len(v) for k, v in ragged.keep.items() if "attention" in k} == {6}  # 64 % 6 != 0
    assert not any("attention" in k for k in loadable.keep)  # 8 heads: the next divisor of 64
    surgeon.save(surgeon.apply(model, loadable, analysis=analysis), tmp_path)
    assert json.loads((tmp_path / "surgeon.json").read_text())["plain_from_pretrained"]
    hf.AutoModelForCausalLM.from_pretrained(tmp_path)


class ScaledBranch(torch.nn.Module):
    """A real buffer beside the weights and a branch on values (LongCat-Flash's
    router bias and expert loop)."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down = torch.nn.Linear(4, 8), torch.nn.Linear(8, 4)
        self.register_buffer("scale", torch.ones(8))

    def forward(self, x):
        h = self.up(x) * self.scale
        if h.sum() > -1e9:
            h = torch.relu(h)
        return self.down(h)


def test_a_skeleton_stopping_at_its_devices_then_at_a_branch_is_replayed_with_weights(tmp_path):
    model, x = ScaledBranch().eval(), torch.randn(3, 4)
    analysis = surgeon.analyze(model, x)
    group = next(g for g in analysis.prunable if g.size == 8)
    pruned = surgeon.apply(model, {group.id: [0, 2, 5]}, analysis=analysis)
    surgeon.save(pruned, tmp_path)
    skeleton = ScaledBranch().eval()
    skeleton.up.to("meta"), skeleton.down.to("meta")  # weights on meta, the buffer real
    loaded = surgeon.load(tmp_path, model=skeleton)
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned(x))
