"""The README's Python example runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_python_example_runs_and_its_comments_hold():
    example = next(block for block in python_blocks() if "surgeon.analyze(model)" in block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), {})
    printed = out.getvalue()
    assert "2 4 8" in printed
    assert "model.layers.0.self_attn.q_proj.weight 0 kv(2) x q(4) x 8" in printed
    assert "vocabulary: rows are looked up by token ids" in printed


def test_the_cutting_example_verifies_generates_and_round_trips():
    example = next(block for block in python_blocks() if "surgeon.apply(" in block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), {})
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("True ") and float(lines[0].split()[1]) <= 1e-5
    assert lines[1:] == ["torch.Size([1, 8])", "True"]


def test_the_rule_example_registers_a_rule():
    from surgeon.analyzers.rules import lookup

    example = next(block for block in python_blocks() if "@register" in block)
    exec(compile(example, str(README), "exec"), {})
    assert lookup("mylib.fused_gelu_linear.default") is not None


def test_the_healing_example_distils_and_saves_a_plain_model():
    example = next(block for block in python_blocks() if "surgeon.heal(" in block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), {})
    assert out.getvalue().splitlines() == ["True", "LlamaForCausalLM 20"]


def run_example(marker: str) -> list[str]:
    """Run the README's python block holding ``marker`` as written; its printed lines."""
    example = next(block for block in python_blocks() if marker in block)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), {})
    return out.getvalue().splitlines()


def test_the_prune_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it writes pruned/ and uniform/ where it runs
    printed = run_example("surgeon.prune(model, 0.2, calib=calib)")
    assert printed[0].startswith("target: ratio=0.2 of block parameters; achieved: ")
    assert any("checked: the cut before compensation" in line for line in printed)
    assert printed[-1] == "False True"  # ragged by default; uniform loads plainly
    assert (tmp_path / "pruned" / "surgeon.json").is_file()


def test_the_streaming_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    printed = run_example("surgeon.prune_checkpoint(")
    assert printed[-1] == "192"
    assert (tmp_path / "llama-pruned" / "model.safetensors.index.json").is_file()


def demo_block() -> str:
    text = README.read_text()
    start = text.index("It prints:\n\n```\n") + len("It prints:\n\n```\n")
    return text[start : text.index("```", start)]


def masked(text: str) -> str:
    """Float rounding differs between machines: mask the measured errors."""
    return re.sub(r"\d\.\d+e[-+]\d+", "<float>", text)


def test_the_demo_output_block_is_what_surgeon_demo_prints(tmp_path):
    demo = subprocess.run(
        [sys.executable, "-m", "surgeon", "demo"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stderr
    assert masked(demo.stdout) == masked(demo_block())
