"""Streaming surgery: a checkpoint cut on disk equals the in-memory cut, bit for bit."""

from __future__ import annotations

import json

import pytest
import safetensors.torch
import torch
import transformers as hf
from safetensors import safe_open
from safetensors.torch import load_file

import surgeon
import surgeon.checkpoint.shards
import surgeon.checkpoint.stream
from surgeon.checkpoint.shards import ShardWriter, open_checkpoint, read_rows, read_tensor
from surgeon.rewriters.resolve import units_of
from tests.zoo import DECODER, HF_MODELS, _build


def checkpoint(tmp_path, tied: bool = False, dtype=torch.float32):
    """A small GQA Llama saved in several shards; with ``tied`` the embeddings are
    tied as in Llama-3.2-3B."""
    model = (
        _build(hf.LlamaForCausalLM, hf.LlamaConfig, **DECODER, head_dim=8, tie_word_embeddings=True)
        if tied
        else HF_MODELS["llama"]()
    )
    source = tmp_path / "source"
    model.to(dtype).save_pretrained(source, max_shard_size="60KB")
    assert len(list(source.glob("*.safetensors"))) > 2
    return source


def tensors(directory) -> dict[str, torch.Tensor]:
    out = {}
    for file in directory.glob("*.safetensors"):
        with safe_open(file, "pt") as f:
            out.update({k: f.get_tensor(k) for k in f.keys()})  # noqa: SIM118
    return out


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def assert_same_checkpoint(streamed, in_memory):
    a, b = tensors(streamed), tensors(in_memory)
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name
    for file in ("surgeon.json", "config.json"):
        assert json.loads((streamed / file).read_text()) == json.loads(
            (in_memory / file).read_text()
        )


def mlp_and_kv_plan(analysis, remove_block: bool):
    attention = analysis.group("attention@model.layers.1.self_attn")
    return surgeon.Plan.for_analysis(
        analysis,
        {
            "mlp@model.layers.0.mlp": list(range(0, 96, 2)),
            "mlp@model.layers.1.mlp": [*range(10, 40), *range(60, 92)],
            attention.id: units_of({"kv": (1,), "q": (0, 1, 2, 3)}, attention),
        },
        remove_blocks=("model.layers.0",) if remove_block else (),
    )


@pytest.mark.parametrize(
    "tied, dtype, remove_block",
    [(False, torch.float32, False), (True, torch.bfloat16, True)],
    ids=["fp32", "tied-bf16-layer-removed"],
)
def test_a_streamed_cut_equals_the_in_memory_cut_bit_for_bit(
    tmp_path, monkeypatch, tied, dtype, remove_block
):
    monkeypatch.setattr(surgeon.checkpoint.shards, "CHUNK_BYTES", 1000)  # many slabs per tensor
    source = checkpoint(tmp_path, tied, dtype)
    model = hf.AutoModelForCausalLM.from_pretrained(source, dtype=dtype).eval()
    analysis = surgeon.analyze(model)
    plan = mlp_and_kv_plan(analysis, remove_block)
    pruned = surgeon.apply(model, plan, analysis=analysis)
    surgeon.save(pruned, tmp_path / "in_memory")

    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan.to_json())
    result = surgeon.prune_checkpoint(source, tmp_path / "streamed", plan=plan_file, progress=False)

    streamed = tmp_path / "streamed"
    assert result.plan == plan and result.shards > 1
    assert (streamed / "model.safetensors.index.json").is_file()
    assert_same_checkpoint(streamed, tmp_path / "in_memory")
    loaded = surgeon.load(streamed)
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(loaded, ids), logits(pruned, ids))


def test_a_streamed_cut_can_be_streamed_again_and_the_plans_chain(tmp_path):
    source = checkpoint(tmp_path)
    model = hf.AutoModelForCausalLM.from_pretrained(source).eval()
    analysis = surgeon.analyze(model)
    first = mlp_and_kv_plan(analysis, remove_block=True)
    once = surgeon.apply(model, first, analysis=analysis)
    analysis = surgeon.analyze(once)  # old layer 1 is layer 0 now, with 62 channels
    second = surgeon.Plan.for_analysis(analysis, {"mlp@model.layers.0.mlp": list(range(0, 62, 2))})
    twice = surgeon.apply(once, second, analysis=analysis)
    surgeon.save(twice, tmp_path / "in_memory")

    surgeon.prune_checkpoint(source, tmp_path / "once", plan=first, progress=False)
    surgeon.prune_checkpoint(tmp_path / "once", tmp_path / "twice", plan=second, progress=False)

    assert_same_checkpoint(tmp_path / "twice", tmp_path / "in_memory")
    assert len(json.loads((tmp_path / "twice" / "surgeon.json").read_text())["plans"]) == 2
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(surgeon.load(tmp_path / "twice"), ids), logits(twice, ids))


def test_ratio_with_magnitude_makes_the_plan_prune_makes_and_reloads_plainly(tmp_path):
    source = checkpoint(tmp_path)
    options = dict(criterion="magnitude", kinds=("mlp", "attention"), allocation="uniform")
    result = surgeon.prune_checkpoint(source, tmp_path / "streamed", 0.3, progress=False, **options)

    model = hf.AutoModelForCausalLM.from_pretrained(source).eval()
    expected = surgeon.prune(model, 0.3, verify=False, progress=False, **options)
    assert result.plan == expected.plan and result.plan.keep
    assert set(result.criterion.values()) == {"magnitude"}
    surgeon.save(expected.model, tmp_path / "in_memory")
    assert_same_checkpoint(tmp_path / "streamed", tmp_path / "in_memory")
    assert result.plain_from_pretrained
    plain = hf.AutoModelForCausalLM.from_pretrained(tmp_path / "streamed").eval()
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(plain, ids), logits(expected.model, ids))


@pytest.mark.parametrize("name", ["phi3", "gpt2"])
def test_fused_and_transposed_weights_stream_bit_for_bit(name, tmp_path):
    """Phi-3's fused qkv / gate_up (cut rows in two runs) and GPT-2's Conv1D
    (weights stored transposed)."""
    source = tmp_path / "source"
    HF_MODELS[name]().save_pretrained(source, max_shard_size="60KB")
    options = dict(criterion="magnitude", kinds=("mlp", "attention"), allocation="uniform")
    result = surgeon.prune_checkpoint(source, tmp_path / "streamed", 0.5, progress=False, **options)
    model = hf.AutoModelForCausalLM.from_pretrained(source).eval()
    surgeon.save(surgeon.apply(model, result.plan), tmp_path / "in_memory")
    assert {group.split("@")[0] for group in result.plan.keep} == {"mlp", "attention"}
    assert_same_checkpoint(tmp_path / "streamed", tmp_path / "in_memory")


@pytest.mark.parametrize("name", ["mixtral", "qwen3_moe"])
@pytest.mark.parametrize("allocation", ["uniform", "global"])
def test_per_expert_checkpoints_stream_bit_for_bit(name, allocation, tmp_path):
    """transformers saves experts one tensor each and fuses them at load time;
    streaming reads them the same way and writes the fused tensors surgeon.save
    writes, expert by expert."""
    source = tmp_path / "source"
    HF_MODELS[name]().save_pretrained(source, max_shard_size="60KB")
    assert any(".experts.0." in key for key in surgeon.checkpoint.stream.open_checkpoint(source))
    options = dict(kinds=("experts", "expert_mlp"), allocation=allocation, layers=0)
    result = surgeon.prune_checkpoint(source, tmp_path / "streamed", 0.4, progress=False, **options)
    model = hf.AutoModelForCausalLM.from_pretrained(source).eval()
    expected = surgeon.prune(model, 0.4, criterion="magnitude", verify=False, **options)
    assert result.plan == expected.plan
    kinds = {group.split("@")[0] for group in result.plan.keep}
    assert "experts" in kinds and (allocation == "global" or "expert_mlp" in kinds)
    surgeon.save(expected.model, tmp_path / "in_memory")
    assert_same_checkpoint(tmp_path / "streamed", tmp_path / "in_memory")
    reloaded = surgeon.load(tmp_path / "streamed")
    ids = torch.randint(0, 128, (2, 6))
    assert torch.equal(logits(reloaded, ids), logits(expected.model, ids))


def test_a_checkpoint_missing_an_expert_is_refused_before_anything_is_written(tmp_path):
    source = tmp_path / "source"
    HF_MODELS["mixtral"]().save_pretrained(source)
    weights = safetensors.torch.load_file(source / "model.safetensors")
    del weights["model.layers.1.block_sparse_moe.experts.2.w3.weight"]
    safetensors.torch.save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(surgeon.SurgeonError, match="per-expert tensors of '.*layers.1.*' are"):
        surgeon.prune_checkpoint(source, tmp_path / "out", 0.2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_a_per_expert_checkpoint_with_a_stray_tensor_is_refused(tmp_path):
    source = tmp_path / "source"
    HF_MODELS["mixtral"]().save_pretrained(source)
    weights = safetensors.torch.load_file(source / "model.safetensors")
    weights["model.layers.0.block_sparse_moe.extra.weight"] = torch.zeros(2, 2)
    safetensors.torch.save_file(weights, source / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(surgeon.SurgeonError, match="block_sparse_moe.extra.weight.*model has not"):
        surgeon.prune_checkpoint(source, tmp_path / "out", 0.2, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_a_plan_for_another_model_is_refused_and_nothing_is_written(tmp_path):
    source = checkpoint(tmp_path)
    wider = _build(hf.LlamaForCausalLM, hf.LlamaConfig, **{**DECODER, "intermediate_size": 128})
    plan = surgeon.Plan.for_analysis(
        surgeon.analyze(wider), {"mlp@model.layers.0.mlp": list(range(64))}
    )
    with pytest.raises(surgeon.PlanError, match="made for another model"):
        surgeon.prune_checkpoint(source, tmp_path / "out", plan=plan, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch):
    source = checkpoint(tmp_path)

    def broken(writer, job):
        raise OSError(f"disk full while writing {job.name}")

    monkeypatch.setattr(surgeon.checkpoint.stream, "_write_one", broken)
    with pytest.raises(OSError, match="disk full"):
        surgeon.prune_checkpoint(source, tmp_path / "out", 0.2, criterion="random", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["source"]


def test_criteria_that_need_calibration_are_refused(tmp_path):
    source = checkpoint(tmp_path)
    with pytest.raises(surgeon.InputError, match="need calibration data"):
        surgeon.prune_checkpoint(source, tmp_path / "out", 0.2, criterion="taylor")
    with pytest.raises(surgeon.InputError, match="and layers=... need calibration data"):
        surgeon.prune_checkpoint(source, tmp_path / "out", 0.2, layers=1)
    assert not (tmp_path / "out").exists()


def test_auto_depth_without_block_scores_warns_and_streams_widths(tmp_path):
    deeper = {**DECODER, "num_hidden_layers": 4}
    source = tmp_path / "source"
    _build(hf.LlamaForCausalLM, hf.LlamaConfig, **deeper, head_dim=8).save_pretrained(source)
    with pytest.warns(UserWarning, match="layers='auto': 1 whole blocks.*only widths are cut"):
        result = surgeon.prune_checkpoint(
            source, tmp_path / "out", 0.5, progress=False, layers="auto", allocation="uniform"
        )
    assert result.plan.remove_blocks == () and result.plan.keep
    assert hf.AutoConfig.from_pretrained(tmp_path / "out").num_hidden_layers == 4


def test_the_shard_writer_and_reader_round_trip_through_safetensors(tmp_path, monkeypatch):
    monkeypatch.setattr(surgeon.checkpoint.shards, "CHUNK_BYTES", 40)  # two rows of "a"
    values = {
        "a": torch.randn(7, 5),
        "b": torch.randn(3, 4, 6).to(torch.bfloat16),
        "scalar": torch.tensor(3, dtype=torch.int64),
        "mask": torch.rand(9) > 0.5,
    }
    dtypes = {torch.float32: "F32", torch.bfloat16: "BF16", torch.int64: "I64", torch.bool: "BOOL"}
    writer = ShardWriter(
        tmp_path / "model.safetensors", [(k, dtypes[v.dtype], v.shape) for k, v in values.items()]
    )
    for value in values.values():  # in slabs of two rows, as streaming writes them
        for slab in value.split(2) if value.dim() else [value]:
            writer.write(slab)
    writer.close()
    loaded = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(loaded[k], v) for k, v in values.items())
    entries = open_checkpoint(tmp_path)
    assert list(entries) == list(values)
    assert all(torch.equal(read_tensor(entries[k]), v) for k, v in values.items())
    rows = [0, 1, 2, 5, 6]
    slabs = list(read_rows(entries["a"], rows))
    assert len(slabs) == 3 and torch.equal(torch.cat(slabs), values["a"][rows])


def test_a_short_shard_or_a_directory_without_weights_is_an_error(tmp_path):
    writer = ShardWriter(tmp_path / "x.safetensors", [("a", "F32", (4,))])
    writer.write(torch.zeros(3))
    with pytest.raises(surgeon.SurgeonError, match="wrote 12 bytes of tensor data, expected 16"):
        writer.close()
    with pytest.raises(surgeon.SurgeonError, match="no model.safetensors"):
        open_checkpoint(tmp_path)
