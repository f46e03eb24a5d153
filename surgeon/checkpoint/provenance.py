"""Where a cut model came from: the original config and the plans applied.

Kept in one registry beside the models, never written into a module: the
user's model carries nothing of ours, and a model the registry does not know is
an original. ``apply`` records each plan, ``prune`` the compensation, ``load``
what it replayed; ``save`` reads it to write the manifest.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import weakref
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from surgeon.plan.plan import Plan

__all__ = ["Provenance", "record", "record_compensation", "remember"]

_REGISTRY: weakref.WeakKeyDictionary[nn.Module, Provenance] = weakref.WeakKeyDictionary()


def remember(model: nn.Module, provenance: Provenance) -> None:
    """Register ``provenance`` as how ``model`` was made (replacing any)."""
    _REGISTRY[model] = provenance


@dataclass(frozen=True)
class Provenance:
    """How a model was made: the original config and the plans applied in order."""

    model_class: str
    original_config: dict[str, Any] | None
    plans: tuple[Plan, ...]
    inputs: dict[str, Any] | None = None  # shapes and dtypes of the analysis inputs
    compensation: str | None = None  # weights refit after the last cut, on purpose
    verified_cut: dict[str, float] | None = None  # verify of the cut before compensation

    @classmethod
    def of(cls, model: nn.Module) -> Provenance | None:
        return _REGISTRY.get(model)

    @classmethod
    def start(cls, model: nn.Module) -> Provenance:
        config = getattr(model, "config", None)
        original = copy.deepcopy(config.to_dict()) if hasattr(config, "to_dict") else None
        return cls(type(model).__name__, original, ())


def record(model: nn.Module, before: Provenance, plan: Plan, inputs: tuple) -> None:
    """Called by ``apply`` on the cut model: remember the plan (and, the first
    time, the input signature a plain module is analysed with)."""
    signature = before.inputs if before.inputs is not None else _signature(inputs)
    remember(
        model,
        Provenance(before.model_class, before.original_config, (*before.plans, plan), signature),
    )


def record_compensation(model: nn.Module, compensation: str, verified_cut) -> None:
    """Called by ``prune`` after refitting: the weights now differ from the masked
    original by design; keep what verify said of the cut itself."""
    provenance = Provenance.of(model)
    checked = (
        None
        if verified_cut is None
        else {"max_abs": verified_cut.max_abs, "max_rel": verified_cut.max_rel}
    )
    remember(
        model, dataclasses.replace(provenance, compensation=compensation, verified_cut=checked)
    )


def _signature(inputs: tuple) -> dict[str, Any] | None:
    args, kwargs = inputs
    describe = lambda v: (  # noqa: E731
        {"shape": list(v.shape), "dtype": str(v.dtype).removeprefix("torch.")}
        if isinstance(v, torch.Tensor)
        else v
    )
    try:
        signature = {
            "args": [describe(a) for a in args],
            "kwargs": {k: describe(v) for k, v in kwargs.items()},
        }
        json.dumps(signature)
    except TypeError:
        return None  # a non-JSON argument: such a model must be replayed by hand
    return signature
