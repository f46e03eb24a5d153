"""The README's serving example runs (on the tiny-llama fixture) and prints
what its comments say."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def serving_example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    return next(block for block in blocks if "from surgeon.export import gguf" in block)


def test_the_serving_example_exports_a_ragged_cut_llama_cpp_runs(
    tiny_llama_dir, tmp_path, monkeypatch
):
    example = serving_example()
    assert 'model_dir = "tiny-llama"' in example
    example = example.replace('"tiny-llama"', repr(str(tiny_llama_dir)))
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(out):
        exec(compile(example, str(README), "exec"), namespace)
    printed = out.getvalue()
    assert "\ndeci\n" in "\n" + printed
    continuation = printed.split("deci\n", 1)[1]
    assert continuation.strip(), printed
    widths = {layer.ffn for layer in namespace["written"].shape.layers}
    assert len(widths) > 1 and (tmp_path / "cut.gguf").stat().st_size > 0
