"""Capture: derived and given inputs, meta models, the fallback, and bad input."""

from __future__ import annotations

import pytest
import torch
import transformers as hf
from torch import nn

import surgeon
from tests.analyzers.test_zoo import table
from tests.zoo import HF_MODELS


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_unchanged(model: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = model.state_dict()
    assert after.keys() == before.keys()
    for name, tensor in before.items():
        assert torch.equal(after[name], tensor), name


def test_a_model_on_the_meta_device_is_analysed_like_a_real_one():
    config = HF_MODELS["llama"]().config
    with torch.device("meta"):
        meta_model = hf.LlamaForCausalLM(config).eval()
    real_model = hf.LlamaForCausalLM(config).eval()
    assert table(surgeon.analyze(meta_model)) == table(surgeon.analyze(real_model))
    assert all(p.is_meta for p in meta_model.parameters())


@pytest.mark.parametrize("name", ["llama", "mixtral", "bert", "vit"])
def test_analysis_never_modifies_the_model(name):
    model = HF_MODELS[name]()
    before = snapshot(model)
    surgeon.analyze(model)
    assert_unchanged(model, before)
    assert not model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_analysis_keeps_training_mode_and_batch_norm_statistics():
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 1)).train()
    before = snapshot(model)
    surgeon.analyze(model, torch.randn(2, 3, 8, 8))
    assert model.training
    assert_unchanged(model, before)


def test_inputs_may_be_a_tensor_a_tuple_a_dict_or_args_and_kwargs():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 4)

        def forward(self, x, scale=None):
            out = self.fc2(torch.relu(self.fc1(x)))
            return out * scale if scale is not None else out

    model, x = Net().eval(), torch.randn(3, 6)
    forms = [x, (x,), {"x": x}, ((x,), {"scale": torch.ones(4)})]
    sizes = [[g.size for g in surgeon.analyze(model, form).prunable] for form in forms]
    assert sizes == [[10]] * 4


def test_a_configuration_object_export_refuses_falls_back_to_symbolic_trace():
    class Config:
        scale = 2.0

    class Configured(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(6, 10), nn.Linear(10, 4)

        def forward(self, x, cfg=None):
            return self.fc2(torch.relu(self.fc1(x))) * (cfg.scale if cfg else 1.0)

    analysis = surgeon.analyze(Configured().eval(), ((torch.randn(3, 6),), {"cfg": Config()}))
    assert analysis.capture_method == "symbolic_trace"
    (mlp,) = analysis.prunable
    assert {(m.param, m.dim) for m in mlp.members} == {
        ("fc1.weight", 0),
        ("fc1.bias", 0),
        ("fc2.weight", 1),
    }


def test_an_uncapturable_model_raises_naming_the_module_and_cause():
    class DataDependent(nn.Module):
        def __init__(self):
            super().__init__()
            self.gate = nn.Linear(6, 1)

        def forward(self, x):
            return x * 2 if self.gate(x).sum() > 0 else x

    class Outer(nn.Module):
        def __init__(self):
            super().__init__()
            self.block = DataDependent()

        def forward(self, x):
            return self.block(x)

    # on meta tensors there are no values for a draft export to follow the branch by
    model = Outer().eval().to("meta")
    with pytest.raises(surgeon.CaptureError) as caught:
        surgeon.analyze(model, torch.randn(3, 6, device="meta"))
    assert caught.value.module == "block"
    message = str(caught.value)
    assert "module 'block'" in message and "hint:" in message and "symbolic_trace" in message


def test_inputs_of_the_wrong_shape_raise_naming_the_layer():
    model = nn.Sequential(nn.Linear(6, 10), nn.ReLU(), nn.Linear(10, 4)).eval()
    with pytest.raises(surgeon.CaptureError) as caught:
        surgeon.analyze(model, torch.randn(3, 7))
    assert caught.value.module == "0"
    assert "module '0'" in str(caught.value) and "[3, 7]" in str(caught.value)


def test_a_plain_module_without_inputs_asks_for_them():
    with pytest.raises(surgeon.InputError, match="pass inputs="):
        surgeon.analyze(nn.Linear(4, 4))


def test_bad_arguments_are_refused_with_a_clear_message():
    with pytest.raises(surgeon.InputError, match="torch.nn.Module"):
        surgeon.analyze("model")
    with pytest.raises(surgeon.InputError, match="unknown option.*batch_size"):
        surgeon.analyze(nn.Linear(4, 4), torch.randn(2, 4), batch_size=3)
    with pytest.raises(surgeon.InputError, match="inputs must be"):
        surgeon.analyze(nn.Linear(4, 4), 3.0)


def test_derived_token_ids_get_the_mask_a_model_builds_only_when_not_compiling():
    # LongT5: `if attention_mask is None and not is_torchdynamo_compiling()`
    config = hf.LongT5Config(
        vocab_size=32, d_model=16, d_kv=8, d_ff=24, num_layers=1, num_heads=2, local_radius=2
    )
    model = hf.LongT5ForConditionalGeneration(config).eval()
    analysis = surgeon.analyze(model)
    _, kwargs = analysis.inputs
    assert torch.equal(kwargs["attention_mask"], torch.ones_like(kwargs["input_ids"]))


def test_a_forward_converting_its_own_submodule_to_what_it_is_captures():
    # SwitchTransformers' router: self.classifier = self.classifier.to(self.dtype)
    class Converting(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(4, 6), nn.Linear(6, 4)

        def forward(self, x):
            self.up = self.up.to(torch.float32)
            return self.down(self.up(x))

    model = Converting().eval()
    analysis = surgeon.analyze(model, torch.randn(2, 4))
    assert analysis.capture_method == "export" and [g.size for g in analysis.prunable] == [6]
    assert all(not isinstance(p, torch._subclasses.FakeTensor) for p in model.parameters())
