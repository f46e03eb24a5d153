"""surgeon.heal on a cut of the trained tiny-llama fixture: a few steps lower the
distillation loss and the held-out perplexity; a resumed run ends on the same
weights as an uninterrupted one; LoRA merges back into plain dense weights."""

from __future__ import annotations

import copy
import shutil

import torch
import transformers as hf
from torch import nn

import surgeon
from surgeon.heal.loss import logit_kl
from tests.heal.conftest import TINY


def kd_loss(student, teacher, batch) -> float:
    with torch.no_grad():
        return float(logit_kl(student(input_ids=batch).logits, teacher(input_ids=batch).logits))


def test_a_few_steps_lower_the_kd_loss_and_the_held_out_perplexity(student, teacher, ids):
    probe = ids[-4 * 64 :].view(4, 64)  # the tail: inside the held-out windows
    before = kd_loss(student, teacher, probe)
    result = surgeon.heal(
        student, teacher, ids, tokens=10 * 4 * 64, lr=2e-3, eval_every=10**9, **TINY
    )
    after = kd_loss(result.model, teacher, probe)
    assert result.steps == 10 and result.tokens == 2560
    assert [e["step"] for e in result.evaluations] == [0, 10]
    assert result.perplexity_after < 0.97 * result.perplexity_before
    assert after < 0.9 * before
    assert result.model is student and not result.model.training
    assert result.history[-1]["kd"] > 0 and result.history[-1]["lr"] > 0


def test_resume_continues_to_the_weights_of_an_uninterrupted_run(pruned, teacher, ids, tmp_path):
    options = {
        **TINY,
        "tokens": 6 * 4 * 64,
        "micro_batch": 2,  # two micro-batches a step: accumulation is resumed too
        "seed": 3,
        "checkpoint_every": 3 * 4 * 64,
        "eval_every": 10**9,
    }
    whole = surgeon.heal(copy.deepcopy(pruned), teacher, ids, **options)
    first = surgeon.heal(
        copy.deepcopy(pruned), teacher, ids, checkpoint_dir=str(tmp_path), **options
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step-00000003", "step-00000006"]
    shutil.rmtree(tmp_path / "step-00000006")  # as if the run had died after step 3
    again = surgeon.heal(
        copy.deepcopy(pruned), teacher, ids, checkpoint_dir=str(tmp_path), resume=True, **options
    )
    assert again.resumed_from == 3 and again.steps == 6
    for (name, a), b, c in zip(
        whole.model.state_dict().items(),
        first.model.state_dict().values(),
        again.model.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name
        assert torch.equal(a, c), name
    assert not torch.equal(
        whole.model.model.layers[0].mlp.up_proj.weight, pruned.model.layers[0].mlp.up_proj.weight
    )


def test_resume_refuses_a_checkpoint_of_other_options(pruned, teacher, ids, tmp_path):
    options = {**TINY, "tokens": 2 * 4 * 64, "eval_every": 10**9}
    surgeon.heal(copy.deepcopy(pruned), teacher, ids, checkpoint_dir=str(tmp_path), **options)
    try:
        surgeon.heal(
            copy.deepcopy(pruned),
            teacher,
            ids,
            checkpoint_dir=str(tmp_path),
            resume=True,
            **{**options, "lr": 5e-3},
        )
    except surgeon.InputError as error:
        assert "other options" in str(error) and "lr" in str(error)
    else:
        raise AssertionError("a checkpoint of another learning rate was resumed")


def test_lora_merges_back_into_the_pruned_dense_shapes(student, pruned, teacher, ids, tmp_path):
    shapes = {k: v.shape for k, v in pruned.state_dict().items()}
    result = surgeon.heal(student, teacher, ids, tokens=2 * 4 * 64, lora=True, lora_rank=4, **TINY)
    model = result.model
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert not any("lora" in name for name, _ in model.named_modules())
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is nn.Linear for m in linears)
    assert all(p.requires_grad for p in model.parameters())
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(model.state_dict()[q], pruned.state_dict()[q])  # adapters merged
    surgeon.save(model, tmp_path)
    plain = hf.AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    batch = ids[:64].view(1, 64)
    with torch.no_grad():
        assert torch.allclose(plain(batch).logits, model(batch).logits, atol=1e-5)


def test_cross_entropy_alone_needs_no_teacher(student, ids):
    result = surgeon.heal(student, None, ids, tokens=2 * 4 * 64, ce_weight=1.0, **TINY)
    assert set(result.history[-1]) >= {"ce", "loss"} and "kd" not in result.history[-1]


def test_top_k_and_hidden_state_terms_train(student, teacher, ids):
    result = surgeon.heal(
        student, teacher, ids, tokens=2 * 4 * 64, top_k=32, hidden_weight=0.5, ce_weight=0.2, **TINY
    )
    last = result.history[-1]
    assert last["kd"] > 0 and last["ce"] > 0 and last["hidden"] > 0
    assert abs(last["loss"] - (0.8 * last["kd"] + 0.2 * last["ce"] + 0.5 * last["hidden"])) < 1e-4


def test_early_stop_when_held_out_perplexity_stops_improving(student, teacher, ids):
    step = 4 * 64
    result = surgeon.heal(
        student, teacher, ids, tokens=6 * step, lr=0.5, warmup=0.0, eval_every=step, patience=1,
        **TINY,
    )  # fmt: skip
    assert result.stopped_early and result.steps < 6
    assert result.evaluations[-1]["perplexity"] >= result.evaluations[0]["perplexity"]


def test_gradient_checkpointing_trains_and_is_switched_off_after(student, teacher, ids):
    result = surgeon.heal(
        student, teacher, ids, tokens=4 * 64, gradient_checkpointing=True, eval_every=10**9, **TINY
    )
    assert result.steps == 1 and result.history[-1]["kd"] > 0
    assert not getattr(result.model, "is_activation_checkpointing", False)
