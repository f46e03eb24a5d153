"""``surgeon export`` as a user runs it: on a directory written by surgeon.save
(a ragged cut with its tokenizer), with the fewest flags."""

from __future__ import annotations

import pytest

import surgeon
from surgeon.cli import main
from tests.export.llama_cpp_run import cpp_logits_and_greedy, relative, torch_logits_and_greedy
from tests.export.test_gguf_llama_cpp import PROMPT


@pytest.fixture(scope="module")
def saved_ragged(ragged, tokenizer, tmp_path_factory):
    directory = tmp_path_factory.mktemp("ragged")
    surgeon.save(ragged, directory)
    tokenizer.save_pretrained(directory)
    return directory


def test_export_writes_a_gguf_llama_cpp_runs_like_the_saved_cut(
    saved_ragged, ragged, tokenizer, tmp_path, capsys
):
    output = tmp_path / "cut.gguf"
    assert main(["export", str(saved_ragged), "-o", str(output)]) == 0
    assert "deci, 7 layers" in capsys.readouterr().out
    ids = tokenizer(PROMPT)["input_ids"]
    cpp_first, cpp_tokens = cpp_logits_and_greedy(output, ids, 16)
    torch_first, torch_tokens = torch_logits_and_greedy(ragged, ids, 16)
    assert relative(cpp_first, torch_first) <= 5e-3  # f16 weights (the default)
    assert cpp_tokens == torch_tokens


def test_export_refuses_what_the_format_cannot_say_and_writes_nothing(
    saved_ragged, tmp_path, capsys
):
    output = tmp_path / "decilm"
    assert main(["export", str(saved_ragged), "--to", "decilm", "-o", str(output)]) == 1
    error = capsys.readouterr().err
    assert "surgeon export: error:" in error and "query heads differ" in error
    assert not output.exists()
    transformers_dir = tmp_path / "hf"
    assert (
        main(["export", str(saved_ragged), "--to", "per-layer-config", "-o", str(transformers_dir)])
        == 1
    )
    assert "does not build its layers from config.per_layer_config" in capsys.readouterr().err
    assert not transformers_dir.exists()
    with pytest.raises(SystemExit):  # argparse: invalid choice
        main(["export", str(saved_ragged), "--dtype", "q4", "-o", str(output)])
    assert "invalid choice: 'q4'" in capsys.readouterr().err
