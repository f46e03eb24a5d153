"""The ``surgeon`` command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys

import transformers as hf


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "surgeon", *args], capture_output=True, text=True, timeout=300
    )


def test_demo_prints_the_groups_then_cuts_and_verifies_the_embedded_model():
    result = run("demo")
    assert result.returncode == 0, result.stderr
    assert "LlamaForCausalLM: 9 prunable groups, 2 frozen, 4 repeated blocks" in result.stdout
    assert "mlp@model.layers.3.mlp" in result.stdout
    assert "parameters: 3,295,488 -> 1,564,416" in result.stdout
    assert "verify: ok (tolerance 1e-05)" in result.stdout


def test_demo_json_is_the_analysis():
    result = run("demo", "--json")
    data = json.loads(result.stdout)
    assert {g["kind"] for g in data["groups"]} == {"hidden", "attention", "mlp", "vocab", "output"}


def test_inspect_reads_only_the_config(tmp_path):
    hf.MistralConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ).save_pretrained(tmp_path)
    result = run("inspect", str(tmp_path / "config.json"), "--json")
    assert result.returncode == 0, result.stderr
    groups = json.loads(result.stdout)["groups"]
    assert [g["size"] for g in groups if g["kind"] == "mlp"] == [48, 48]


def test_inspect_of_a_bad_path_fails_with_a_message(tmp_path):
    result = run("inspect", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "no config.json" in result.stderr and result.stdout == ""


def test_unknown_subcommand_is_a_usage_error():
    result = run("frobnicate")
    assert result.returncode == 2 and "invalid choice" in result.stderr
