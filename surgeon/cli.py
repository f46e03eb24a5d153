"""The ``surgeon`` command: demo, inspect, graph, prune, prune-checkpoint, verify, export."""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from surgeon.calibrate.options import CalibrationOptions
from surgeon.checkpoint.stream_plan import StreamOptions
from surgeon.errors import SurgeonError
from surgeon.export.command import add_export_command
from surgeon.heal.cli import add_heal_command, add_prune_flags, prune_schedule
from surgeon.options import add_flags, flag_values
from surgeon.plan.options import PlanOptions
from surgeon.progress import phase
from surgeon.rewriters.options import CutOptions

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
    pictures = _demo_pictures(analysis, pruned, Path(args.output), plan.remove_blocks)
    print("pictures:", ", ".join(str(p) for p in pictures))
    return 0 if report.ok else 1


def _demo_pictures(analysis, pruned, directory: Path, removed_blocks=()) -> list[Path]:
    """The dependency graph and the HTML report of the demo cut."""
    from surgeon import analyze
    from surgeon.viz import GraphvizNotFound, html_report, render, to_dot

    directory.mkdir(parents=True, exist_ok=True)
    report = directory / "report.html"
    page = html_report(analysis, analyze(pruned), removed_blocks=removed_blocks)
    report.write_text(page, encoding="utf-8")
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
        print(analysis.to_json())
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
    from surgeon.calibrate.criteria import CRITERIA
    from surgeon.checkpoint.config_file import loading_note
    from surgeon.checkpoint.directory import checkpoint_dtype, load_directory, model_directory
    from surgeon.prune import split_options

    options = flag_values(args, args.option_names)
    ratio = options.pop("ratio", None)
    if args.speed:
        options.setdefault("layers", "auto")
    scoring, planning, _ = split_options(ratio, options)  # bad options fail before loading
    if planning.layers not in (0, "auto") and not args.calib:
        raise SurgeonError(
            f"--layers {planning.layers} removes the blocks of least influence, measured on "
            "calibration data: give --calib FILE"
        )
    if CRITERIA[scoring.criterion].needs_calibration and not args.calib:
        raise SurgeonError(
            f"criterion '{scoring.criterion}' reads activations: give --calib FILE (text like "
            "the model's training data), or --criterion magnitude for a weight-only cut"
        )
    for flag, path in (("--calib", args.calib), ("--eval", args.eval)):
        if path and not Path(path).is_file():
            raise SurgeonError(f"{flag}: no such file '{path}'")
    if args.report and Path(args.report).suffix != ".html":
        raise SurgeonError(f"--report writes an HTML page: give a .html file, not '{args.report}'")
    directory = model_directory(args.path)
    output = Path(args.output)
    if output.exists() and any(output.iterdir()):
        raise SurgeonError(f"output directory '{output}' is not empty")
    phase(f"loading {directory}")
    model = load_directory(directory)
    needs_tokenizer = args.calib or args.eval
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory) if needs_tokenizer else None
    heal = prune_schedule(args, tokenizer, directory)  # None without --heal-tokens
    result = prune(model, ratio, calib=args.calib, tokenizer=tokenizer, heal=heal, **options)
    print(result.report)
    if args.eval:
        from surgeon.evaluate import perplexity, text_windows

        phase(f"evaluating on {args.eval}")
        windows = text_windows(args.eval, tokenizer, scoring.length, count=64)
        before, after = (
            perplexity(m, windows, window=scoring.length) for m in (model, result.model)
        )
        print(f"perplexity on {args.eval}: {before:.3f} -> {after:.3f} ({after / before:.2f}x)")
    dtype = checkpoint_dtype(directory) if args.dtype == "auto" else args.dtype
    phase(f"saving to {output} in {str(dtype or 'float32').removeprefix('torch.')}")
    try:
        save(result.model, output, dtype=dtype)
        if (directory / "tokenizer_config.json").is_file():
            transformers.AutoTokenizer.from_pretrained(directory).save_pretrained(output)
    except Exception:
        shutil.rmtree(output, ignore_errors=True)
        raise
    print(f"saved to {output}")
    print(loading_note(output))
    if args.report:
        _html_report(model, result, args.report)
    return 0


def _html_report(model, result, path: str) -> None:
    """The HTML report of the cut: groups before and after, scores."""
    from surgeon import analyze
    from surgeon.viz import html_report

    phase(f"writing {path}")
    before = analyze(model)
    known = {group.id for group in before.groups}
    scores = {k: v.tolist() for k, v in result.scores.items() if k in known}
    page = html_report(before, analyze(result.model), scores, result.plan.remove_blocks)
    Path(path).write_text(page, encoding="utf-8")
    print(f"report: {path}")


def _prune_checkpoint(args: argparse.Namespace) -> int:
    """Cut a safetensors checkpoint on disk, tensor by tensor (bounded memory)."""
    from surgeon.checkpoint.stream import prune_checkpoint

    options = flag_values(args, args.option_names)
    if args.plan is not None:
        if options:
            flag = "--" + sorted(options)[0].replace("_", "-")
            raise SurgeonError(f"--plan replaces the planning options: drop {flag}")
        result = prune_checkpoint(args.path, args.output, plan=args.plan, progress=args.progress)
    else:
        if options.get("ratio") is None and options.get("params") is None:
            raise SurgeonError("give --ratio, --params or --plan")
        ratio = options.pop("ratio", None)
        result = prune_checkpoint(args.path, args.output, ratio, progress=args.progress, **options)
    print(result)
    print(f"saved to {result.path}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    """Replay the saved plans on the original, verify each step, and compare the
    saved tensors with the verified cut (see surgeon.checkpoint.recheck)."""
    from surgeon.checkpoint.recheck import recheck

    phase(f"replaying the plans of {args.pruned} on {args.original}")
    result = recheck(args.original, args.pruned)
    print(result)
    return 0 if result.ok else 1


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
    prune = commands.add_parser(
        "prune",
        help="score, cut, compensate, verify and save (defaults: the best measured recipe)",
    )
    prune.add_argument("path", help="a Hugging Face model directory with weights")
    prune.add_argument("--calib", help="calibration text file")
    prune.add_argument("--eval", help="text file for perplexity before and after")
    prune.add_argument("-o", "--output", required=True, help="directory to save to")
    prune.add_argument(
        "--dtype",
        default="auto",
        choices=("auto", "float32", "bfloat16", "float16"),
        help="dtype of the saved weights (default: auto, the checkpoint's own; "
        "the cut is computed in float32)",
    )
    prune.add_argument("--report", help="also write the HTML report of the cut to this .html file")
    prune.add_argument(
        "--speed",
        action="store_true",
        help="favour decode speed: also remove whole blocks (--layers auto); costs perplexity",
    )
    names = []
    for cls in (CalibrationOptions, PlanOptions, CutOptions):
        section = prune.add_argument_group(cls.__name__, (cls.__doc__ or "").split("\n")[0])
        names += add_flags(section, cls)
    add_prune_flags(prune.add_argument_group("healing", "distil from the original after the cut"))
    prune.set_defaults(run=_prune, option_names=names)
    stream = commands.add_parser(
        "prune-checkpoint",
        help="cut a sharded safetensors checkpoint on disk, tensor by tensor (bounded memory)",
    )
    stream.add_argument("path", help="a Hugging Face model directory with safetensors weights")
    stream.add_argument("-o", "--output", required=True, help="directory to write (new or empty)")
    stream.add_argument("--plan", help="a plan JSON file (Plan.to_json) instead of scoring")
    stream.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars"
    )
    names = add_flags(stream, StreamOptions) + add_flags(stream, PlanOptions)
    stream.set_defaults(run=_prune_checkpoint, option_names=names)
    check = commands.add_parser("verify", help="check a saved cut against its original")
    check.add_argument("original", help="the original model directory")
    check.add_argument("pruned", help="a directory written by surgeon.save / surgeon prune")
    check.set_defaults(run=_verify)
    add_export_command(commands)
    add_heal_command(commands)
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
