"""GPU speed of pruned Llama-3-8B shapes: prefill latency and decode throughput.

Builds a Llama-3-8B-shaped model (random weights, bf16) on the GPU, prunes it
with fx-surgeon's planner at 20% and 50% of the block parameters under several
shape policies (the planner's defaults; uniform and global widths with
``round_to`` 1, 8 and 64; widths as Torch-Pruning's per-layer channel ratio
leaves them), and measures, with CUDA events, warm-up and medians:

* prefill: one forward over 1 x 2048 tokens (``logits_to_keep=1``, as
  ``generate`` does), eager, and with ``torch.compile`` for a few variants;
* decode: 128 greedy tokens at batch 1 and 16 after a 128-token prompt, with a
  static KV cache, one decode step (forward, argmax, position update) captured
  in a CUDA graph and replayed, so Python and launch overhead do not hide the
  weights' cost.

Speedups are reported beside the FLOP and parameter reduction ratios. Scores
come from the weight-only ``magnitude`` criterion: speed depends on shapes,
not on which units were kept. It is a benchmark, not a test.

Run on a CUDA machine, then render the table here::

    python bench/gpu_speed.py --out gpu_speed.json [--variants dense,default-20,...]
    python bench/gpu_speed.py --report gpu_speed.json [--write]

``--smoke`` runs a tiny shape on the CPU (no CUDA graphs) to check the harness.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from doc_sections import replace_section
from gpu_report import SECTION, report, section
from gpu_timing import decode, prefill_ms

from surgeon.shapes import LLAMA3_8B

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SMOKE = dict(
    LLAMA3_8B,
    hidden_size=256,
    intermediate_size=688,
    num_hidden_layers=2,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=32,
    vocab_size=1000,
)


@dataclass(frozen=True)
class Variant:
    """One pruned shape: a ratio and planner options, or Torch-Pruning's rule."""

    name: str
    ratio: float = 0.0
    options: dict = field(default_factory=dict)
    torch_pruning_widths: bool = False  # keep (1 - ratio) of every MLP's channels
    depth_share: float = 0.0  # share of the ratio taken as whole layers; widths do the rest


def variants() -> dict[str, Variant]:
    table = [Variant("dense")]
    for ratio in (0.2, 0.5):
        pct = int(ratio * 100)
        table.append(Variant(f"default-{pct}", ratio))
        table.append(Variant(f"width-{pct}", ratio, dict(layers=0)))
        for allocation in ("uniform", "global"):
            for step in (1, 8, 64, 128, 256):
                options = dict(allocation=allocation, round_to=step)
                table.append(Variant(f"{allocation}-r{step}-{pct}", ratio, options))
        for allocation in ("uniform", "global"):
            heads = dict(allocation=allocation, kinds=("mlp", "attention"))
            table.append(Variant(f"{allocation}-heads-{pct}", ratio, heads))
        table.append(Variant(f"tp-{pct}", ratio, torch_pruning_widths=True))
        table.append(Variant(f"layers-{pct}", ratio, depth_share=0.5))
        table.append(Variant(f"layers-quarter-{pct}", ratio, depth_share=0.25))
    # between the two: where layers="auto" starts to remove blocks (2 of 32 here)
    table += [Variant("default-30", 0.3), Variant("width-30", 0.3, dict(layers=0))]
    return {v.name: v for v in table}


def build(shape: dict, device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, attn_implementation="sdpa")
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model.eval().requires_grad_(False)


def prune(model, analysis, scores, variant: Variant, influence: dict[str, float]):
    """The pruned copy of ``model`` for ``variant`` (``model`` is not changed);
    ``influence``: block scores for the planner's ``layers="auto"``."""
    import surgeon
    from surgeon.analyzers import GroupKind
    from surgeon.plan.planner import PlanOptions, make_plan

    if variant.name == "dense":
        return model
    if variant.torch_pruning_widths:
        keep = {}
        for group in analysis.by_kind(GroupKind.MLP):
            count = group.size - int(group.size * variant.ratio)
            keep[group.id] = sorted(torch.topk(scores[group.id], count).indices.tolist())
        plan = surgeon.Plan.for_analysis(analysis, keep, ())
    elif variant.depth_share:
        plan = _depth_and_width(model, analysis, scores, variant)
    else:
        options = PlanOptions(ratio=variant.ratio, **variant.options)
        plan = make_plan(analysis, scores, options, block_scores=influence)
    return surgeon.apply(model, plan, analysis=analysis)


def _depth_and_width(model, analysis, scores, variant: Variant):
    """Remove whole late-middle layers (where ShortGPT's block influence usually
    points) for ``depth_share`` of the ratio, then cut MLP widths elsewhere."""
    import surgeon
    from surgeon.plan.planner import PlanOptions, block_parameters, make_plan

    blocks = [b.name for b in analysis.blocks if b.removable]
    count = round(len(blocks) * variant.ratio * variant.depth_share)
    removed = tuple(blocks[max(len(blocks) - count - 4, 1) :][:count])
    removed_params = sum(
        m.weight.numel()
        for name in removed
        for m in model.get_submodule(name).modules()
        if isinstance(m, torch.nn.Linear)
    )
    budget = int(variant.ratio * block_parameters(analysis)) - removed_params
    ignore = tuple(f"{name}." for name in removed)
    options = PlanOptions(params=budget, ignore=ignore, layers=0, **variant.options)
    widths = make_plan(analysis, scores, options)
    return surgeon.Plan.for_analysis(analysis, widths.keep, removed)


def shape_summary(model) -> dict:
    """Parameters, MLP widths and the FLOPs of one 2048-token prefill."""
    mlp_widths = [layer.mlp.gate_proj.out_features for layer in model.model.layers]
    layers = len(model.model.layers)
    head_dim = model.config.head_dim
    kv_heads = [layer.self_attn.k_proj.out_features // head_dim for layer in model.model.layers]
    params = sum(p.numel() for p in model.parameters())
    block = sum(
        m.weight.numel() for m in model.model.layers.modules() if isinstance(m, torch.nn.Linear)
    )
    embedding = model.get_input_embeddings().weight.numel()  # decode reads one row of it
    return {
        "params": params,
        "embedding": embedding,
        "block_linear": block,
        "mlp_widths": mlp_widths,
        "layers": layers,
        "kv_heads": kv_heads,
    }


def prefill_flops(summary: dict, model, tokens: int) -> float:
    """Matrix-product FLOPs of a causal prefill that computes the last logits only."""
    q_width = sum(layer.self_attn.q_proj.out_features for layer in model.model.layers)
    attention = 2 * tokens * tokens * q_width  # QK^T and AV, halved by the causal mask
    head = 2 * model.lm_head.weight.numel()
    return 2 * summary["block_linear"] * tokens + attention + head


def measure(model, variant: Variant, args, compiled: bool) -> dict:
    tokens = args.tokens
    summary = shape_summary(model)
    result = {"variant": asdict(variant), **summary}
    result["prefill_flops"] = prefill_flops(summary, model, tokens)
    result["prefill_ms"] = prefill_ms(model, tokens, args.device, args.repeat)
    for batch in (1, 16):
        result[f"decode_b{batch}_tok_s"], result[f"decode_b{batch}_graph_error"] = decode(
            model, batch, args.device, args.repeat
        )
    if compiled:  # inductor's fused kernels; decode steps still replayed as CUDA graphs
        torch._dynamo.config.automatic_dynamic_shapes = False  # one static graph per shape
        torch._dynamo.config.cache_size_limit = 64
        fast = torch.compile(model, dynamic=False)
        result["prefill_compiled_ms"] = prefill_ms(fast, tokens, args.device, args.repeat)
        for batch in (1, 16):
            result[f"decode_b{batch}_compiled_tok_s"], error = decode(
                fast, batch, args.device, args.repeat
            )
            result[f"decode_b{batch}_compiled_graph_error"] = error
        torch._dynamo.reset()
    return result


def run(args) -> list[dict]:
    import transformers

    import surgeon
    from surgeon.calibrate import criteria

    shape = SMOKE if args.smoke else LLAMA3_8B
    torch.manual_seed(0)
    begin = time.perf_counter()
    model = build(shape, args.device)
    log(f"built in {time.perf_counter() - begin:.1f} s")
    begin = time.perf_counter()
    analysis = surgeon.analyze(model)
    scores = {
        g.id: criteria.score_group(model, g, "magnitude", None, None)[0] for g in analysis.prunable
    }
    influence = block_influence(model, analysis, args.device)
    log(f"analyzed and scored in {time.perf_counter() - begin:.1f} s")
    table = variants()
    names = args.variants.split(",") if args.variants else list(table)
    compiled = set(args.compile.split(",")) if args.compile else set()
    results = []
    for name in names:
        begin = time.perf_counter()
        pruned = prune(model, analysis, scores, table[name], influence)
        result = measure(pruned, table[name], args, name in compiled)
        result["device"] = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
        result["torch"], result["transformers"] = torch.__version__, transformers.__version__
        result["run"] = args.run
        results.append(result)
        if args.out:  # after every variant, so a run stopped at its time limit keeps them
            args.out.write_text(json.dumps(results, indent=1))
        log(
            f"{name}: prefill {result['prefill_ms']:.2f} ms, decode b1 "
            f"{result['decode_b1_tok_s']:.1f} tok/s, b16 {result['decode_b16_tok_s']:.1f} tok/s "
            f"({time.perf_counter() - begin:.1f} s)"
        )
        if pruned is not model:
            del pruned
            if args.device == "cuda":
                torch.cuda.empty_cache()
    return results


def block_influence(model, analysis, device: str) -> dict[str, float]:
    """ShortGPT's block influence on random tokens: the weights are random too, so
    this only gives ``layers="auto"`` an order; speed depends on how many go."""
    from surgeon.calibrate.calibration import calibrate

    generator = torch.Generator().manual_seed(0)
    batches = [torch.randint(0, model.config.vocab_size, (2, 256), generator=generator)]
    blocks = [b.name for b in analysis.blocks if b.removable]
    stats = calibrate(model, [b.to(device) for b in batches], blocks=blocks, progress=False)
    return stats.block_influence


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="write the measurements as JSON")
    parser.add_argument("--report", type=Path, nargs="+", help="render JSON measurements")
    parser.add_argument("--write", action="store_true", help=f"write '{SECTION}' of the docs")
    parser.add_argument("--variants", help=f"comma-separated subset of: {', '.join(variants())}")
    parser.add_argument("--compile", default="", help="variants also timed with torch.compile")
    parser.add_argument("--tokens", type=int, default=2048, help="prefill length")
    parser.add_argument("--repeat", type=int, default=20, help="timed repetitions (median)")
    parser.add_argument("--smoke", action="store_true", help="tiny shape on the CPU")
    args = parser.parse_args()
    args.device = "cpu" if args.smoke else "cuda"
    args.run = time.strftime("%Y%m%dT%H%M%S")
    if args.report:
        results = [r for path in args.report for r in json.loads(path.read_text())]
        text = section(results, "python bench/gpu_speed.py --out run.json [--variants ...]")
        print(text)
        if args.write:
            replace_section(DOC, SECTION, text)
        return
    if args.smoke:
        args.tokens, args.repeat = 64, 2
    results = run(args)
    print(report(results))


if __name__ == "__main__":
    main()
