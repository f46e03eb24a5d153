"""Layer-by-layer calibration (one block on the device at a time) against a
whole-model run: the same statistics, on a dense Llama and a Mixtral MoE."""

from __future__ import annotations

import pytest
import torch

import surgeon
from surgeon.calibrate.calibration import calibrate, token_batches
from surgeon.calibrate.layerwise import layer_stack
from tests.calibrate.compare import relative
from tests.zoo import HF_MODELS

BLOCKS = ["model.layers.0", "model.layers.1"]


def batches():
    ids = torch.randint(4, 128, (6, 16), generator=torch.Generator().manual_seed(5))
    return token_batches(ids, batch_size=4)  # a short last batch too


@pytest.mark.parametrize("name", ["llama", "mixtral"])
def test_layerwise_statistics_equal_whole_model_statistics(name):
    model = HF_MODELS[name]()
    gram_for = {"model.layers.0.self_attn.o_proj", "lm_head"}
    run = dict(gram_for=gram_for, blocks=BLOCKS, progress=False)
    whole = calibrate(model, batches(), **run)
    params = {n: p.data_ptr() for n, p in model.named_parameters()}
    layerwise = calibrate(model, batches(), layerwise=True, device="cpu", **run)
    assert {n: p.data_ptr() for n, p in model.named_parameters()} == params  # weights untouched
    assert layerwise.samples == whole.samples == 6
    assert layerwise.inputs.keys() == whole.inputs.keys()
    assert "lm_head" in layerwise.inputs  # outside the stack: recorded in the last pass
    for module, ref in whole.inputs.items():
        got = layerwise.inputs[module]
        assert got.count == ref.count == 6 * 16
        for field in ("total", "squares", "absolute"):
            assert relative(getattr(got, field), getattr(ref, field)) <= 1e-5, (module, field)
    for module in gram_for:
        assert relative(layerwise.inputs[module].gram, whole.inputs[module].gram) <= 1e-5
    assert layerwise.block_influence.keys() == set(BLOCKS)
    for block in BLOCKS:  # ShortGPT's cosine between block input and output
        assert layerwise.block_influence[block] == pytest.approx(
            whole.block_influence[block], rel=1e-5
        )


def test_the_stack_comes_from_the_analysis_or_the_repeated_layers():
    model = HF_MODELS["llama"]()
    analysis = surgeon.analyze(model)
    assert layer_stack(model, [b.name for b in analysis.blocks]) == BLOCKS
    assert layer_stack(model) == BLOCKS


def test_layerwise_shows_a_progress_bar_over_blocks(capsys):
    calibrate(HF_MODELS["llama"](), batches()[:1], layerwise=True, progress=True)
    err = capsys.readouterr().err
    assert "calibrating layerwise" in err and "2/2" in err and "block" in err


def test_gradients_cannot_be_collected_layerwise():
    with pytest.raises(surgeon.InputError, match="taylor.*layerwise=False"):
        calibrate(HF_MODELS["llama"](), batches(), gradients=True, layerwise=True)


def test_a_model_without_repeated_blocks_is_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.ReLU())
    with pytest.raises(surgeon.InputError, match="no ModuleList"):
        calibrate(model, batches(), layerwise=True, progress=False)


def test_prune_calibrates_layerwise_to_the_same_plan():
    model = HF_MODELS["llama"]()
    ids = torch.randint(4, 128, (4, 16), generator=torch.Generator().manual_seed(5))
    run = dict(criterion="flap", calib=ids, kinds=("mlp",), progress=False, verify=False)
    whole = surgeon.prune(model, 0.2, **run)
    layerwise = surgeon.prune(model, 0.2, layerwise=True, device="cpu", **run)
    assert layerwise.plan == whole.plan
    for group, scores in whole.scores.items():
        assert relative(layerwise.scores[group], scores) <= 1e-5
