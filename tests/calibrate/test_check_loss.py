"""A gradient criterion on a base model with no loss is refused up front,
saying what to use instead (was: AttributeError '... has no attribute loss')."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.analyzers.untouched import diff, state_of
from surgeon.calibrate.calibration import calibrate, check_loss

SMALL = dict(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=1)


def _base_models():
    torch.manual_seed(0)
    yield hf.BertModel(hf.BertConfig(**SMALL, num_attention_heads=2)).eval()
    yield hf.CLIPTextModel(
        hf.CLIPTextConfig(
            **SMALL,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    ).eval()


@pytest.mark.parametrize("model", list(_base_models()), ids=lambda m: type(m).__name__)
def test_taylor_on_a_model_without_a_loss_is_refused_with_what_to_use(model):
    before = state_of(model)
    name = type(model).__name__
    with pytest.raises(surgeon.InputError, match=f"{name} computes none.*flap.*magnitude"):
        check_loss(model, "taylor")
    with pytest.raises(surgeon.InputError, match=f"{name} computes none"):
        surgeon.prune(
            model, 0.2, criterion="taylor", calib=torch.randint(0, 64, (2, 8)), progress=False
        )
    with pytest.raises(surgeon.InputError, match="collecting gradients"):
        calibrate(model, [torch.randint(0, 64, (2, 8))], gradients=True, progress=False)
    check_loss(model, "flap")  # a forward-only criterion needs no loss
    assert not diff(before, state_of(model))
    assert all(p.grad is None for p in model.parameters())


def test_a_model_with_its_head_computes_the_loss_taylor_reads():
    torch.manual_seed(0)
    model = hf.BertForMaskedLM(hf.BertConfig(**SMALL, num_attention_heads=2)).eval()
    check_loss(model, "taylor")
    stats = calibrate(model, [torch.randint(0, 64, (2, 8))], gradients=True, progress=False)
    assert len(stats.gradients) == sum(1 for _ in model.named_parameters())
    assert all(p.grad is None for p in model.parameters())
