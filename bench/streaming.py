"""Streaming surgery at scale: peak memory and time of ``surgeon prune-checkpoint``.

1. Generates a Llama-3.2-3B-shaped bf16 checkpoint (hidden 3072, 28 layers, 24 query
   / 8 KV heads of 128, MLP 8192, vocab 128256, tied embeddings as in Llama-3.2-3B)
   under /tmp in ~2 GB shards, random values, written slab by slab with the
   library's own streaming writer: the model is never in memory.
2. Runs, each in a fresh process under ``/usr/bin/time -v``: the imports alone, the
   analysis alone (``surgeon inspect``, config on meta), and the streaming prune
   (``surgeon prune-checkpoint --ratio 0.2 --criterion magnitude``, MLP channels).
3. Checks a few cut tensors against slices of the source, reports peak RSS
   ("Maximum resident set size"), wall time and input/output sizes, and deletes
   the checkpoints.

It is a benchmark, not a test: it reports numbers and checks no thresholds.

    python bench/streaming.py           # print the section
    python bench/streaming.py --write   # also replace its section of docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from doc_sections import replace_section
from environment import machine, versions

from surgeon.shapes import LLAMA3_2_3B

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## Streaming surgery"
GOAL_GB = 1.5
SHARD_BYTES = 2 * 10**9
LLAMA_3_2_3B = dict(LLAMA3_2_3B, dtype="bfloat16")
PRUNE_ARGS = ["--ratio", "0.2", "--criterion", "magnitude", "--kinds", "mlp"]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def generate(directory: Path, seed: int = 0) -> None:
    """The checkpoint, written tensor by tensor (in slabs of rows) into shards."""
    import transformers

    from surgeon.analyzers.names import ParameterNames
    from surgeon.checkpoint.shards import CHUNK_BYTES, ShardWriter

    config = transformers.LlamaConfig(**LLAMA_3_2_3B)
    with torch.device("meta"):
        model = transformers.LlamaForCausalLM(config)
    tied = ParameterNames(model).tied
    tensors = [(n, tuple(t.shape)) for n, t in model.state_dict().items() if n not in tied]
    shards, current, size = [], [], 0
    for name, shape in tensors:
        nbytes = torch.Size(shape).numel() * 2
        if current and size + nbytes > SHARD_BYTES:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape))
        size += nbytes
    shards.append(current)
    directory.mkdir(parents=True)
    config.save_pretrained(directory)
    generator = torch.Generator().manual_seed(seed)
    weight_map = {}
    for i, shard in enumerate(shards, 1):
        file_name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        writer = ShardWriter(directory / file_name, [(n, "BF16", s) for n, s in shard])
        for name, shape in shard:
            weight_map[name] = file_name
            if "norm" in name:
                writer.write(torch.ones(shape, dtype=torch.bfloat16))
                continue
            rows = max(1, CHUNK_BYTES // (2 * torch.Size(shape[1:]).numel()))
            for first in range(0, shape[0], rows):
                count = min(rows, shape[0] - first)
                slab = torch.randn((count, *shape[1:]), generator=generator) * 0.02
                writer.write(slab.to(torch.bfloat16))
        writer.close()
        log(f"wrote {file_name}")
    total = sum(torch.Size(s).numel() * 2 for _, s in tensors)
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))


def timed(command: list[str]) -> dict:
    """Run ``command`` under ``/usr/bin/time -v``; its peak RSS, wall time and stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as report:
        start = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-v", "-o", report.name, *command],
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - start
        text = Path(report.name).read_text()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{proc.stderr[-3000:]}")
    kbytes = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return {"rss_gb": kbytes * 1024 / 1e9, "wall_s": wall, "stdout": proc.stdout}


def check_slices(src: Path, out: Path) -> str:
    """Layer 0's gate_proj and down_proj in the output equal the source's kept slices."""
    from safetensors import safe_open

    def tensor(directory: Path, name: str) -> torch.Tensor:
        index = json.loads((directory / "model.safetensors.index.json").read_text())
        with safe_open(directory / index["weight_map"][name], "pt") as f:
            return f.get_tensor(name)

    plan = json.loads((out / "surgeon.json").read_text())["plans"][0]
    kept = torch.tensor(plan["keep"]["mlp@model.layers.0.mlp"])
    prefix = "model.layers.0.mlp."
    gate_ok = torch.equal(
        tensor(out, prefix + "gate_proj.weight"), tensor(src, prefix + "gate_proj.weight")[kept]
    )
    down = tensor(src, prefix + "down_proj.weight")[:, kept]
    down_ok = torch.equal(tensor(out, prefix + "down_proj.weight"), down)
    return (
        f"layer 0 keeps {len(kept)} of 8192 MLP channels; its gate_proj and down_proj\n"
        f"  equal the source's kept slices: {'yes' if gate_ok and down_ok else 'NO'}"
    )


def directory_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


ROWS = (
    ("imports", "`import torch, transformers, surgeon`"),
    ("inspect", "`surgeon inspect SRC` (the 3B config built on meta and analysed)"),
    ("prune", f"`surgeon prune-checkpoint SRC -o OUT {' '.join(PRUNE_ARGS)}`"),
)


def table(runs: dict) -> str:
    rows = ["| process | what it does | peak RSS GB | wall s |", "|---|---|---|---|"]
    for key, what in ROWS:
        rows.append(f"| {key} | {what} | {runs[key]['rss_gb']:.2f} | {runs[key]['wall_s']:.1f} |")
    return "\n".join(rows)


def phases(stdout: str) -> str:
    """The prune's own per-phase report as a table: seconds and peak RSS so far."""
    times = re.search(r"^time: (.+)$", stdout, re.M)
    memory = re.search(r"^peak RSS after each phase \(GB\): (.+)$", stdout, re.M)
    if not times or not memory:
        return "(the prune printed no per-phase report)"
    seconds = dict(part.rsplit(" ", 2)[:2] for part in times.group(1).split(", "))
    peaks = dict(part.rsplit(" ", 1) for part in memory.group(1).split(", "))
    rows = ["| phase | s | peak RSS so far GB |", "|---|---|---|"]
    rows += [f"| {name} | {seconds[name]} | {peaks.get(name, '—')} |" for name in seconds]
    return "\n".join(rows)


def section(runs: dict, sizes: dict, check: str, generate_s: float, total_s: float) -> str:
    prune = runs["prune"]
    params = re.search(r"^parameters: (.+)$", prune["stdout"], re.M)
    verdict = "met" if prune["rss_gb"] < GOAL_GB else "not met"
    return f"""{SECTION}

Goal: cut a Llama-3.2-3B-shaped bf16 checkpoint (about 6 GB on disk) on a 24 GB
machine with peak RSS under {GOAL_GB} GB. Measured here:
{prune["rss_gb"]:.2f} GB peak RSS, {prune["wall_s"]:.0f} s: {verdict}.

{table(runs)}

Inside the prune process (its own report):

{phases(prune["stdout"])}

- Checkpoint: Llama-3.2-3B shape (hidden 3072, 28 layers, 24 query / 8 KV heads of
  128, MLP 8192, vocab 128256), embeddings tied as in Llama-3.2-3B, bf16, random
  values, generated on disk in ~2 GB shards slab by slab ({generate_s:.0f} s).
  Input: {sizes["in"] / 1e9:.2f} GB in {sizes["in_shards"]} shards.
  Output: {sizes["out"] / 1e9:.2f} GB in {sizes["out_shards"]} shards.
- The cut: 20% of the block parameters, MLP channels only, magnitude scores (L2
  norms of each channel's rows and columns), global allocation. Parameters:
  {params.group(1) if params else "?"}.
- Check: {check}.
- Peak RSS is "Maximum resident set size" from `/usr/bin/time -v` (1 GB = 10^9
  bytes). Each process is fresh, so every row includes Python start-up and the
  imports of torch and transformers. The imports and the analysis on meta account
  for most of the prune's peak. Scoring adds one MLP matrix in float64 (magnitude
  runs the criterion code of `surgeon.prune` on each tensor as it is read), and
  writing adds one slab of at most 64 MB.
- Tensors are read with plain file I/O at the header's offsets. There is no memory
  mapping, because touched mapped pages would count in RSS. They are sliced and
  appended to output shards whose headers are computed up front; uncut tensors are
  copied in 64 MB chunks.
- Wall times depend on the load other jobs put on this shared machine (CPU and
  disk); peak RSS does not.
- Machine: {machine()}.
- Versions: {versions("torch", "transformers", "safetensors")}.
- Command: `python bench/streaming.py --write` (whole script: {total_s:.0f} s wall).
  The checkpoints live under /tmp and are deleted at the end.
"""


def write_doc(text: str) -> None:
    replace_section(DOC, SECTION, text)
    log(f"wrote {DOC}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in {DOC.name}")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoints under /tmp")
    args = parser.parse_args()
    started = time.perf_counter()
    root = Path(tempfile.mkdtemp(prefix="surgeon-streaming-", dir="/tmp"))
    src, out = root / "llama-3.2-3b-shape", root / "pruned"
    try:
        t0 = time.perf_counter()
        generate(src)
        generate_s = time.perf_counter() - t0
        log(f"generated {src} in {generate_s:.0f} s")
        runs = {
            "imports": timed([sys.executable, "-c", "import torch, transformers, surgeon"]),
            "inspect": timed([sys.executable, "-m", "surgeon", "inspect", str(src)]),
        }
        log("running the streaming prune")
        command = ["-m", "surgeon", "prune-checkpoint", str(src), "-o", str(out), *PRUNE_ARGS]
        runs["prune"] = timed([sys.executable, *command, "--no-progress"])
        log(runs["prune"]["stdout"])
        sizes = {
            "in": directory_bytes(src),
            "out": directory_bytes(out),
            "in_shards": len(list(src.glob("*.safetensors"))),
            "out_shards": len(list(out.glob("*.safetensors"))),
        }
        check = check_slices(src, out)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    text = section(runs, sizes, check, generate_s, time.perf_counter() - started)
    print(text)
    if args.write:
        write_doc(text)


if __name__ == "__main__":
    main()
