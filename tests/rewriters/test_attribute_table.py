"""The per-class attribute table: what it holds is what the generic path would set
(and verify proves) on the zoo's models, and a class it does not know is logged."""

import logging

import pytest
from torch import nn

import surgeon
from surgeon.rewriters import attribute_table
from surgeon.rewriters.transaction import Transaction
from tests.zoo import HF_MODELS

HIDDEN_NAMES = frozenset({"hidden_dim", "hidden_size", "input_size"})


def _cuts(analysis):
    """One head cut per attention shape (whole KV groups, then queries) and one
    width cut per other kind."""
    for kind in ("attention", "mlp", "expert_mlp", "experts"):
        groups = [g for g in analysis.by_kind(kind) if g.frozen is None]
        if not groups:
            continue
        group = groups[0]
        if kind == "attention":
            if group.kv_heads > 1:
                yield group, list(range(group.q_per_kv))
            if group.q_per_kv > 1:
                yield group, [k * group.q_per_kv for k in range(group.kv_heads)]
        elif group.size > 2:
            yield group, list(range(group.size - max(1, group.size // 4)))


def _generic_updates(caplog):
    """The generic path's records (other loggers may log at INFO too)."""
    return [
        r
        for r in caplog.records
        if r.name == "surgeon.rewriters" and str(r.msg).startswith("generic attribute update")
    ]


@pytest.mark.parametrize("name", ["llama", "gpt2", "falcon", "bert", "mixtral"])
def test_the_table_holds_what_verified_cuts_needed(name, monkeypatch, caplog):
    model = HF_MODELS[name]().eval()
    analysis = surgeon.analyze(model)
    table = dict(attribute_table.ATTRIBUTES)
    monkeypatch.setattr(attribute_table, "ATTRIBUTES", {})  # everything through the generic path
    seen: dict[str, set[str]] = {}
    with caplog.at_level(logging.INFO, logger="surgeon.rewriters"):
        for group, keep in _cuts(analysis):
            plan = surgeon.Plan.for_analysis(analysis, {group.id: keep})
            pruned = surgeon.apply(model, plan, analysis=analysis)
            assert surgeon.verify(model, pruned, plan, analysis=analysis).ok
    for record in _generic_updates(caplog):
        seen.setdefault(record.args[1], set()).add(record.args[2])
    assert seen, "no attribute was updated"
    for cls, names in seen.items():
        # the table may list more: widths of cuts this test does not make (the
        # hidden size a router reshapes its input by)
        assert frozenset(names) <= table.get(cls, frozenset()), cls
        assert table[cls] - frozenset(names) <= HIDDEN_NAMES, cls


def test_a_class_in_the_table_keeps_its_other_attributes_and_an_unknown_one_is_logged(caplog):
    class LlamaAttention(nn.Module):  # named as the table names it
        num_key_value_groups, num_heads = 4, 4

    class Unknown(nn.Module):
        num_heads = 4

    known, unknown, tx = LlamaAttention(), Unknown(), Transaction()
    with caplog.at_level(logging.INFO, logger="surgeon.rewriters"):
        for module in (known, unknown):
            attribute_table.set_width_attributes(
                module, "layer", ("num_key_value_groups", "num_heads"), 4, 2, tx
            )
    assert (known.num_key_value_groups, known.num_heads) == (2, 4)
    assert unknown.num_heads == 2
    assert [r.args[1] for r in _generic_updates(caplog)] == ["Unknown"]
    tx.rollback()
    assert (known.num_key_value_groups, unknown.num_heads) == (4, 4)


def test_xlnet_keeps_the_width_of_its_positions_through_a_hidden_cut():
    """XLNetModel's d_model sizes its sinusoidal positions, which each layer's r
    projects (rows never cut): a hidden cut leaves it, and the cut model runs."""
    import transformers as hf

    config = hf.XLNetConfig(vocab_size=64, d_model=32, n_layer=1, n_head=2, d_inner=48)
    model = hf.XLNetLMHeadModel(config).eval()
    analysis = surgeon.analyze(model)
    plan = surgeon.Plan.for_analysis(analysis, {"hidden": list(range(0, 32, 2))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.transformer.d_model == 32
    assert tuple(pruned.transformer.layer[0].rel_attn.q.shape) == (16, 2, 16)
    report = surgeon.verify(model, pruned, plan, analysis=analysis)
    assert report.exact_ok and set(report.inexact) == {"hidden"}


@pytest.mark.parametrize("name", ["mixtral"])
def test_a_hidden_cut_updates_the_width_a_router_reshapes_by(name):
    model = HF_MODELS[name]().eval()
    analysis = surgeon.analyze(model)
    hidden = analysis.by_kind("hidden")[0]
    plan = surgeon.Plan.for_analysis(analysis, {hidden.id: list(range(hidden.size - 8))})
    pruned = surgeon.apply(model, plan, analysis=analysis)
    assert pruned.model.layers[0].mlp.gate.hidden_dim == hidden.size - 8
    assert surgeon.verify(model, pruned, plan, analysis=analysis).accepted
