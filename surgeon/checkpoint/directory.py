"""Loading what the command line is pointed at: a Hugging Face model directory
(weights optional) or a directory written by ``surgeon.save``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from surgeon.errors import SurgeonError

__all__ = ["load_directory", "model_directory"]


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

    from surgeon.checkpoint.persist import MANIFEST, load

    directory = model_directory(path)
    if weights and (directory / MANIFEST).is_file():
        return load(directory)
    has_weights = any(directory.glob("*.safetensors"))
    config = transformers.AutoConfig.from_pretrained(directory, trust_remote_code=False)
    model_class = _auto_class(config)
    if weights and has_weights:
        return model_class.from_pretrained(
            directory, dtype=torch.float32, trust_remote_code=False
        ).eval()
    with torch.device("meta"):
        return model_class.from_config(config, trust_remote_code=False).eval()


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
