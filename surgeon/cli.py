"""The ``surgeon`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from surgeon.errors import SurgeonError

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
    print(
        f"\ncut: half of every MLP, one of two KV groups per layer, {', '.join(plan.remove_blocks)}"
    )
    print(f"parameters: {before:,} -> {after:,} ({after / before:.1%})")
    print(report)
    return 0 if report.ok else 1


def _inspect(args: argparse.Namespace) -> int:
    """Analyse a Hugging Face model directory (or a config.json) on the meta
    device: the structure needs no weights."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    from surgeon import analyze

    path = Path(args.path)
    directory = path.parent if path.name == "config.json" else path
    if not (directory / "config.json").is_file():
        raise SurgeonError(f"no config.json in '{directory}': give a Hugging Face model directory")
    config = AutoConfig.from_pretrained(directory, trust_remote_code=False)
    with torch.device("meta"):
        try:
            model = AutoModelForCausalLM.from_config(config, trust_remote_code=False)
        except ValueError:
            model = AutoModel.from_config(config, trust_remote_code=False)
    analysis = analyze(model.eval())
    print(analysis.to_json() if args.json else analysis.summary())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="surgeon",
        description="Capture a model as an FX graph and find what must be pruned together.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="analyse the embedded default model (no download) and print its groups"
    )
    demo.add_argument("--json", action="store_true", help="print the analysis as JSON")
    demo.set_defaults(run=_demo)
    inspect = commands.add_parser(
        "inspect", help="analyse a Hugging Face model directory on meta (weights not needed)"
    )
    inspect.add_argument("path", help="a model directory, or its config.json")
    inspect.add_argument("--json", action="store_true", help="print the analysis as JSON")
    inspect.set_defaults(run=_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return args.run(args)
    except SurgeonError as error:
        print(f"surgeon {args.command}: error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
