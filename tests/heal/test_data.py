"""Bad inputs fail before anything trains: the error names the file or the
option and says what to do."""

from __future__ import annotations

import lzma

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.heal.data import pack, prepare, token_ids
from tests.heal.conftest import TINY


def test_text_xz_tensor_and_batches_give_the_same_stream(text_file, tokenizer, tmp_path):
    compressed = tmp_path / "train.txt.xz"
    with lzma.open(compressed, "wt", encoding="utf-8") as handle:
        handle.write(text_file.read_text())
    plain = token_ids(text_file, tokenizer)
    assert torch.equal(token_ids(compressed, tokenizer), plain)
    rows = pack(plain, 50)
    assert torch.equal(token_ids(rows), plain[: rows.numel()])
    batches = [{"input_ids": rows[:3]}, rows[3:7]]
    assert torch.equal(token_ids(batches), plain[: 7 * 50])
    assert token_ids(iter(batches), limit=100).numel() == 150  # stops once enough is read


def test_held_out_windows_come_from_the_tail_or_the_evaluation_data(ids):
    data = prepare(ids, None, 64, 8192, eval_windows=4)
    assert data.held_out.shape == (4, 256) and torch.equal(data.held_out[-1], ids[-256:])
    assert data.train.numel() <= ids.numel() - 4 * 256
    other = prepare(ids, None, 64, 8192, eval_data=ids[:2000], eval_windows=64)
    assert other.held_out.shape == (7, 256) and other.held_out_source == "evaluation data"


def write_bytes(path, data: bytes):
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: tmp / "missing.txt", "does not exist"),
        (lambda tmp: write_bytes(tmp / "broken.txt.xz", b"not xz at all"), "not a readable .xz"),
        (lambda tmp: write_bytes(tmp / "binary.bin", bytes(range(256)) * 8), "not UTF-8"),
        (lambda tmp: write_bytes(tmp / "empty.txt", b""), "fewer than one sequence"),
        (
            lambda tmp: write_bytes(tmp / "short.txt", b"just a few words"),
            "fewer than one sequence",
        ),
    ],
)
def test_bad_data_files_are_refused_before_training(
    make, message, student, teacher, tokenizer, tmp_path
):
    path = make(tmp_path)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    with pytest.raises(surgeon.InputError, match=message):
        surgeon.heal(
            student,
            teacher,
            path,
            tokenizer=tokenizer,
            tokens=256,
            checkpoint_dir=str(tmp_path / "ck"),
            **TINY,
        )
    assert not (tmp_path / "ck").exists()
    assert all(torch.equal(v, student.state_dict()[k]) for k, v in before.items())


def test_a_teacher_of_another_vocabulary_is_refused(student, ids):
    config = hf.LlamaConfig(
        vocab_size=1000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
        num_attention_heads=2, num_key_value_heads=1,
    )  # fmt: skip
    other = hf.LlamaForCausalLM(config)
    with pytest.raises(surgeon.InputError, match=r"teacher's vocabulary \(1000\) differs"):
        surgeon.heal(student, other, ids, tokens=256, **TINY)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (torch.tensor([[1, 2, 9000] * 40]), "token id 9000, beyond the model's vocabulary of 8192"),
        (torch.rand(4, 64), "integer token ids"),
        (torch.zeros(0, dtype=torch.long), "fewer than one sequence"),
        ([], "fewer than one sequence"),
        (12, "text file, a tensor of token ids or batches"),
    ],
)
def test_unusable_token_data_is_refused(data, message, student, teacher):
    with pytest.raises(surgeon.InputError, match=message):
        surgeon.heal(student, teacher, data, tokens=256, **TINY)


def test_options_are_checked(student, teacher, ids):
    for bad, message in (
        ({"ce_weight": 1.5}, "ce_weight must be in"),
        ({"schedule": "step"}, "schedule must be one of"),
        ({"resume": True}, "needs checkpoint_dir"),
        ({"batch_sz": 4}, "unknown option"),
        ({"batch_size": 4, "micro_batch": 3}, "does not divide"),
    ):
        with pytest.raises(surgeon.InputError, match=message):
            surgeon.heal(student, teacher, ids, tokens=256, **{**TINY, **bad})
    with pytest.raises(surgeon.InputError, match="needs a teacher"):
        surgeon.heal(student, None, ids, tokens=256, **TINY)


def test_data_too_short_to_hold_out_trains_without_evaluations(student, teacher, ids):
    result = surgeon.heal(student, teacher, ids[: 20 * 64], tokens=256, **TINY)
    assert result.evaluations == [] and result.held_out == "none" and result.steps == 1
    assert result.perplexity_after is None and "held-out" not in str(result)
