"""The trained tiny-llama fixture and three cuts of it, built once per session:
dense, uniform (every MLP halved) and ragged (a different MLP width in every
layer, one KV group fewer in two layers, one layer removed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import transformers

import surgeon

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures"
TINY_LLAMA = FIXTURES / "tiny-llama"


@pytest.fixture(scope="session")
def tiny_llama_dir() -> Path:
    if not (TINY_LLAMA / "config.json").is_file():
        pytest.fail(f"the tiny-llama fixture is missing: expected {TINY_LLAMA} beside the checkout")
    return TINY_LLAMA


@pytest.fixture(scope="session")
def tokenizer(tiny_llama_dir):
    return transformers.AutoTokenizer.from_pretrained(tiny_llama_dir)


@pytest.fixture(scope="session")
def dense(tiny_llama_dir):
    return transformers.AutoModelForCausalLM.from_pretrained(
        tiny_llama_dir, dtype=torch.float32
    ).eval()


@pytest.fixture(scope="session")
def analysis(dense):
    return surgeon.analyze(dense)


def kept(size: int, count: int, seed: int) -> list[int]:
    """``count`` of ``size`` units, spread by a fixed random draw."""
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(size, generator=generator)[:count].tolist())


@pytest.fixture(scope="session")
def uniform(dense, analysis):
    keep = {g.id: kept(g.size, g.size // 2, i) for i, g in enumerate(analysis.by_kind("mlp"))}
    return surgeon.apply(dense, surgeon.Plan.for_analysis(analysis, keep=keep), analysis=analysis)


@pytest.fixture(scope="session")
def ragged(dense, analysis):
    """MLP widths 1024, 960, ... (64 fewer per layer), KV group 1 of layer 2 and
    KV group 0 of layer 5 removed (with their query heads), layer 6 removed."""
    keep = {g.id: kept(g.size, g.size - 64 * i, i) for i, g in enumerate(analysis.by_kind("mlp"))}
    attention = analysis.group("attention@model.layers.2.self_attn")
    per_kv = attention.q_per_kv
    keep["attention@model.layers.2.self_attn"] = list(range(per_kv))
    keep["attention@model.layers.5.self_attn"] = list(range(per_kv, 2 * per_kv))
    plan = surgeon.Plan.for_analysis(analysis, keep=keep, remove_blocks=("model.layers.6",))
    return surgeon.apply(dense, plan, analysis=analysis)


@pytest.fixture(scope="session")
def cuts(dense, uniform, ragged):
    return {"dense": dense, "uniform": uniform, "ragged": ragged}
