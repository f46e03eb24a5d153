"""Shared inputs of the healing tests: the trained tiny-llama fixture, a cut of
it, and a small slice of its training distribution as token ids."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import transformers as hf

import surgeon

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = SHARED / "fixtures"
SLICE = 120_000  # characters of calib.txt the tests train on


def fixtures() -> Path:
    assert FIXTURES.is_dir(), f"the trained fixtures are missing: expected {FIXTURES.resolve()}"
    return FIXTURES


# Small and fast on a shared CPU: 4 sequences of 64 tokens a step.
TINY = {"seq_len": 64, "batch_size": 4, "eval_windows": 4, "progress": False, "precision": "fp32"}


@pytest.fixture(scope="session")
def tokenizer():
    return hf.AutoTokenizer.from_pretrained(fixtures() / "tiny-llama")


@pytest.fixture(scope="session")
def teacher():
    model = hf.AutoModelForCausalLM.from_pretrained(fixtures() / "tiny-llama", dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def pruned(teacher):
    """Half of every MLP of the fixture, uniform widths (plain from_pretrained loads it)."""
    result = surgeon.prune(
        teacher, 0.5, criterion="magnitude", layers=0, allocation="uniform", progress=False
    )
    return result.model


@pytest.fixture
def student(pruned):
    return copy.deepcopy(pruned)


@pytest.fixture(scope="session")
def text_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("text") / "train.txt"
    text = (fixtures() / "text" / "calib.txt").read_text(encoding="utf-8")[:SLICE]
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ids(text_file, tokenizer) -> torch.Tensor:
    return tokenizer(text_file.read_text(), return_tensors="pt").input_ids[0]
