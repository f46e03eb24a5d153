"""Calibration and analysis of a model dispatched by accelerate (``device_map``).

The small Llama is split with an explicit device map: layer 0, the norm and the
head on CPU, the input embedding and layer 1 offloaded to disk. Offloaded
weights sit on the meta device between forwards (so ``model.device`` is meta)
and accelerate's hooks load them for each forward, which exercises every path
a model spread over GPUs takes: input placement, statistics from several
hooks, gradients of weights that exist only during a forward.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from accelerate import dispatch_model

import surgeon
from surgeon.analyzers.dispatched import has_accelerate_hooks
from surgeon.calibrate.calibration import calibrate, token_batches
from surgeon.calibrate.criteria import score_group
from surgeon.calibrate.devices import input_device, onloaded
from tests.calibrate.compare import relative
from tests.zoo import HF_MODELS

BLOCKS = ["model.layers.0", "model.layers.1"]
DEVICE_MAP = {
    "model.embed_tokens": "disk",
    "model.rotary_emb": "cpu",
    "model.layers.0": "cpu",
    "model.layers.1": "disk",
    "model.norm": "cpu",
    "lm_head": "cpu",
}


def batches():
    ids = torch.randint(4, 128, (8, 16), generator=torch.Generator().manual_seed(3))
    return token_batches(ids, batch_size=4)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    plain = HF_MODELS["llama"]()
    dispatched = dispatch_model(
        HF_MODELS["llama"](),
        DEVICE_MAP,
        main_device="cpu",
        offload_dir=str(tmp_path_factory.mktemp("offload")),
        force_hooks=True,
    )
    return plain, dispatched


@pytest.fixture(scope="module")
def statistics(models):
    plain, dispatched = models
    gram_for = {"model.layers.1.mlp.down_proj"}
    run = dict(gradients=True, gram_for=gram_for, blocks=BLOCKS, progress=False)
    return calibrate(plain, batches(), **run), calibrate(dispatched, batches(), **run)


def test_the_split_offloads_weights_behind_accelerate_hooks(models):
    _, dispatched = models
    assert dispatched.model.embed_tokens.weight.device.type == "meta"  # model.device lies
    assert dispatched.model.layers[1].mlp.down_proj.weight.device.type == "meta"
    assert dispatched.model.layers[0].mlp.down_proj.weight.device.type == "cpu"
    assert hasattr(dispatched.model.layers[1].mlp.down_proj, "_hf_hook")
    assert input_device(dispatched) == torch.device("cpu")


@pytest.fixture(scope="module")
def analysis(models):
    return surgeon.analyze(models[0])


def test_analyze_sees_through_accelerate_hooks(models, analysis):
    _, dispatched = models
    assert surgeon.analyze(dispatched).to_json() == analysis.to_json()
    assert hasattr(dispatched.model.layers[1].mlp.down_proj, "_hf_hook")  # left as it was
    assert dispatched.model.layers[1].mlp.down_proj.weight.device.type == "meta"


def test_dispatched_statistics_match_one_device(statistics):
    plain, dispatched = statistics
    assert dispatched.samples == plain.samples == 8
    assert dispatched.inputs.keys() == plain.inputs.keys() and len(plain.inputs) == 15
    for name, ref in plain.inputs.items():
        got = dispatched.inputs[name]
        assert got.count == ref.count == 8 * 16
        for field in ("total", "squares", "absolute"):
            assert getattr(got, field).device.type == "cpu"
            assert relative(getattr(got, field), getattr(ref, field)) <= 1e-5, (name, field)
    down = "model.layers.1.mlp.down_proj"  # offloaded: its Gram matrix still accumulates
    assert relative(dispatched.inputs[down].gram, plain.inputs[down].gram) <= 1e-5
    for block in BLOCKS:
        assert dispatched.block_influence[block] == pytest.approx(
            plain.block_influence[block], rel=1e-5
        )


def test_gradients_of_offloaded_weights_are_caught(statistics):
    plain, dispatched = statistics
    assert dispatched.gradients.keys() == plain.gradients.keys()
    assert "model.layers.1.mlp.up_proj.weight" in dispatched.gradients  # offloaded to disk
    assert "model.embed_tokens.weight" in dispatched.gradients  # offloaded to disk
    for name, ref in plain.gradients.items():
        assert relative(dispatched.gradients[name], ref) <= 1e-5, name


@pytest.mark.parametrize("criterion", ["flap", "wanda-sp", "activation", "taylor"])
def test_dispatched_unit_scores_match_one_device(models, statistics, analysis, criterion):
    plain, dispatched = models
    plain_stats, dispatched_stats = statistics
    with onloaded(dispatched):  # criteria read weights; offloaded ones are on meta
        for group in analysis.prunable:
            got, used = score_group(dispatched, group, criterion, dispatched_stats)
            ref, ref_used = score_group(plain, group, criterion, plain_stats)
            assert used == ref_used
            assert relative(got, ref) <= 1e-5, group.id
    assert dispatched.model.layers[1].mlp.down_proj.weight.device.type == "meta"  # unloaded


def test_from_pretrained_with_a_device_map_calibrates_like_one_device(models, tmp_path):
    plain, _ = models
    plain.save_pretrained(tmp_path / "model")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path / "model", device_map=DEVICE_MAP, offload_folder=str(tmp_path / "offload")
    )
    assert loaded.model.layers[1].mlp.down_proj.weight.device.type == "meta"
    ref = calibrate(plain, batches(), progress=False)
    got = calibrate(loaded, batches(), progress=False)
    for name, feature in ref.inputs.items():
        assert relative(got.inputs[name].squares, feature.squares) <= 1e-5, name


def test_calibrating_on_another_device_than_the_model_is_refused_outside_layerwise(models):
    plain, _ = models
    with pytest.raises(surgeon.InputError, match="layerwise=True"):
        calibrate(plain, batches(), device="meta", progress=False)


def test_inputs_follow_the_embedding_execution_device_not_the_first_parameter():
    from accelerate.hooks import AlignDevicesHook, add_hook_to_module

    model = HF_MODELS["llama"]()
    assert input_device(model) == torch.device("cpu")
    add_hook_to_module(model.model.embed_tokens, AlignDevicesHook(execution_device="meta"))
    assert input_device(model) == torch.device("meta")  # where accelerate would run it


def test_a_dispatched_model_is_not_calibrated_layerwise(models):
    _, dispatched = models
    with pytest.raises(surgeon.InputError, match="dispatched by accelerate.*layerwise=False"):
        calibrate(dispatched, batches(), layerwise=True, progress=False)


@pytest.mark.parametrize("criterion", ["flap", "taylor"])
def test_prune_on_a_dispatched_model_equals_prune_on_the_plain_one(models, criterion):
    plain, dispatched = models
    ids = torch.randint(4, 128, (8, 16), generator=torch.Generator().manual_seed(3))
    run = dict(criterion=criterion, calib=ids, samples=8, length=16, progress=False)
    expected = surgeon.prune(plain, 0.3, compensate="refit", **run)
    result = surgeon.prune(dispatched, 0.3, compensate="refit", **run)
    assert result.plan.keep == expected.plan.keep
    assert result.report.verification.ok
    assert not has_accelerate_hooks(result.model)
    assert all(p.device.type == "cpu" for p in result.model.parameters())
    assert dispatched.model.layers[1].mlp.down_proj.weight.device.type == "meta"  # unchanged
    with torch.no_grad():
        out, ref = result.model(ids).logits, expected.model(ids).logits
    assert relative(out, ref) < 1e-5
