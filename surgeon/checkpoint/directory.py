"""Loading what the command line is pointed at: a Hugging Face model directory
(weights optional) or a directory written by ``surgeon.save``."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from surgeon.errors import SurgeonError

__all__ = ["checkpoint_dtype", "load_directory", "model_directory"]


def model_directory(path: str | Path) -> Path:
    path = Path(path)
    directory = path.parent if path.name == "config.json" else path
    if not (directory / "config.json").is_file():
        raise SurgeonError(f"no config.json in '{directory}': give a Hugging Face model directory")
    return directory


def load_directory(path: str | Path, weights: bool = True) -> nn.Module:
    """The model in ``path``: from ``surgeon.save`` if it holds a manifest, else
    plain ``from_pretrained`` (no remote code); on meta when ``weights`` is False
    or the directory has none."""
    import transformers

    from surgeon.checkpoint.persist import MANIFEST, load, read_manifest, replay

    directory = model_directory(path)
    if (directory / MANIFEST).is_file():  # its config.json may not describe it: replay
        return load(directory) if weights else replay(read_manifest(directory)).eval()
    has_weights = any(directory.glob("*.safetensors"))
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=False)
    model_class = _auto_class(config)
    if weights and has_weights:
        return model_class.from_pretrained(
            directory, dtype=torch.float32, trust_remote_code=False
        ).eval()
    with torch.device("meta"):
        return model_class.from_config(config, trust_remote_code=False).eval()


def checkpoint_dtype(path: str | Path) -> torch.dtype | None:
    """The floating-point dtype most of the directory's weights are stored in
    (from the safetensors headers), else the config's ``dtype``; None if neither
    says. ``load_directory`` computes in float32; saving in this dtype keeps a
    bfloat16 checkpoint bfloat16 on disk."""
    from surgeon.checkpoint.shards import open_checkpoint

    directory = model_directory(path)
    counts: dict[torch.dtype, int] = {}
    try:
        entries = open_checkpoint(directory).values()
    except SurgeonError:
        entries = ()
    for entry in entries:
        if entry.torch_dtype.is_floating_point:
            counts[entry.torch_dtype] = counts.get(entry.torch_dtype, 0) + entry.nbytes
    if counts:
        return max(counts, key=counts.get)
    config = json.loads((directory / "config.json").read_text())
    named = config.get("dtype") or config.get("torch_dtype")
    value = getattr(torch, named, None) if isinstance(named, str) else None
    return value if isinstance(value, torch.dtype) else None


def _auto_class(config):
    import transformers

    for auto in (
        transformers.AutoModelForCausalLM,
        transformers.AutoModelForSeq2SeqLM,
        transformers.AutoModelForImageClassification,
        transformers.AutoModel,
    ):
        if type(config) in auto._model_mapping:
            return auto
    raise SurgeonError(f"no transformers model class for config {type(config).__name__}")
