"""Mamba's mixer splits x_proj's output by ``time_step_rank`` and
``ssm_state_size`` (read at forward time): both widths can be cut, exactly."""

import transformers as hf

import surgeon
from tests.zoo import tiny


def test_mamba_state_and_time_step_widths_cut_exactly():
    model = tiny(
        hf.MambaForCausalLM,
        vocab_size=128,
        hidden_size=32,
        state_size=8,
        num_hidden_layers=2,
        time_step_rank=6,
    )
    analysis = surgeon.analyze(model)
    mixer = analysis.by_kind("mlp")
    sizes = sorted({g.size for g in mixer})
    assert sizes == [6, 8]
    keep = {g.id: list(range(0, g.size, 2)) for g in mixer}
    plan = surgeon.Plan.for_analysis(analysis, keep)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    report = surgeon.verify(model, pruned, plan, analysis=analysis)
    assert report.ok, report
    layer = pruned.backbone.layers[0].mixer
    assert (layer.ssm_state_size, layer.time_step_rank) == (4, 3)
