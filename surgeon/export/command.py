"""``surgeon export MODEL_DIR --to gguf|decilm|per-layer-config -o OUT``: serve a
model directory (plain Hugging Face, or a cut written by ``surgeon prune`` /
``surgeon.save``) through llama.cpp, vLLM-style DeciLM or transformers."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path

from surgeon.errors import SurgeonError
from surgeon.export.to_gguf import DTYPES
from surgeon.options import add_flags, check_fields, flag_values, option

__all__ = ["ExportOptions", "add_export_command"]

TARGETS = ("gguf", "decilm", "per-layer-config")


@dataclass(frozen=True)
class ExportOptions:
    """What to write: the serving format, and for GGUF the weights' dtype."""

    to: str = option(
        "gguf",
        "gguf: one file for llama.cpp / Ollama (any ragged Llama cut); decilm: a "
        "nemotron-nas checkpoint for vLLM, SGLang, TensorRT-LLM; per-layer-config: a "
        "transformers directory with config.per_layer_config",
        choices=TARGETS,
    )
    dtype: str = option("f16", "GGUF weight type (norms stay f32)", choices=DTYPES)
    tokenizer: str | None = option(None, "tokenizer directory (default: MODEL_DIR)")

    def __post_init__(self) -> None:
        check_fields(self)


def add_export_command(commands) -> None:
    """Add the ``export`` subcommand to the CLI's subparsers."""
    export = commands.add_parser(
        "export", help="write a model (cut or not) for llama.cpp (GGUF), vLLM or transformers"
    )
    export.add_argument("path", help="a model directory (plain, or saved by surgeon)")
    export.add_argument(
        "-o", "--output", required=True, help="the .gguf file, or the directory to write"
    )
    names = add_flags(export, ExportOptions)
    export.set_defaults(run=_export, option_names=names)


def _export(args: argparse.Namespace) -> int:
    from surgeon.checkpoint.directory import load_directory, model_directory

    options = ExportOptions(**flag_values(args, args.option_names))
    directory = model_directory(args.path)
    output = Path(args.output)
    if output.exists() and (output.is_file() or any(output.iterdir())):
        raise SurgeonError(f"output '{output}' exists and is not empty")
    model = load_directory(directory)
    tokenizer = options.tokenizer or str(directory)
    if options.to == "gguf":
        from surgeon.export.to_gguf import gguf

        print(gguf(model, output, dtype=options.dtype, tokenizer=tokenizer))
        return 0
    try:
        if options.to == "decilm":
            from surgeon.export.deci_config import decilm

            decilm(model, output)
        else:
            from surgeon.checkpoint.persist import save

            save(model, output, format="per_layer_config")
        _copy_tokenizer(Path(tokenizer), output)
    except Exception:
        shutil.rmtree(output, ignore_errors=True)
        raise
    print(f"wrote {output} ({options.to})")
    return 0


def _copy_tokenizer(source: Path, output: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        if (source / name).is_file():
            shutil.copy2(source / name, output / name)
