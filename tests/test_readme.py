"""The README's Python example runs and prints what it says."""

from __future__ import annotations

import contextlib
import io
import re
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
