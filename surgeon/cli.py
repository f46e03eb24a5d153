"""The ``surgeon`` command: demo, inspect, graph, prune, prune-checkpoint, verify."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from surgeon.errors import SurgeonError
from surgeon.rewriters.compensate import COMPENSATIONS

__all__ = ["main"]


def _demo(args: argparse.Namespace) -> int:
    """Analyse the embedded model, cut half of every MLP, one KV group of every
    attention block and the last layer, and verify the result."""
    from surgeon import Plan, analyze, apply, verify
    from surgeon.demo import demo_model, demo_plan

    model = demo_model()
    analysis = analyze(model)
    if args.json:
        print(analysis.to_json())
        return 0
    print(analysis.summary())
    plan = Plan.for_analysis(analysis, *demo_plan(analysis))
    pruned = apply(model, plan, analysis=analysis)
    report = verify(model, pruned, plan, analysis=analysis)
    before, after = (sum(p.numel() for p in m.parameters()) for m in (model, pruned))
    removed = ", ".join(plan.remove_blocks)
    print(f"\ncut: half of every MLP, one of two KV groups per layer, {removed}")
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%})")
    print(report)
    pictures = _demo_pictures(analysis, pruned, Path(args.output))
    print("pictures:", ", ".join(str(p) for p in pictures))
    return 0 if report.ok else 1


def _demo_pictures(analysis, pruned, directory: Path) -> list[Path]:
    """The dependency graph and the HTML report of the demo cut."""
    from surgeon import analyze
    from surgeon.viz import GraphvizNotFound, html_report, render, to_dot

    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.html"
    report.write_text(html_report(analysis, analyze(pruned)), encoding="utf-8")
    written = [report]
    try:
        written.append(render(to_dot(analysis), directory / "graph.svg"))
    except GraphvizNotFound as missing:
        print(f"note: {missing}", file=sys.stderr)
    return written


def _inspect(args: argparse.Namespace) -> int:
    """The group table of a model directory, analysed on meta (weights not needed)."""
    from surgeon import analyze
    from surgeon.checkpoint.directory import load_directory

    analysis = analyze(load_directory(args.path, weights=False))
    if args.json:
        data = analysis.to_dict()
        for group in data["groups"]:
            group["flops_per_token"] = 2 * group["params_covered"]
        print(json.dumps(data, indent=2))
        return 0
    print(analysis.summary())
    return 0


def _graph(args: argparse.Namespace) -> int:
    from surgeon import analyze
    from surgeon.checkpoint.directory import load_directory
    from surgeon.viz import html_report, ops_dot, render, to_dot

    model = load_directory(args.path, weights=False)
    analysis = analyze(model)
    output = Path(args.output)
    if output.suffix == ".html":
        output.write_text(html_report(analysis), encoding="utf-8")
    else:
        layer = args.layer
        source = (
            ops_dot(model, analysis, layer=layer or 0)
            if args.view == "ops"
            else to_dot(analysis, view=args.view, layer=layer)
        )
        render(source, output)
    print(f"wrote {output}")
    return 0


def _prune(args: argparse.Namespace) -> int:
    import transformers

    from surgeon import prune, save
    from surgeon.checkpoint.directory import load_directory, model_directory

    directory = model_directory(args.path)
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise SurgeonError(f"output directory '{output}' is not empty")
    model = load_directory(directory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory) if args.calib else None
    options = _shape_options(args)
    if args.params is not None:
        options["params"] = args.params
    result = prune(
        model,
        args.ratio,
        criterion=args.criterion,
        calib=args.calib,
        tokenizer=tokenizer,
        samples=args.samples,
        length=args.length,
        compensate=args.compensate,
        **options,
    )
    print(result.report)
    if args.eval:
        from surgeon.evaluate import perplexity, text_windows

        windows = text_windows(args.eval, tokenizer, args.length, count=64)
        before, after = (perplexity(m, windows, window=args.length) for m in (model, result.model))
        print(f"perplexity on {args.eval}: {before:.3f} -> {after:.3f} ({after / before:.2f}x)")
    try:
        save(result.model, output)
        if (directory / "tokenizer_config.json").is_file():
            transformers.AutoTokenizer.from_pretrained(directory).save_pretrained(output)
    except Exception:
        shutil.rmtree(output, ignore_errors=True)
        raise
    print(f"saved to {output}")
    return 0


def _prune_checkpoint(args: argparse.Namespace) -> int:
    """Cut a safetensors checkpoint on disk, tensor by tensor (bounded memory)."""
    from surgeon.checkpoint.stream import prune_checkpoint

    if args.plan is not None:
        defaults = args.planning_defaults
        given = [o for o in ("ratio", "params") if getattr(args, o) is not None]
        given += [dest for dest, default in defaults.items() if getattr(args, dest) != default]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise SurgeonError(f"--plan replaces the planning options: drop {flag}")
        result = prune_checkpoint(args.path, args.output, plan=args.plan, progress=args.progress)
    else:
        if args.ratio is None and args.params is None:
            raise SurgeonError("give --ratio, --params or --plan")
        options = {**_shape_options(args), "heads": args.heads, "ignore": tuple(args.ignore)}
        if args.params is not None:
            options["params"] = args.params
        result = prune_checkpoint(
            args.path,
            args.output,
            args.ratio,
            criterion=args.criterion,
            seed=args.seed,
            progress=args.progress,
            **options,
        )
    print(result)
    print(f"saved to {result.path}")
    return 0


def _add_shape_options(parser: argparse.ArgumentParser) -> None:
    """The planner's shape flags, shared by ``prune`` and ``prune-checkpoint``."""
    parser.add_argument("--uniform", action="store_true", help="same width in every layer")
    parser.add_argument(
        "--hf-loadable",
        action="store_true",
        help="uniform widths and head counts that plain from_pretrained can load",
    )
    parser.add_argument("--allocation", default="global", choices=("global", "adaptive"))
    parser.add_argument(
        "--round-to", type=int, default=None, help="kept channels a multiple of N (default: auto)"
    )
    parser.add_argument("--kinds", nargs="+", default=["mlp", "expert_mlp"])
    parser.add_argument(
        "--layers",
        type=_layers,
        default="auto",
        help="whole blocks to remove, or 'auto': as many as keep decode speed in step with "
        "size (default); 0 cuts widths only",
    )


def _shape_options(args: argparse.Namespace) -> dict:
    """PlanOptions keyword arguments from the flags of :func:`_add_shape_options`."""
    return {
        "allocation": "uniform" if args.uniform else args.allocation,
        "round_to": args.round_to,
        "kinds": tuple(args.kinds),
        "hf_loadable": args.hf_loadable,
        "layers": args.layers,
    }


def _layers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is neither 'auto' nor a count") from None


def _verify(args: argparse.Namespace) -> int:
    from surgeon import Plan, verify
    from surgeon.checkpoint.directory import load_directory
    from surgeon.checkpoint.persist import MANIFEST

    manifest_path = Path(args.pruned) / MANIFEST
    if not manifest_path.is_file():
        raise SurgeonError(f"no {MANIFEST} in '{args.pruned}': not written by surgeon.save")
    manifest = json.loads(manifest_path.read_text())
    plans = manifest["plans"]
    if manifest.get("compensation"):
        checked = manifest.get("verified_cut") or {}
        print(
            f"'{args.pruned}' was compensated after the cut ({manifest['compensation']}): "
            "its weights differ from the masked original by design. The cut itself was "
            f"verified when it was made: max rel {checked.get('max_rel', float('nan')):.3g}."
        )
        return 0
    if len(plans) != 1:
        raise SurgeonError(
            f"'{args.pruned}' was made by {len(plans)} chained plans; "
            "verify checks one plan against the original"
        )
    original = load_directory(args.original)
    report = verify(original, load_directory(args.pruned), Plan.from_dict(plans[0]))
    print(report)
    return 0 if report.ok or report.inexact else 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgeon",
        description="Capture a model as an FX graph, find what must be pruned together, cut it.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="analyse, cut and verify the embedded model")
    demo.add_argument("--json", action="store_true", help="print the analysis as JSON")
    demo.add_argument(
        "-o",
        "--output",
        default="surgeon-demo",
        help="directory for graph.svg and report.html (default: surgeon-demo)",
    )
    demo.set_defaults(run=_demo)
    inspect = commands.add_parser("inspect", help="group table of a model dir (on meta)")
    inspect.add_argument("path", help="a model directory, or its config.json")
    inspect.add_argument("--json", action="store_true", help="print the analysis as JSON")
    inspect.set_defaults(run=_inspect)
    graph = commands.add_parser("graph", help="draw the dependency graph (.svg .png .dot .html)")
    graph.add_argument("path", help="a model directory, or its config.json")
    graph.add_argument("-o", "--output", required=True, help="file to write")
    graph.add_argument("--view", choices=("modules", "groups", "ops"), default="modules")
    graph.add_argument("--layer", type=int, default=None, help="the block to expand / draw")
    graph.set_defaults(run=_graph)
    prune = commands.add_parser("prune", help="score, cut, compensate, verify and save")
    prune.add_argument("path", help="a Hugging Face model directory with weights")
    target = prune.add_mutually_exclusive_group(required=True)
    target.add_argument("--ratio", type=float, help="share of block parameters to remove")
    target.add_argument("--params", type=int, help="block parameters to remove")
    prune.add_argument("--criterion", default="taylor")
    prune.add_argument("--calib", help="calibration text file")
    prune.add_argument("--eval", help="text file for perplexity before and after")
    prune.add_argument("-o", "--output", required=True, help="directory to save to")
    _add_shape_options(prune)
    prune.add_argument("--compensate", choices=sorted(COMPENSATIONS), default=None)
    prune.add_argument("--samples", type=int, default=64)
    prune.add_argument("--length", type=int, default=256)
    prune.set_defaults(run=_prune)
    stream = commands.add_parser(
        "prune-checkpoint",
        help="cut a sharded safetensors checkpoint on disk, tensor by tensor (bounded memory)",
    )
    stream.add_argument("path", help="a Hugging Face model directory with safetensors weights")
    stream.add_argument("-o", "--output", required=True, help="directory to write (new or empty)")
    stream.add_argument("--plan", help="a plan JSON file (Plan.to_json) instead of scoring")
    stream.add_argument("--ratio", type=float, help="share of block parameters to remove")
    stream.add_argument("--params", type=int, help="block parameters to remove")
    stream.add_argument(
        "--criterion",
        default="magnitude",
        choices=("magnitude", "magnitude-l1", "random"),
        help="weight-only scores (default: magnitude)",
    )
    _add_shape_options(stream)
    stream.add_argument("--heads", choices=("kv", "q"), default="kv")
    stream.add_argument("--ignore", nargs="+", default=[], help="group ids or module prefixes")
    stream.add_argument("--seed", type=int, default=0, help="for --criterion random")
    stream.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    planning = ("criterion", "uniform", "hf_loadable", "allocation", "round_to", "kinds", "layers")
    planning += ("heads", "ignore", "seed")
    stream.set_defaults(
        run=_prune_checkpoint,
        planning_defaults={dest: stream.get_default(dest) for dest in planning},
    )
    check = commands.add_parser("verify", help="check a saved cut against its original")
    check.add_argument("original", help="the original model directory")
    check.add_argument("pruned", help="a directory written by surgeon.save / surgeon prune")
    check.set_defaults(run=_verify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except (SurgeonError, OSError, ValueError) as error:
        print(f"surgeon {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
