"""The ``surgeon`` command, run as a user would."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import transformers as hf

from tests.zoo import HF_MODELS


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


# ../shared beside the checkout; a missing fixture fails the test (CI must have it)
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures"


def small_llama(path):
    HF_MODELS["llama"]().save_pretrained(path)
    return path


def test_graph_writes_svg_dot_and_html(tmp_path):
    model = small_llama(tmp_path / "model")
    for name, extra in (("g.svg", ["--view", "groups"]), ("m.dot", []), ("r.html", [])):
        result = run("graph", str(model), "-o", str(tmp_path / name), *extra)
        assert result.returncode == 0, result.stderr
    assert "</svg>" in (tmp_path / "g.svg").read_text()
    assert "digraph" in (tmp_path / "m.dot").read_text()
    assert "mlp@model.layers.1.mlp" in (tmp_path / "r.html").read_text()


def test_graph_of_a_bad_path_or_view_fails_and_writes_nothing(tmp_path):
    result = run("graph", str(tmp_path / "none"), "-o", str(tmp_path / "g.svg"))
    assert result.returncode == 1 and "no config.json" in result.stderr
    result = run("graph", str(tmp_path), "-o", str(tmp_path / "g.svg"), "--view", "layers")
    assert result.returncode == 2 and "invalid choice" in result.stderr
    assert not (tmp_path / "g.svg").exists()


def test_prune_saves_a_model_that_verifies_against_its_original(tmp_path):
    model = small_llama(tmp_path / "model")
    out = tmp_path / "out"
    result = run(
        "prune",
        str(model),
        "--ratio",
        "0.3",
        "--criterion",
        "magnitude",
        "--allocation",
        "uniform",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "parameters:" in result.stdout and "verify: ok" in result.stdout
    assert (out / "surgeon.json").is_file() and (out / "model.safetensors").is_file()
    check = run("verify", str(model), str(out))
    assert check.returncode == 0 and "verify: ok" in check.stdout
    assert hf.AutoConfig.from_pretrained(out).intermediate_size < 96  # uniform: plain config


def test_prune_with_calibration_and_refit_on_the_trained_fixture(tmp_path):
    assert (FIXTURES / "tiny-llama" / "config.json").is_file(), f"missing fixture: {FIXTURES}"
    out = tmp_path / "out"
    result = run(
        "prune",
        str(FIXTURES / "tiny-llama"),
        "--ratio",
        "0.2",
        "--criterion",
        "wanda-sp",
        "--calib",
        str(FIXTURES / "text" / "calib.txt"),
        "--samples",
        "4",
        "--length",
        "64",
        "--compensate",
        "refit",
        "--round-to",
        "8",
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert "compensation: least-squares refit" in result.stdout
    check = run("verify", str(FIXTURES / "tiny-llama"), str(out))
    assert check.returncode == 0, check.stdout + check.stderr
    assert "replayed on the original; before compensation" in check.stdout
    assert "not checked: 8 tensors of the layers compensated" in check.stdout
    assert "result: ok" in check.stdout


def test_prune_refuses_bad_arguments_without_writing(tmp_path):
    model = small_llama(tmp_path / "model")
    out = tmp_path / "out"
    bad = run("prune", str(model), "--ratio", "1.5", "--criterion", "magnitude", "-o", str(out))
    assert bad.returncode == 1 and "ratio must be a number in [0, 1)" in bad.stderr
    unknown = run("prune", str(model), "--ratio", "0.2", "--criterion", "best", "-o", str(out))
    assert unknown.returncode == 2 and "invalid choice: 'best'" in unknown.stderr
    missing = run("prune", str(model), "--criterion", "magnitude", "-o", str(out))
    assert missing.returncode == 1 and "give exactly one of ratio" in missing.stderr
    depth = ("--ratio", "0.5", "--criterion", "magnitude", "-o", str(out))
    layers = run("prune", str(model), "--layers", "deep", *depth)
    assert (
        layers.returncode == 2
        and "'deep' is not a non-negative int nor one of ['auto']" in layers.stderr
    )
    uncalibrated = run("prune", str(model), "--layers", "1", *depth)
    assert uncalibrated.returncode == 1 and "give --calib FILE" in uncalibrated.stderr
    assert "loading" not in uncalibrated.stderr  # refused before the model loads
    assert not out.exists()


def test_verify_of_a_directory_without_manifest_fails(tmp_path):
    model = small_llama(tmp_path / "model")
    result = run("verify", str(model), str(model))
    assert result.returncode == 1 and "no surgeon.json" in result.stderr


def test_prune_checkpoint_streams_a_sharded_checkpoint_that_verifies(tmp_path):
    model = tmp_path / "model"
    HF_MODELS["llama"]().save_pretrained(model, max_shard_size="60KB")
    out = tmp_path / "out"
    result = run(
        "prune-checkpoint", str(model), "--ratio", "0.2", "--round-to", "8", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "criteria used: magnitude" in result.stdout and "saved to" in result.stdout
    assert (out / "model.safetensors.index.json").is_file() and (out / "surgeon.json").is_file()
    check = run("verify", str(model), str(out))
    assert check.returncode == 0 and "verify: ok" in check.stdout


def test_prune_checkpoint_with_a_plan_for_another_model_fails_and_writes_nothing(tmp_path):
    model = small_llama(tmp_path / "model")
    plan = tmp_path / "plan.json"
    plan.write_text(
        json.dumps(
            {
                "format_version": 1,
                "keep": {"mlp@model.layers.0.mlp": list(range(64))},
                "remove_blocks": [],
                "sizes": {"mlp@model.layers.0.mlp": 128},
            }
        )
    )
    out = tmp_path / "out"
    result = run("prune-checkpoint", str(model), "--plan", str(plan), "-o", str(out))
    assert result.returncode == 1 and "made for another model" in result.stderr
    mixed = run(
        "prune-checkpoint", str(model), "--plan", str(plan), "--round-to", "8", "-o", str(out)
    )
    assert mixed.returncode == 1 and "drop --round-to" in mixed.stderr
    calibrated = run(
        "prune-checkpoint", str(model), "--ratio", "0.2", "--criterion", "taylor", "-o", str(out)
    )
    assert calibrated.returncode == 2 and "invalid choice" in calibrated.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "plan.json"]
