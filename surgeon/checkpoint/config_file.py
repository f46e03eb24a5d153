"""``config.json`` of a saved cut: it describes the saved shapes, or it makes
plain ``from_pretrained`` refuse the directory with a message naming ``surgeon.load``.

A config holds one width per kind (``intermediate_size``, ``num_attention_heads``);
a ragged cut (a different width per layer) has none, and neither has a cut
whose shapes the config's own validators refuse. Writing the original or the
cut config there would let ``from_pretrained`` build the wrong shapes and fail
on a size mismatch that points at the user's code. Instead the config is
marked twice, both times with a sentence naming ``surgeon.load`` (``MARK``):

* ``model_type`` is the sentence, so ``AutoConfig`` (and every ``AutoModel*``)
  refuses it with a ``ValueError`` quoting it. ``AutoTokenizer`` catches that
  error and reads the config as a generic one, so the tokenizer saved beside
  still loads from the same directory. The original type is kept under
  ``fx_surgeon.original_type``.
* each width field that no longer holds is the sentence too: transformers'
  configs are strict dataclasses (5.x), so the model's own class
  (``LlamaForCausalLM.from_pretrained``) refuses it on the field's type.
  Where no width field applies, ``architectures`` (a list) carries it.

Both refusals are checked after writing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from surgeon.analyzers import GroupKind
from surgeon.checkpoint.provenance import Provenance
from surgeon.errors import SurgeonError
from surgeon.rewriters.config_fields import CONFIG_FIELDS, HEAD_FIELDS

__all__ = ["MARK", "describes_itself", "loading_note", "refusal", "write_config"]

MARK = (
    "fx-surgeon pruned model whose shapes no config.json can describe (widths differ "
    "per layer, or the config's validators refuse them; see surgeon.json): "
    "load it with surgeon.load(path)"
)
CONFIG = "config.json"
log = logging.getLogger("surgeon.checkpoint")
# every config field holding one width (or head count) of a kind for all layers
_WIDTH_FIELDS = {**CONFIG_FIELDS, GroupKind.ATTENTION: tuple(HEAD_FIELDS)}


def describes_itself(model: nn.Module) -> bool:
    """True if ``model.config`` alone rebuilds ``model``'s shapes, so plain
    ``from_pretrained`` loads a saved copy."""
    config = getattr(model, "config", None)
    if not hasattr(config, "to_dict"):
        return False
    from accelerate import init_empty_weights

    try:
        rebuilt_config = type(config).from_dict(config.to_dict())
        with init_empty_weights(include_buffers=False):
            rebuilt = type(model)(rebuilt_config)
    except Exception:  # the config's validators, or the modules built from it
        # (BERT, GPT-J, BART: "hidden size is not a multiple of the number of
        # attention heads"), refuse the cut shapes
        return False
    shapes = {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    return shapes == {k: tuple(v.shape) for k, v in model.state_dict().items()}


def write_config(model: nn.Module, path: Path, dtype: torch.dtype | None = None) -> bool:
    """Write config.json (and generation_config.json) for the cut ``model`` saved
    in ``dtype``; return whether plain ``from_pretrained`` loads the directory.
    When it does not, config.json is marked so that loading it fails naming
    ``surgeon.load`` (checked here)."""
    config = getattr(model, "config", None)
    if not hasattr(config, "to_dict"):
        return False
    generation = getattr(model, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(path)
    loadable = describes_itself(model)
    config.to_json_file(path / CONFIG, use_diff=True)  # no validation: it may refuse the cut
    data = json.loads((path / CONFIG).read_text())
    if dtype is not None:
        data["dtype"] = str(dtype).removeprefix("torch.")
    if not loadable:
        _mark(data, config, Provenance.of(model))
    (path / CONFIG).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if not loadable and refusal(path, type(config)) is None:
        data["architectures"] = MARK
        (path / CONFIG).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        if refusal(path) is None:
            raise SurgeonError(
                f"AutoConfig would load '{path}' although its shapes are not the config's: "
                "save it elsewhere"
            )
        if refusal(path, type(config)) is None:
            # non-strict configs (BERT, T5, OPT...) take any value: saving still
            # succeeds (AutoConfig and AutoModel refuse, surgeon.load replays)
            log.warning(
                "%s accepts any value in config.json: %s.from_pretrained('%s') would not "
                "refuse it (AutoConfig/AutoModel do); load it with surgeon.load",
                type(config).__name__,
                type(model).__name__,
                path,
            )
    return loadable


def loading_note(path: str | Path) -> str:
    """One line for the user: how to load the saved directory ``path``."""
    path = Path(path)
    if json.loads((path / "surgeon.json").read_text()).get("plain_from_pretrained"):
        return f"load it with: from_pretrained('{path}') (plain transformers), or surgeon.load"
    if not (path / CONFIG).is_file():
        return f"load it with: surgeon.load('{path}', model=<a fresh copy of the original>)"
    return f"load it with: surgeon.load('{path}') (plain from_pretrained refuses it)"


def refusal(path: Path, config_class: type | None = None) -> str | None:
    """The errors plain ``AutoConfig.from_pretrained`` (and ``config_class``'s
    own ``from_pretrained``) give on ``path``, when each names ``surgeon.load``;
    None when either loads or fails for another reason."""
    import transformers

    errors = []
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()  # "a model of type ... to instantiate ..."
    try:
        for reader in (transformers.AutoConfig, config_class):
            if reader is None:
                continue
            try:
                reader.from_pretrained(path, trust_remote_code=False)
            except Exception as error:  # a ValueError, or the strict dataclass' error
                if "surgeon.load" not in str(error):
                    return None
                errors.append(str(error))
            else:
                return None
    finally:
        transformers.logging.set_verbosity(verbosity)
    return "\n".join(errors)


def _mark(data: dict[str, Any], config, provenance: Provenance | None) -> None:
    """Set every width field the cut left untrue (a kind cut to different widths
    keeps its original value) to ``MARK``, in the text config where there is one."""
    original = (provenance.original_config if provenance else None) or {}
    section, before = data, original
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text is not config:  # a composite config: widths live in its text config
        key = next((k for k, v in vars(config).items() if v is text), None)
        section = data.setdefault(key, {}) if key else data
        before = original.get(key, {}) if key else original
    # not "model_type" inside: from_pretrained adopts a nested dict whose model_type matches
    data["fx_surgeon"] = {"original_type": data.get("model_type"), "load_with": "surgeon.load"}
    data["model_type"] = MARK
    kinds = _cut_kinds(provenance)
    for kind, names in _WIDTH_FIELDS.items():
        if kind not in kinds:
            continue
        for name in names:
            value = getattr(text, name, None)
            if isinstance(value, int) and value == before.get(name) and name in vars(text):
                section[name] = MARK


def _cut_kinds(provenance: Provenance | None) -> set[GroupKind]:
    kinds = set()
    for plan in provenance.plans if provenance else ():
        for group_id, kept in plan.keep.items():
            if len(kept) < plan.sizes.get(group_id, len(kept) + 1):
                try:
                    kinds.add(GroupKind(group_id.partition("@")[0]))
                except ValueError:
                    continue
    return kinds
