"""One architecture per failure cause that the coverage sweep found and that is
now mended at its root: each runs every stage of the sweep (bench/coverage.py)
in its own forked process; the stages the cause broke must pass, and no stage
may return a mismatched model, crash or time out."""

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import coverage  # noqa: E402
import coverage_stages  # noqa: E402

# model type -> the cause its row used to fail on, and the stages it broke
CAUSES = {
    # head-structured groups outside an attention: the sparse-attention indexer
    # reshapes its queries by ``n_heads``, which was left at the old count
    "deepseek_v32": ("indexer heads counted by an attribute (n_heads)", ("widths", "prune")),
    # a hidden cut updates the widths the code reads under less common names
    "granitemoe_swa": ("experts reshape their output by input_size", ("hidden",)),
    "cpmant": ("the norm checks its input against dim_norm", ("hidden",)),
    # a weightless LayerNorm owns no member of the hidden group but reads its
    # width (normalized_shape, a tuple): attributes are looked for on every
    # module whose ops carry the group's axes
    "olmo": ("normalized_shape of a parameter-free norm", ("hidden",)),
    # hyper-connections: the residual stream is hidden x streams (two levels);
    # the router reads hidden_dim, which only the hidden level changes
    "hy_v4": ("hidden level of a hidden x streams group", ("hidden", "widths")),
    # the vision MLPs are described by vision_config, not the text config
    "clip": ("config fields of the sub-config the modules were built from", ("from-pretrained",)),
    # OpenAI GPT splits heads by n_head: left at the old count, the cut ran but
    # regrouped the head dims (verify caught it: a mismatch, not a refusal)
    "openai-gpt": ("head count read from n_head", ("kv-groups",)),
    # BART-style attention (MVP) reshapes its heads' output by embed_dim, a name
    # so often the hidden size that it is updated on the attention module only
    "mvp": ("heads' width read from embed_dim", ("kv-groups",)),
    # verify masks the exact groups in a copy whose inexact hidden cut already
    # shortened a dimension they share (RoCBert's concatenated embeddings)
    "roc_bert": ("masked indices counted after the inexact cut", ("hidden",)),
    # x[mask] = vector with a boolean mask: the vector joins x's width
    "t5gemma2": ("index_put with a boolean mask", ("widths", "hidden", "prune")),
    # a branch on tensor values (global attention?) is captured along the example
    # inputs by draft_export; surgeon.load re-analyses on a copy with weights
    "longformer": ("data-dependent control flow", ("analyze", "save-load", "prune")),
    # verify measures each inexact group cut alone; an encoder and decoder that
    # must share one width cannot be: measured together instead
    "encoder-decoder": ("inexact groups that cannot be cut alone", ("hidden",)),
    # surgeon.load: Falcon's attention looked frozen on the meta skeleton (a
    # rotary index its weights hid): replayed on a copy with weights
    "falcon": ("replay re-analysed with weights when a group looks frozen", ("save-load",)),
    # derived inputs: a decoder over parallel codebooks reads one row per codebook
    "musicgen": ("input_ids of batch x num_codebooks rows", ("analyze", "widths", "prune")),
    # Llama 4's RoPE multiplies complex numbers
    "llama4_text": ("view_as_complex / view_as_real", ("kv-groups", "queries")),
}


@pytest.fixture(scope="module")
def architectures():
    coverage_stages.prepare()
    return {a.model_type: a for a in coverage.discover()}


def run_rows(architectures, model_types) -> dict[str, dict]:
    """The sweep's rows of ``model_types``, as many at once as there are cores
    (each row is a child forked from this process, on one thread)."""
    model_types = sorted(set(model_types))
    workers = max(1, min(len(model_types), os.cpu_count() or 1))
    with ThreadPoolExecutor(workers) as pool:
        found = pool.map(lambda m: coverage.run_model(architectures[m], timeout=600), model_types)
        return dict(zip(model_types, found, strict=True))


@pytest.fixture(scope="module")
def rows(architectures):
    return run_rows(architectures, CAUSES)


@pytest.mark.parametrize("model_type", sorted(CAUSES))
def test_every_stage_passes(rows, model_type):
    check(rows[model_type], model_type, *CAUSES[model_type])


def check(row: dict, model_type: str, cause: str, stages: tuple[str, ...]) -> None:
    """``row`` (``model_type`` through the sweep's stages): ``stages`` pass, and
    no stage is a mismatch, crash or timeout (other test_causes_* files use it)."""
    assert coverage.buildable(row), row["stages"].get("build")
    outcomes = coverage.applicable(row)
    broken = {
        s: outcomes.get(s, {}).get("reason")
        for s in stages
        if s not in outcomes or outcomes[s]["status"] != "pass"
    }
    assert not broken, f"{model_type} ({cause}): {broken}"
    bad = {s: r["reason"] for s, r in outcomes.items() if s in coverage.failed(row)}
    assert not bad, f"{model_type}: {bad}"
