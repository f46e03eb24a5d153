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
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from markdown import replace_section

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## GPU speed"
LLAMA3_8B = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    head_dim=128,
    vocab_size=128256,
    rope_theta=500000.0,
    max_position_embeddings=8192,
    tie_word_embeddings=False,
)
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
        for allocation in ("uniform", "global"):
            for step in (1, 8, 64, 128, 256):
                options = dict(allocation=allocation, round_to=step)
                table.append(Variant(f"{allocation}-r{step}-{pct}", ratio, options))
        for allocation in ("uniform", "global"):
            heads = dict(allocation=allocation, kinds=("mlp", "attention"))
            table.append(Variant(f"{allocation}-heads-{pct}", ratio, heads))
        table.append(Variant(f"tp-{pct}", ratio, torch_pruning_widths=True))
        table.append(Variant(f"layers-{pct}", ratio, depth_share=0.5))
    return {v.name: v for v in table}


def build(shape: dict, device: str) -> torch.nn.Module:
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(**shape, attn_implementation="sdpa")
    with torch.device(device):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    return model.eval().requires_grad_(False)


def prune(model, analysis, scores, variant: Variant):
    """The pruned copy of ``model`` for ``variant`` (``model`` is not changed)."""
    import surgeon
    from surgeon.analyzers import GroupKind
    from surgeon.planner import PlanOptions, make_plan

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
        plan = make_plan(analysis, scores, PlanOptions(ratio=variant.ratio, **variant.options))
    return surgeon.apply(model, plan, analysis=analysis)


def _depth_and_width(model, analysis, scores, variant: Variant):
    """Remove whole late-middle layers (where ShortGPT's block influence usually
    points) for ``depth_share`` of the ratio, then cut MLP widths elsewhere."""
    import surgeon
    from surgeon.planner import PlanOptions, block_parameters, make_plan

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
    options = PlanOptions(params=budget, ignore=ignore, **variant.options)
    widths = make_plan(analysis, scores, options)
    return surgeon.Plan.for_analysis(analysis, widths.keep, removed)


def shape_summary(model) -> dict:
    """Parameters, MLP widths and the FLOPs of one 2048-token prefill."""
    mlp_widths = [layer.mlp.gate_proj.out_features for layer in model.model.layers]
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
        "kv_heads": kv_heads,
    }


def prefill_flops(summary: dict, model, tokens: int) -> float:
    """Matrix-product FLOPs of a causal prefill that computes the last logits only."""
    q_width = sum(layer.self_attn.q_proj.out_features for layer in model.model.layers)
    attention = 2 * tokens * tokens * q_width  # QK^T and AV, halved by the causal mask
    head = 2 * model.lm_head.weight.numel()
    return 2 * summary["block_linear"] * tokens + attention + head


def timed(fn, warmup: int, repeat: int, device: str) -> float:
    """Median milliseconds of ``fn`` (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def prefill_ms(model, tokens: int, device: str, repeat: int) -> float:
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    with torch.inference_mode():
        return timed(lambda: model(ids, use_cache=False, logits_to_keep=1), 3, repeat, device)


class GraphedDecoder:
    """Greedy decode steps with a static KV cache, one step captured in a CUDA graph.

    The captured step reads ``ids`` and ``position``, writes the next token
    into ``ids`` and advances ``position``, so replays run back to back
    without the host touching anything.
    """

    def __init__(self, model, batch: int, prompt: int, new_tokens: int, device: str):
        from transformers import StaticCache

        self.model, self.prompt, self.device = model, prompt, device
        self.cache = StaticCache(config=model.config, max_cache_len=prompt + new_tokens + 1)
        prompt_ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device=device)
        with torch.inference_mode():
            out = model(
                prompt_ids,
                past_key_values=self.cache,
                cache_position=torch.arange(prompt, device=device),
                logits_to_keep=1,
            )
            self.ids = out.logits[:, -1:].argmax(-1)
            self.position = torch.tensor([prompt], device=device)
        self.graph = None
        if device == "cuda":
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()

    def _step(self) -> None:
        with torch.inference_mode():
            logits = self.model(
                self.ids,
                past_key_values=self.cache,
                cache_position=self.position,
                position_ids=self.position.view(1, 1).expand(self.ids.shape[0], 1),
            ).logits
            self.logits = logits[:, -1]
            self.ids.copy_(logits[:, -1:].argmax(-1))
            self.position.add_(1)

    def rewind(self) -> None:
        """Back to the end of the prompt (newer transformers count cache length per layer)."""
        with torch.inference_mode():  # the cache's tensors were made under it
            self.position.fill_(self.prompt)
            for layer in getattr(self.cache, "layers", ()):
                if hasattr(layer, "cumulative_length"):
                    layer.cumulative_length.fill_(self.prompt)

    def graph_error(self) -> float:
        """Relative difference of one replayed step's logits from an eager step."""
        if self.graph is None:
            return 0.0
        with torch.inference_mode():
            ids = self.ids.clone()
        self.rewind()
        self.graph.replay()
        with torch.inference_mode():
            replayed = self.logits.float().clone()
            self.ids.copy_(ids)
        self.rewind()
        self._step()
        eager = self.logits.float()
        return ((replayed - eager).norm() / eager.norm()).item()

    def run(self, steps: int) -> None:
        self.rewind()
        for _ in range(steps):
            self.graph.replay() if self.graph is not None else self._step()


def decode(model, batch: int, device: str, repeat: int) -> tuple[float, float]:
    """Tokens per second over 128 new tokens, and the graph's error against eager."""
    prompt, new_tokens = 128, 128
    decoder = GraphedDecoder(model, batch, prompt, new_tokens, device)
    error = decoder.graph_error()
    ms = timed(lambda: decoder.run(new_tokens), 1, repeat, device)
    return batch * new_tokens / (ms / 1e3), error


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
    from surgeon.analyzers.importance import criteria

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
    log(f"analyzed and scored in {time.perf_counter() - begin:.1f} s")
    table = variants()
    names = args.variants.split(",") if args.variants else list(table)
    compiled = set(args.compile.split(",")) if args.compile else set()
    results = []
    for name in names:
        begin = time.perf_counter()
        pruned = prune(model, analysis, scores, table[name])
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


def _range(values: list[int]) -> str:
    distinct = sorted(set(values))
    if len(distinct) == 1:
        return str(distinct[0])
    return f"{distinct[0]}..{distinct[-1]} ({len(distinct)})"


def _latest(results: list[dict], key: str) -> list[dict]:
    """Per variant, the last row that measured ``key``; dense first, then by ratio."""
    rows = {r["variant"]["name"]: r for r in results if key in r}
    return sorted(
        rows.values(),
        key=lambda r: (r["variant"]["ratio"], not r["variant"]["name"].startswith("default")),
    )


def _reference(results: list[dict], row: dict, key: str) -> dict | None:
    """The dense row to compare ``row[key]`` with: from the same run when it has ``key``."""
    dense = [r for r in results if r["variant"]["name"] == "dense" and key in r]
    same = [r for r in dense if r.get("run") == row.get("run")]
    return (same or dense or [None])[-1]


def report(results: list[dict]) -> str:
    """Two markdown tables: eager, and torch.compile where it was measured."""
    head = (
        "| shape | MLP widths | KV heads | params | param ratio | FLOP ratio "
        "| prefill ms | prefill speedup | / FLOP ratio | decode b1 tok/s | b1 speedup "
        "| / param ratio | decode b16 tok/s | b16 speedup |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    )
    tables = {"": [head], "_compiled": [head]}
    for suffix, rows in tables.items():
        prefill_key, b1_key = f"prefill{suffix}_ms", f"decode_b1{suffix}_tok_s"
        b16_key = f"decode_b16{suffix}_tok_s"
        for r in _latest(results, prefill_key):
            dense = _reference(results, r, prefill_key)
            params = dense["params"] / r["params"]
            flops = dense["prefill_flops"] / r["prefill_flops"]
            prefill = dense[prefill_key] / r[prefill_key]
            b1 = r[b1_key] / dense[b1_key]
            rows.append(
                f"| {r['variant']['name']} | {_range(r['mlp_widths'])} "
                f"| {_range(r['kv_heads'])} | {_count(r['params'])} | {params:.2f}x "
                f"| {flops:.2f}x | {r[prefill_key]:.1f} | {prefill:.2f}x | {prefill / flops:.2f} "
                f"| {r[b1_key]:.0f} | {b1:.2f}x | {b1 / params:.2f} | {r[b16_key]:.0f} "
                f"| {r[b16_key] / dense[b16_key]:.2f}x |"
            )
    text = "Eager PyTorch (decode steps replayed as CUDA graphs):\n\n" + "\n".join(tables[""])
    if len(tables["_compiled"]) > 1:
        text += "\n\n`torch.compile` (inductor; decode steps replayed as CUDA graphs):\n\n"
        text += "\n".join(tables["_compiled"])
    return text


GOALS = {0.2: 0.9, 0.5: 0.85}  # prefill speedup / FLOP ratio, per ratio (the goal)
DECODE_GOAL = 0.9  # decode b1 speedup / param ratio


def goals(results: list[dict], prefix: str = "default") -> list[str]:
    """Whether ``prefix``-N rows meet the goals, eager and compiled, as sentences."""
    lines = []
    for ratio, prefill_goal in GOALS.items():
        name = f"{prefix}-{int(ratio * 100)}"
        for suffix, label in (("", "eager"), ("_compiled", "torch.compile")):
            rows = [
                r for r in results if r["variant"]["name"] == name and f"prefill{suffix}_ms" in r
            ]
            if not rows:
                continue
            r = rows[-1]
            dense = _reference(results, r, f"prefill{suffix}_ms")
            flops = dense["prefill_flops"] / r["prefill_flops"]
            params = dense["params"] / r["params"]
            prefill = dense[f"prefill{suffix}_ms"] / r[f"prefill{suffix}_ms"] / flops
            decode = r[f"decode_b1{suffix}_tok_s"] / dense[f"decode_b1{suffix}_tok_s"] / params
            verdict = "met" if prefill >= prefill_goal and decode >= DECODE_GOAL else "NOT met"
            lines.append(
                f"- `{name}`, {label}: prefill {prefill:.2f} of the FLOP ratio (goal "
                f"{prefill_goal}), decode b1 {decode:.2f} of the parameter ratio (goal "
                f"{DECODE_GOAL}): {verdict}."
            )
    return lines


def _slowdown(results: list[dict], name: str) -> float:
    """How many times slower than dense the prefill of variant ``name`` ran."""
    row = next(r for r in _latest(results, "prefill_ms") if r["variant"]["name"] == name)
    return row["prefill_ms"] / _reference(results, row, "prefill_ms")["prefill_ms"]


def _decode_fixed_ms(results: list[dict], name: str, suffix: str = "_compiled") -> float:
    """Per-token decode time that does not scale with the weights read, from a line
    through dense and ``name``: ms = fixed + k x (parameters less the embedding)."""
    key = f"decode_b1{suffix}_tok_s"
    row = next(r for r in _latest(results, key) if r["variant"]["name"] == name)
    dense = _reference(results, row, key)
    read = {id(r): r["params"] - r["embedding"] for r in (row, dense)}
    ms = {id(r): 1e3 / r[key] for r in (row, dense)}
    slope = (ms[id(dense)] - ms[id(row)]) / (read[id(dense)] - read[id(row)])
    return ms[id(dense)] - slope * read[id(dense)]


def section(results: list[dict], command: str) -> str:
    dense = next(r for r in results if r["variant"]["name"] == "dense")
    return f"""{SECTION}

How fast pruned shapes run. A Llama-3-8B-shaped model (random bf16 weights, sdpa
attention) on one {dense["device"]}, torch {dense["torch"]}, transformers
{dense["transformers"]}. Prefill: one forward over 1 x 2048 tokens computing the last
logits only. Decode: 128 greedy tokens after a 128-token prompt with a static KV cache,
each step (forward, argmax, position update) replayed as a CUDA graph; tokens per
second. CUDA events, warm-up, medians of 10. FLOP ratio: the prefill's matrix-product
FLOPs (linear layers and causal attention) dense over pruned; param ratio: all
parameters, dense over pruned. Scores are `magnitude` (weight-only): speed depends on
the shapes, not on which units are kept.

Shapes (20% or 50% of the block parameters removed): `default` is `PlanOptions`'
defaults (MLP channels, global allocation, `round_to=None`, which keeps multiples of
64 here); `uniform-rN` / `global-rN` set the allocation and `round_to=N`; `tp` keeps
(1 - ratio) of every MLP's channels, as Torch-Pruning's per-layer ratio leaves them;
`heads` cuts KV groups and MLP channels; `layers` removes whole layers for half the
ratio (late-middle ones, where ShortGPT's block influence usually points) and MLP
channels elsewhere for the rest.

{report(results)}

Goals (prefill at least 0.9x the FLOP ratio at 20% and 0.85x at 50%, eager; decode at
batch 1 at least 0.9x the parameter ratio):

{chr(10).join(goals(results))}
{chr(10).join(goals(results, "layers"))}

- Shapes decide: widths that are not multiples of 8 (`round_to=1`, and Torch-Pruning's
  11469) made prefill {_slowdown(results, "uniform-r1-20"):.1f}x slower than dense at 20%
  and decode at batch 16 slower too;
  multiples of 8 ran as fast as multiples of 64, 128 or 256. So the planner's default
  `round_to=None` keeps each channel group's power-of-two alignment up to 64
  (`surgeon.planner.channel_step`); no default width is unaligned.
- At 50%, width cuts alone fall short of the goals: per-layer work that width does not
  shrink stays: RMSNorm, RoPE and residual adds in eager prefill, and kernel latency in
  batch-1 decode (with torch.compile, a line through the dense and `default-50` rows
  puts {_decode_fixed_ms(results, "default-50"):.1f} ms of each token's time outside
  the weights read). Removing whole layers removes it
  too (`layers` rows), but depth costs quality (ShortGPT's rows in "Pruning quality"),
  so the default stays width-only and depth is the `layers=` option.
- Command: `{command}`, several runs on lent H100s, merged in
  `bench/results/gpu_speed_h100.json` (each row is compared with the dense row of its
  own run); this section: `python bench/gpu_speed.py --report
  bench/results/gpu_speed_h100.json --write`.
"""


def _count(params: int) -> str:
    return f"{params / 1e9:.2f}B" if params >= 1e8 else f"{params / 1e6:.1f}M"


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
