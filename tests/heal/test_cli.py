"""``surgeon heal`` as a user runs it: a pruned directory, the original, a text
file; the output loads with plain from_pretrained. The same command under
``accelerate launch`` with two CPU processes (gloo) trains data parallel to the
same weights. Bad inputs exit non-zero and write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import transformers as hf

import surgeon
from tests.heal.conftest import fixtures

STEPS = 2
FLAGS = ["--tokens", str(STEPS * 4 * 64), "--seq-len", "64", "--batch-size", "4"]
FLAGS += ["--eval-windows", "2", "--no-progress", "--precision", "fp32"]


def surgeon_cli(*args: str, launcher: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = (
        [*launcher, "-m", "surgeon", *args]
        if launcher
        else [sys.executable, "-m", "surgeon", *args]
    )
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def pruned_dir(tmp_path_factory, pruned, tokenizer):
    path = tmp_path_factory.mktemp("pruned")
    surgeon.save(pruned, path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def one_process(pruned_dir, text_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("healed") / "out"
    teacher = str(fixtures() / "tiny-llama")
    result = surgeon_cli(
        "heal",
        str(pruned_dir),
        "--teacher",
        teacher,
        "--data",
        str(text_file),
        "-o",
        str(out),
        *FLAGS,
    )
    return result, out


def test_heal_saves_a_plain_model_with_its_log(one_process, pruned):
    result, out = one_process
    assert result.returncode == 0, result.stderr
    assert "healed: 512 tokens in 2 steps" in result.stdout and "saved to" in result.stdout
    log = json.loads((out / "heal.json").read_text())
    assert log["steps"] == STEPS  # evaluated before, then ten times a run at most: each step
    assert [e["step"] for e in log["evaluations"]] == list(range(STEPS + 1))
    model = hf.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    shapes = {k: v.shape for k, v in pruned.state_dict().items()}
    assert {k: v.shape for k, v in model.state_dict().items()} == shapes
    assert hf.AutoTokenizer.from_pretrained(out)("def f").input_ids
    manifest = json.loads((out / "surgeon.json").read_text())
    assert "healed by distillation" in manifest["compensation"]
    reloaded = surgeon.load(out)
    assert all(torch.equal(reloaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_two_cpu_processes_under_accelerate_launch_reach_the_same_weights(
    one_process, pruned, pruned_dir, text_file, tmp_path
):
    launcher = (
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", "29531",
    )  # fmt: skip
    out = tmp_path / "out"
    teacher = str(fixtures() / "tiny-llama")
    args = ("heal", str(pruned_dir), "--teacher", teacher, "--data", str(text_file), "-o", str(out))
    result = surgeon_cli(*args, *FLAGS, launcher=launcher)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("saved to") == 1  # the main process writes, once
    single = hf.AutoModelForCausalLM.from_pretrained(one_process[1], dtype=torch.float32)
    parallel = hf.AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    # each process takes 2 of the 4 sequences of a step and DDP averages the gradients:
    # the weights agree but for rounding (a few elements whose tiny gradients Adam
    # normalises); unsynchronised processes would disagree on most of them
    a, b = single.state_dict(), parallel.state_dict()
    count = sum(v.numel() for v in a.values())
    differ = sum(int((~torch.isclose(a[k], b[k], atol=1e-5, rtol=1e-4)).sum()) for k in a)
    trained = sum(
        int((~torch.isclose(a[k], v, atol=1e-5, rtol=1e-4)).sum())
        for k, v in pruned.state_dict().items()
    )
    assert differ < 1e-4 * count and trained > 0.5 * count
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-3


@pytest.mark.parametrize("case", ["missing data", "vocabulary", "not empty"])
def test_bad_inputs_exit_non_zero_and_write_nothing(case, pruned_dir, text_file, tmp_path):
    teacher, data, out = str(fixtures() / "tiny-llama"), str(text_file), tmp_path / "out"
    if case == "missing data":
        data, message = str(tmp_path / "none.txt"), "does not exist"
    elif case == "vocabulary":
        config = hf.LlamaConfig(
            vocab_size=512, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
            num_attention_heads=2, num_key_value_heads=1,
        )  # fmt: skip
        hf.LlamaForCausalLM(config).save_pretrained(tmp_path / "small")
        teacher, message = str(tmp_path / "small"), "vocabulary (512) differs"
    else:
        out.mkdir()
        (out / "keep.txt").write_text("mine")
        message = "is not empty"
    checkpoints = tmp_path / "ck"
    result = surgeon_cli(
        "heal", str(pruned_dir), "--teacher", teacher, "--data", data, "-o", str(out),
        "--checkpoint-dir", str(checkpoints), *FLAGS,
    )  # fmt: skip
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert result.stdout == "" and not checkpoints.exists()
    assert not out.exists() or [p.name for p in out.iterdir()] == ["keep.txt"]


def test_prune_heal_flags_are_checked_before_anything_is_written(text_file, tmp_path):
    model, out = str(fixtures() / "tiny-llama"), tmp_path / "out"
    base = ("prune", model, "--ratio", "0.3", "--criterion", "magnitude", "-o", str(out))
    for extra, message in (
        (("--heal-tokens", "1000"), "--heal-tokens needs --heal-data"),
        (("--steps", "2"), "need --heal-tokens"),
        (("--heal-tokens", "1000", "--heal-data", str(tmp_path / "none.txt")), "no such file"),
    ):
        result = surgeon_cli(*base, *extra)
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert not out.exists()
