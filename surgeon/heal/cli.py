"""The ``surgeon heal`` subcommand and the healing flags of ``surgeon prune``.

Flags come from :class:`HealOptions`' fields (type, choices and help in their
metadata) through :func:`surgeon.options.add_flags`, so a new option needs no
CLI code.
The same command runs on the CPU, one GPU, or several under
``accelerate launch -m surgeon heal ...`` (only the main process writes).
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import fields
from pathlib import Path
from typing import Any

from surgeon.errors import SurgeonError
from surgeon.heal.options import HealOptions
from surgeon.options import add_flags, flag_values

__all__ = ["add_heal_command", "add_prune_flags", "prune_schedule"]

HEAL_LOG = "heal.json"


def add_heal_command(commands) -> None:
    """Register ``surgeon heal`` on the subparsers ``commands``."""
    parser = commands.add_parser(
        "heal",
        help="recover a pruned model by distillation from the original",
        description="Train a pruned model to match the original's next-token distribution, "
        "then save it as a plain model. Several GPUs: accelerate launch -m surgeon heal ...",
    )
    parser.add_argument("path", help="the pruned model directory (surgeon prune / surgeon.save)")
    parser.add_argument("--teacher", required=True, help="the original model directory")
    parser.add_argument("--data", required=True, help="training text file (.txt or .txt.xz)")
    parser.add_argument("--eval", help="held-out text file (default: the tail of --data)")
    parser.add_argument("-o", "--output", required=True, help="directory to save to (new or empty)")
    parser.set_defaults(run=run_heal, option_names=add_flags(parser, HealOptions))


def run_heal(args: argparse.Namespace) -> int:
    from accelerate.state import PartialState

    from surgeon.checkpoint.directory import checkpoint_dtype, load_directory, model_directory
    from surgeon.heal.loop import heal

    output = Path(args.output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise SurgeonError(f"output directory '{output}' is not empty")
    options = HealOptions.build(**flag_values(args, args.option_names))
    student_dir, teacher_dir = model_directory(args.path), model_directory(args.teacher)
    tokenizer_dir = student_dir if _has_tokenizer(student_dir) else teacher_dir
    tokenizer = _tokenizer(tokenizer_dir)
    student, teacher = load_directory(student_dir), load_directory(teacher_dir)
    result = heal(
        student, teacher, args.data, tokenizer=tokenizer, eval_data=args.eval, options=options
    )
    state = PartialState()
    if state.is_main_process:
        print(result)
        _save(result, tokenizer, output, checkpoint_dtype(student_dir))
        print(f"saved to {output}")
    state.wait_for_everyone()
    return 0


def add_prune_flags(parser: argparse.ArgumentParser) -> None:
    """``surgeon prune --heal-data FILE --heal-tokens N [--steps K]``."""
    parser.add_argument("--heal-data", help="training text for healing after the cut")
    parser.add_argument("--heal-tokens", type=int, help="heal for N tokens (over all steps)")
    parser.add_argument(
        "--steps", type=int, default=1, help="cut in K steps with healing between (default 1)"
    )


def prune_schedule(args: argparse.Namespace, tokenizer: Any = None, directory: Any = None):
    """The healing :class:`~surgeon.heal.Schedule` the prune flags ask for, or None
    (the tokenizer is read from ``directory`` when none is given)."""
    from surgeon.heal.iterative import Schedule

    if args.heal_tokens is None:
        if args.heal_data or args.steps != 1:
            raise SurgeonError("--heal-data and --steps need --heal-tokens N")
        return None
    if not args.heal_data:
        raise SurgeonError("--heal-tokens needs --heal-data FILE (the text to heal on)")
    if not Path(args.heal_data).is_file():
        raise SurgeonError(f"--heal-data: no such file '{args.heal_data}'")
    tokenizer = tokenizer or _tokenizer(directory or args.path)
    return Schedule(args.heal_data, args.heal_tokens, steps=args.steps, tokenizer=tokenizer)


def _save(result, tokenizer, output: Path, dtype) -> None:
    """The healed model in the pruned checkpoint's dtype, its tokenizer and the
    run's log (heal.json); on any error the directory is removed."""
    from surgeon.checkpoint.persist import save

    try:
        save(result.model, output, dtype=dtype)
        tokenizer.save_pretrained(output)
        log = {
            "options": {f.name: getattr(result.options, f.name) for f in fields(result.options)},
            "tokens": result.tokens,
            "steps": result.steps,
            "stopped_early": result.stopped_early,
            "tokens_per_second": result.tokens_per_second,
            "evaluations": result.evaluations,
            "history": result.history,
        }
        (output / HEAL_LOG).write_text(json.dumps(log, indent=1))
    except Exception:
        shutil.rmtree(output, ignore_errors=True)
        raise


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer_config.json").is_file() or (
        directory / "tokenizer.json"
    ).is_file()


def _tokenizer(directory) -> Any:
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(directory)
    except (OSError, ValueError) as error:
        raise SurgeonError(f"no tokenizer in '{directory}': {error}") from None
