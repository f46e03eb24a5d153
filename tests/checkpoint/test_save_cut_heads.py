"""A head count the config refuses ("hidden size is not a multiple of the
number of attention heads") saves a manifest that surgeon.load replays."""

import json

import pytest
import torch
import transformers as hf

import surgeon


def test_bert_with_three_of_four_heads_saves_and_reloads(tmp_path):
    config = hf.BertConfig(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
    )
    torch.manual_seed(0)
    model = hf.BertModel(config).eval()
    analysis = surgeon.analyze(model)
    group = analysis.by_kind("attention")[0]
    plan = surgeon.Plan.for_analysis(analysis, {group.id: [0, 1, 3]})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    surgeon.save(pruned, tmp_path)
    manifest = json.loads((tmp_path / "surgeon.json").read_text())
    assert manifest["plain_from_pretrained"] is False
    loaded = surgeon.load(tmp_path)
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = pruned(input_ids=ids).last_hidden_state
        assert torch.equal(loaded(input_ids=ids).last_hidden_state, expected)
    assert loaded.encoder.layer[0].attention.self.query.out_features == 48


def test_a_non_strict_config_still_saves_and_auto_classes_refuse(tmp_path):
    """BertConfig takes any value, so BertLMHeadModel.from_pretrained cannot be
    made to refuse a marked config: save warns instead of refusing the cut."""
    config = hf.BertConfig(
        vocab_size=128,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        is_decoder=True,
    )
    torch.manual_seed(0)
    model = hf.BertLMHeadModel(config).eval()
    analysis = surgeon.analyze(model)
    keep = {g.id: [0, 1, 3] for g in analysis.by_kind("attention")}
    keep.update({g.id: list(range(48)) for g in analysis.by_kind("mlp")})
    pruned = surgeon.apply(model, surgeon.Plan.for_analysis(analysis, keep), analysis=analysis)
    surgeon.save(pruned, tmp_path)
    with pytest.raises(ValueError, match="surgeon.load"):
        hf.AutoConfig.from_pretrained(tmp_path)
    loaded = surgeon.load(tmp_path)
    ids = torch.randint(0, 128, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids).logits, pruned(input_ids=ids).logits)
