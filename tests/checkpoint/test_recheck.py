"""``surgeon verify ORIGINAL OUT``: the saved plans replayed on the original,
each step verified, the saved tensors compared with the verified cut."""

from __future__ import annotations

import torch
from safetensors.torch import load_file, save_file

import surgeon
from surgeon.checkpoint.recheck import recheck
from surgeon.cli import main
from tests.zoo import HF_MODELS


def original_dir(tmp_path):
    model = HF_MODELS["llama"]()
    model.save_pretrained(tmp_path / "original")
    return model, tmp_path / "original"


def test_a_saved_cut_is_the_verified_cut_bit_for_bit_in_its_dtype(tmp_path, capsys):
    model, original = original_dir(tmp_path)
    pruned = surgeon.apply(model, {"mlp@model.layers.0.mlp": list(range(0, 96, 3))})
    surgeon.save(pruned, tmp_path / "out", dtype=torch.bfloat16)
    assert main(["verify", str(original), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "verify: ok" in printed and "result: ok" in printed
    assert "equal to the replayed cut (cast to bfloat16) bit for bit" in printed


def test_chained_plans_are_each_verified(tmp_path):
    model, original = original_dir(tmp_path)
    once = surgeon.apply(model, {"mlp@model.layers.0.mlp": list(range(64))})
    twice = surgeon.apply(once, {"mlp@model.layers.1.mlp": list(range(0, 96, 2))})
    surgeon.save(twice, tmp_path / "out")
    result = recheck(original, tmp_path / "out")
    assert len(result.steps) == 2 and result.ok
    assert not result.unexpected and not result.compensated


def test_a_tampered_tensor_fails_and_is_named(tmp_path, capsys):
    model, original = original_dir(tmp_path)
    pruned = surgeon.apply(model, {"mlp@model.layers.1.mlp": list(range(48))})
    surgeon.save(pruned, tmp_path / "out")
    weights = tmp_path / "out" / "model.safetensors"
    state = load_file(weights)
    state["model.layers.0.mlp.up_proj.weight"][0, 0] += 1e-3
    save_file(state, weights, metadata={"format": "pt"})
    assert main(["verify", str(original), str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "MISMATCH: 1 tensors differ" in printed and "layers.0.mlp.up_proj.weight" in printed
    assert printed.rstrip().endswith("result: FAILED")


def test_a_group_inexact_by_nature_fails_the_exit_code(tmp_path, capsys):
    model, original = original_dir(tmp_path)
    pruned = surgeon.apply(model, {"hidden": list(range(48))})  # RMSNorm over a cut axis
    surgeon.save(pruned, tmp_path / "out")
    assert main(["verify", str(original), str(tmp_path / "out")]) == 1
    printed = capsys.readouterr().out
    assert "not exact by nature: hidden" in printed and "result: FAILED" in printed
