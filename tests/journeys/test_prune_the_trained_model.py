"""The path the README sells: ``surgeon prune`` with the default recipe on a
trained model, then load the directory as a user would and generate text."""

from __future__ import annotations

import json
import subprocess
import sys

import torch
import transformers

import surgeon
from surgeon.checkpoint.shards import open_checkpoint
from tests.journeys.user import fixture, generates, load_as_user


def surgeon_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "surgeon", *args], capture_output=True, text=True, timeout=900
    )


def test_prune_with_defaults_then_load_and_generate(tmp_path):
    model_dir, calib = fixture("tiny-llama"), fixture("text", "calib.txt")
    out = tmp_path / "pruned"
    report = tmp_path / "report.html"
    # the recipe's defaults; less calibration text than the default 64 x 256, for time
    result = surgeon_cli(
        "prune", str(model_dir), "--ratio", "0.2", "--calib", str(calib),
        "--samples", "16", "--length", "128", "-o", str(out), "--report", str(report),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    printed = result.stdout
    assert "target: ratio=0.2 of block parameters; achieved:" in printed
    assert "criteria used: flap" in printed and "checked: the cut before compensation" in printed
    assert "load it with:" in printed and "surgeon: saving" in result.stderr
    assert "mlp@model.layers.7.mlp" in report.read_text()

    manifest = json.loads((out / "surgeon.json").read_text())
    assert manifest["compensation"].startswith("least-squares refit")
    # the fixture is bfloat16 on disk: so is the cut (smaller than the original)
    assert {e.torch_dtype for e in open_checkpoint(out).values()} == {torch.bfloat16}
    size = sum(e.nbytes for e in open_checkpoint(out).values())
    assert size < 0.9 * sum(e.nbytes for e in open_checkpoint(model_dir).values())

    model, _ = load_as_user(out)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("A dictionary is", return_tensors="pt").input_ids
    text = tokenizer.decode(generates(model.float(), prompt, new=12)[0])
    assert len(text.split()) >= 3, text

    widths = [layer.mlp.gate_proj.out_features for layer in surgeon.load(out).model.layers]
    inspect = surgeon_cli("inspect", str(out))
    assert inspect.returncode == 0, inspect.stderr
    rows = [line.split() for line in inspect.stdout.splitlines() if line.startswith("mlp@")]
    assert [int(row[2]) for row in rows] == widths  # the saved shapes, not the config's

    check = surgeon_cli("verify", str(model_dir), str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "not checked: 16 tensors of the layers compensated" in check.stdout
