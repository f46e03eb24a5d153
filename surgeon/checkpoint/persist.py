"""``save`` and ``load``: pruned models that reload, without pickling.

``save`` always writes safetensors weights and a manifest (``surgeon.json``):
the original config, the chain of plans that made the model, every tensor's
shape and the tied-weight aliases. When the cut config still describes the
model (uniform widths its validators accept), ``config.json`` is that config
and plain ``from_pretrained`` loads the directory with no fx-surgeon
installed. ``load`` rebuilds the original structure with parameters on the
meta device, replays the plans, and assigns the saved tensors: weights come
back bit for bit. Nothing is unpickled and no remote code runs.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from surgeon.analyzers.names import ParameterNames
from surgeon.checkpoint.config_file import write_config
from surgeon.checkpoint.provenance import Provenance, remember
from surgeon.errors import CaptureError, PlanError, SurgeonError
from surgeon.plan.plan import Plan

__all__ = ["load", "read_manifest", "replay", "save", "write_description"]

MANIFEST = "surgeon.json"
WEIGHTS = "model.safetensors"
INDEX = "model.safetensors.index.json"
FORMAT_VERSION = 1


def _materialise(signature: dict[str, Any], device: torch.device) -> tuple[tuple, dict]:
    make = lambda v: (  # noqa: E731
        torch.zeros(v["shape"], dtype=getattr(torch, v["dtype"]), device=device)
        if isinstance(v, dict) and set(v) == {"shape", "dtype"}
        else v
    )
    return tuple(make(a) for a in signature["args"]), {
        k: make(v) for k, v in signature["kwargs"].items()
    }


def save(
    model: nn.Module,
    path: str | Path,
    format: str = "surgeon",
    dtype: torch.dtype | str | None = None,
) -> Path:
    """Write ``model`` to the directory ``path``; return the path.
    ``dtype`` (``torch.bfloat16`` or ``"bfloat16"``) casts the floating-point
    tensors on the way to disk; by default they keep the model's dtype.
    ``format="per_layer_config"`` also makes ``config.json`` carry transformers'
    per-layer overrides, for classes that build layers from them (refused, with
    nothing written, for the others: see :mod:`surgeon.export.per_layer`)."""
    if format not in ("surgeon", "per_layer_config"):
        raise SurgeonError(f"format {format!r}: choose 'surgeon' or 'per_layer_config'")
    layered = None
    if format == "per_layer_config":
        from surgeon.export.per_layer import per_layer_config

        layered = per_layer_config(model)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    aliases = ParameterNames(model).tied
    dtype = _dtype(dtype)
    state = {k: _cast(v, dtype) for k, v in model.state_dict().items() if k not in aliases}
    if any(t.is_meta for t in state.values()):
        raise SurgeonError("cannot save a model whose weights are on the meta device")
    save_file(state, str(path / WEIGHTS), metadata={"format": "pt"})
    write_description(model, path, {k: list(v.shape) for k, v in state.items()}, aliases, dtype)
    if layered is not None:
        layered.save_pretrained(path)
        manifest = json.loads((path / MANIFEST).read_text())
        manifest["plain_from_pretrained"] = True
        (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return path


def write_description(
    model: nn.Module,
    path: Path,
    shapes: dict[str, list[int]],
    aliases: dict[str, str],
    dtype: torch.dtype | None = None,
) -> bool:
    """Write config.json (and generation_config.json) and the manifest of the cut
    ``model`` (its weights may be on meta: streaming surgery writes them itself).
    ``shapes`` are the saved tensors, ``aliases`` the tied names left out,
    ``dtype`` the floating-point dtype they were saved in (if cast).
    Returns whether plain ``from_pretrained`` loads the directory; when it does
    not, config.json makes it refuse, naming ``surgeon.load``."""
    provenance = Provenance.of(model) or Provenance.start(model)
    loadable = write_config(model, path, dtype)
    manifest = {
        "format_version": FORMAT_VERSION,
        "model_class": provenance.model_class,
        "original_config": provenance.original_config,
        "plans": [plan.to_dict() for plan in provenance.plans],
        "inputs": provenance.inputs,
        "compensation": provenance.compensation,
        "verified_cut": provenance.verified_cut,
        "shapes": shapes,
        "aliases": aliases,
        "plain_from_pretrained": loadable,
    }
    (path / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return loadable


def load(path: str | Path, model: nn.Module | None = None) -> nn.Module:
    """Rebuild a saved model. ``model`` is a fresh copy of the original to replay
    the plans on (needed for non-Hugging-Face models); without it the original
    is built from the saved config."""
    path = Path(path)
    manifest = read_manifest(path)
    model = replay(manifest, model)
    state = {k: _aligned(v) for k, v in _read_weights(path).items()}
    _check_shapes(model, state, manifest)
    model.load_state_dict(state, strict=False, assign=True)
    for alias, target in manifest["aliases"].items():
        module_name, _, attr = alias.rpartition(".")
        setattr(model.get_submodule(module_name), attr, model.get_parameter(target))
    left = [n for n, t in (*model.named_parameters(), *model.named_buffers()) if t.is_meta]
    if left:
        raise SurgeonError(f"the weights in '{path}' have no values for {', '.join(left[:5])}")
    return model.eval()


def read_manifest(path: Path) -> dict[str, Any]:
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise SurgeonError(f"no {MANIFEST} in '{path}': not saved by surgeon.save")
    manifest = json.loads(manifest_path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise SurgeonError(
            f"{manifest_path}: unsupported format_version {manifest.get('format_version')!r}"
        )
    return manifest


def replay(manifest: dict[str, Any], model: nn.Module | None = None) -> nn.Module:
    """The saved model's structure: ``model`` (or, for transformers classes, the
    original rebuilt from the manifest with parameters on meta) with every plan
    replayed in order. Its provenance is the saved one, so a further cut extends
    the chain (streaming surgery cuts saved checkpoints this way)."""
    from surgeon.analyzers import analyze
    from surgeon.analyzers.dispatched import meta_skeleton, to_meta
    from surgeon.rewriters import apply

    model = _skeleton(manifest) if model is None else model
    signature = manifest.get("inputs")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    inputs = (
        None
        if getattr(model, "config", None) is not None or signature is None
        else (_materialise(signature, device))
    )
    # for a copy with weights in memory (_with_weights makes them on the CPU)
    real_inputs = None if inputs is None else _materialise(signature, torch.device("cpu"))
    for plan in (Plan.from_dict(p) for p in manifest["plans"]):
        try:
            analysis = analyze(model, inputs)
        except CaptureError as error:
            # the skeleton's parameters are on meta, its buffers real: a forward
            # mixing them (DeepSeek's router bias, GPT-Neo's mask) cannot be
            # captured; its structure is analysed on an all-meta copy instead
            try:
                analysis = analyze(meta_skeleton(model), to_meta(inputs))
            except CaptureError as meta_error:
                # either may stop there first: LongCat's router mixes the skeleton's
                # real bias with meta weights, its all-meta copy reaches the branch
                if not any("data-dependent" in str(e) for e in (error, meta_error)):
                    raise
                # control flow on tensor values (Longformer's global attention) is
                # captured by running real values: a copy with weights in memory
                analysis = analyze(_with_weights(model), real_inputs)
        try:
            model = apply(model, plan, inplace=True, check=False, analysis=analysis)
        except PlanError as error:
            if "is frozen" not in str(error):
                raise
            # the skeleton's meta weights hid a value the original's capture knew
            # (Falcon's rotary index): analysed again on a copy with weights
            analysis = analyze(_with_weights(model), real_inputs)
            model = apply(model, plan, inplace=True, check=False, analysis=analysis)
    provenance = Provenance.of(model)
    if provenance is not None:
        remember(
            model,
            dataclasses.replace(
                provenance,
                compensation=manifest.get("compensation"),
                verified_cut=manifest.get("verified_cut"),
            ),
        )
    return model


def _read_weights(path: Path) -> dict[str, torch.Tensor]:
    """``model.safetensors``, or the shards its index names (streaming surgery
    writes sharded checkpoints)."""
    if (path / WEIGHTS).is_file():
        return load_file(str(path / WEIGHTS))
    index = path / INDEX
    if not index.is_file():
        raise SurgeonError(f"'{path}' holds neither {WEIGHTS} nor {INDEX}")
    state = {}
    for shard in dict.fromkeys(json.loads(index.read_text())["weight_map"].values()):
        state.update(load_file(str(path / shard)))
    return state


def _aligned(tensor: torch.Tensor) -> torch.Tensor:
    """Tensors read from a file can start at any offset; kernels vectorise
    differently on unaligned memory (CPU grouped_mm), so re-allocate those to
    compute exactly like the saved model."""
    return tensor if tensor.data_ptr() % 64 == 0 else tensor.clone()


def _with_weights(model: nn.Module) -> nn.Module:
    """A copy of the skeleton ``model`` whose meta parameters are real (small
    random values, ties kept), for a capture that must run the forward."""
    import copy

    twin = copy.deepcopy(model)
    made: dict[int, nn.Parameter] = {}
    for module in twin.modules():
        for name, param in list(module._parameters.items()):
            if param is None or not param.is_meta:
                continue
            if id(param) not in made:
                values = torch.randn(param.shape, dtype=param.dtype) * 0.02
                made[id(param)] = nn.Parameter(values, requires_grad=param.requires_grad)
            module._parameters[name] = made[id(param)]
    return twin


def _skeleton(manifest: dict) -> nn.Module:
    """The original model with parameters on meta and buffers computed for real."""
    import transformers
    from accelerate import init_empty_weights

    config_dict = manifest.get("original_config")
    model_class = getattr(transformers, manifest["model_class"], None)
    if config_dict is None or not isinstance(model_class, type):
        raise SurgeonError(
            f"'{manifest['model_class']}' is not a transformers class: pass a fresh copy of "
            "the original model, surgeon.load(path, model=...), to replay the plans on"
        )
    config_class = model_class.config_class
    config = config_class.from_dict(config_dict)
    with init_empty_weights(include_buffers=False):
        model = model_class(config).eval()
    # init_empty_weights re-creates every parameter it registers, which unties
    # tied embeddings; the analysis the plans were made on saw them tied.
    if hasattr(model, "tie_weights"):
        model.tie_weights()
    return model


def _check_shapes(model: nn.Module, state: dict[str, torch.Tensor], manifest: dict) -> None:
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    wrong = [
        f"{k}: saved {tuple(v.shape)}, rebuilt {expected.get(k)}"
        for k, v in state.items()
        if expected.get(k) != tuple(v.shape)
    ]
    if wrong:
        raise SurgeonError(
            "the rebuilt model does not match the saved weights: " + "; ".join(wrong[:5])
        )


def _dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    value = getattr(torch, str(dtype), None)
    if not isinstance(value, torch.dtype) or not value.is_floating_point:
        raise SurgeonError(f"dtype {dtype!r}: give a floating-point dtype such as 'bfloat16'")
    return value


def _cast(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    tensor = tensor.detach()
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    return tensor.contiguous()
