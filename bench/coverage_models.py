"""Which transformers architectures the coverage sweep builds, and building
them small.

Discovery walks transformers' own auto mappings, so a new transformers release
adds rows by itself. The shrinking rule is bench/coverage_shrink.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from coverage_shrink import complete, shrink
from coverage_sizes import TOP_K

__all__ = ["TOP_K", "Architecture", "OwnForwardError", "build", "discover", "shrink"]

# Task heads in order of preference: one row per model type, built with the
# first mapping that has it (a causal LM exercises generate; a base model is
# the last resort).
MAPPINGS = (
    ("causal-lm", "MODEL_FOR_CAUSAL_LM_MAPPING_NAMES"),
    ("seq2seq-lm", "MODEL_FOR_SEQ_TO_SEQ_CAUSAL_LM_MAPPING_NAMES"),
    ("masked-lm", "MODEL_FOR_MASKED_LM_MAPPING_NAMES"),
    ("image-classification", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING_NAMES"),
    ("base", "MODEL_MAPPING_NAMES"),
)


@dataclass(frozen=True)
class Architecture:
    model_type: str
    class_name: str
    task: str  # which mapping it came from


def discover() -> list[Architecture]:
    """One architecture per model type, from the first mapping that has it."""
    from transformers.models.auto import modeling_auto

    chosen: dict[str, Architecture] = {}
    for task, mapping_name in MAPPINGS:
        for model_type, class_name in getattr(modeling_auto, mapping_name).items():
            if isinstance(class_name, (tuple, list)):
                class_name = class_name[0]
            chosen.setdefault(model_type, Architecture(model_type, class_name, task))
    return sorted(chosen.values(), key=lambda a: a.model_type)


class OwnForwardError(RuntimeError):
    """The model's own forward refuses its default config: not buildable small."""


def build(arch: Architecture):
    """The small random-init model of ``arch`` (eval mode, seed 0); where the
    shrunk default config does not build, or the model's own forward refuses it,
    the same config ``complete``d."""
    import transformers
    from transformers import AutoConfig

    model_class = getattr(transformers, arch.class_name)
    config_class = getattr(model_class, "config_class", None)
    config = config_class() if config_class else AutoConfig.for_model(arch.model_type)
    small = shrink(config.to_dict())
    small.pop("model_type", None)
    try:
        return _instantiate(model_class, type(config), small)
    except TimeoutError:
        raise
    except Exception as error:  # noqa: BLE001 - retried once with the unset fields filled
        completed = complete(small, config.to_dict(), decoder=arch.task == "causal-lm")
        if completed == small:
            raise
        try:
            return _instantiate(model_class, type(config), completed)
        except Exception as again:
            raise again from error


def _instantiate(model_class, config_class, values: dict):
    import torch

    config = config_class.from_dict(values)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = model_class(config)
    _check_own_forward(model.eval())
    return model


def _check_own_forward(model) -> None:
    """A plain forward on the sweep's example inputs, as any user runs it: where
    the model's own code fails on what its default config leaves, whatever the
    inputs (a field left None reaching an op that needs a value: DBRX's
    ``clip_qkv``; the cache the model builds for itself refusing the config's
    layers), the model is not buildable.
    Size mismatches, missing inputs and other errors are left to the stages."""
    import traceback

    import torch

    from surgeon.analyzers.example_inputs import example_inputs

    try:
        args, kwargs = example_inputs(model)
    except Exception:  # noqa: BLE001 - deriving inputs is a stage of its own (analyze)
        return
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    except (ValueError, RuntimeError, IndexError) as error:
        message, frames = str(error), traceback.extract_tb(error.__traceback__)
        left_none = isinstance(error, RuntimeError) and "must not be None" in message
        own_cache = isinstance(error, ValueError) and frames[-1].filename.endswith("cache_utils.py")
        # an index the code fixes beyond the shrunk tables (ShieldGemma 2 reads two
        # logits by the full vocabulary's token ids)
        fixed_index = isinstance(error, IndexError)
        if left_none or own_cache or fixed_index:
            reason = f"its own forward fails on the default config: {type(error).__name__}: {error}"
            raise OwnForwardError(reason) from error
    except Exception:  # noqa: BLE001, S110 - the stages report other failures
        pass
