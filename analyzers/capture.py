"""Capture a model as an aten-level FX graph.

``torch.export`` (non-strict) first: it handles Hugging Face models, runs on
meta/fake tensors (a 70B structure needs no weights) and records, for every
node, the module it ran in. Plain modules that export rejects fall back to
``torch.fx.symbolic_trace`` lowered to aten with ``make_fx``. Either way the
result is a :class:`Capture`: a graph whose parameter placeholders are mapped to
qualified parameter names. The user's model is never modified (anything its
forward writes on itself is put back), the KV cache is off unless asked for, and
outputs that are not tensors or plain values (cache objects) are dropped.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch._subclasses.fake_tensor import FakeTensor
from torch.utils import _pytree as pytree

from surgeon.errors import CaptureError

from . import quirks
from .example_inputs import without_cache
from .quirks import (
    dense_unit_axes,
    formatted_scalars,
    idle_conversions,
    unvalidated_distributions,
    where_as_nonzero,
)
from .untouched import untouched

__all__ = ["Capture", "capture", "innermost_module", "plain_output"]

log = logging.getLogger("surgeon.analyzers")


@dataclass
class Capture:
    graph: fx.Graph
    params: dict[str, str]  # placeholder name -> parameter name
    buffers: dict[str, str]  # placeholder name -> buffer name
    user_inputs: dict[str, str]  # placeholder name -> argument name
    method: str  # "export", "symbolic_trace" or "draft_export (...where it specialized)"
    constants: dict[str, torch.Tensor] = field(default_factory=dict)  # placeholder -> value
    # placeholder -> the module attribute a lifted constant was read from ('layers.0.table')
    attributes: dict[str, str] = field(default_factory=dict)
    output_labels: list[str] = field(default_factory=list)  # one per flattened output
    owner: Any = field(default=None, repr=False)  # keeps the graph's module alive

    def module_of(self, node: fx.Node) -> str:
        """The innermost module a node ran in ('' for the root)."""
        stack = node.meta.get("nn_module_stack")
        if not stack:
            return ""
        path = list(stack.values())[-1][0]
        return _clean_path(path)


def _clean_path(path: str) -> str:
    # make_fx records paths like "L['self'].layers.0"; export gives "layers.0".
    for prefix in ("L['self'].", "L['self']"):
        if path.startswith(prefix):
            path = path[len(prefix) :]
    return path


def capture(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Capture:
    """Capture ``model(*args, **kwargs)``; raise :class:`CaptureError` naming the
    module where both export and the symbolic-trace fallback failed."""
    kwargs = without_cache(model, kwargs)
    with torch.no_grad(), _quiet_fake_tensor_errors(), unvalidated_distributions():
        try:
            with untouched(model), _plain_outputs(model), innermost_module(model) as where:
                return _export(model, args, kwargs)
        except Exception as export_error:  # export raises many unrelated types
            failed_in = where.get("module")
            if _data_dependent(export_error) and _real(model, args, kwargs):
                try:
                    with untouched(model), _plain_outputs(model), innermost_module(model) as where:
                        return _export(model, args, kwargs, draft=True)
                except Exception as draft_error:  # noqa: BLE001 - the trace is tried next
                    log.debug("draft export of %s failed: %s", type(model).__name__, draft_error)
                    # it got past the branch on values, running the inputs for real: where
                    # it stopped (a reshape that no longer fits) is the cause to name
                    export_error, failed_in = draft_error, where.get("module")
            try:
                with untouched(model):
                    return _symbolic_trace(model, args, kwargs)
            except Exception as trace_error:
                raise _capture_error(model, failed_in, export_error, trace_error) from export_error


def plain_output(output: Any) -> Any:
    """``output`` with every cache object (``DynamicCache``,
    ``EncoderDecoderCache``, Mamba's: any class named ``...Cache``) replaced by
    ``None``; ``ModelOutput``s drop such fields. Anything else is kept, so an
    output capture cannot return still fails loudly."""
    return pytree.tree_map(lambda leaf: None if _is_cache(leaf) else leaf, output)


def _is_cache(leaf: Any) -> bool:
    return any(cls.__name__.endswith("Cache") for cls in type(leaf).__mro__)


@contextlib.contextmanager
def _plain_outputs(model: nn.Module) -> Iterator[None]:
    """While exporting, the root's outputs pass through :func:`plain_output`
    (a global hook, removed on exit: the model itself gets no hooks)."""

    def strip(module, _inputs, output):
        return plain_output(output) if module is model else None

    hook = nn.modules.module.register_module_forward_hook(strip)
    try:
        yield
    finally:
        hook.remove()


def _export(model: nn.Module, args: tuple, kwargs: dict[str, Any], draft: bool = False) -> Capture:
    """``draft``: control flow on tensor values follows the example inputs
    (``torch.export.draft_export`` runs them for real); the method says where."""
    with warnings.catch_warnings(), idle_conversions():
        # a forward caching a tensor on its module: untouched() takes it off again
        warnings.filterwarnings("ignore", "The tensor attributes? .* assigned during export")
        if draft:
            with where_as_nonzero(), dense_unit_axes(), formatted_scalars():
                program = _quietly(torch.export.draft_export, model, args, kwargs)
        else:
            program = torch.export.export(model, args, kwargs, strict=False)
    signature = program.graph_signature
    user_inputs = {}
    placeholders = [n for n in program.graph.nodes if n.op == "placeholder"]
    flat_names = _argument_names(model, args, kwargs)
    user_nodes = [n for n in placeholders if n.name in set(signature.user_inputs)]
    for node, label in zip(user_nodes, flat_names, strict=True):
        user_inputs[node.name] = label
    constants = {
        node: program.constants[name]
        for node, name in signature.inputs_to_lifted_tensor_constants.items()
        if isinstance(program.constants.get(name), torch.Tensor)
    }
    attributes = {
        node: name
        for node, name in signature.inputs_to_lifted_tensor_constants.items()
        if _is_tensor_attribute(model, name)  # not a tensor made in forward ('lifted_tensor_0')
    }
    return Capture(
        graph=program.graph,
        params=dict(signature.inputs_to_parameters),
        buffers=dict(signature.inputs_to_buffers),
        user_inputs=user_inputs,
        method=_specialized(program) if draft else "export",
        constants=constants,
        attributes=attributes,
        output_labels=_leaf_labels(program.call_spec.out_spec),
        owner=program,
    )


def _data_dependent(error: BaseException) -> bool:
    """Export stopped at Python control flow on a tensor's value."""
    return "data-dependent" in str(error)


def _real(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> bool:
    """Whether the inputs and weights hold values (a draft export runs them)."""
    tensors = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    tensors += list(model.parameters())
    return not any(t.is_meta or isinstance(t, FakeTensor) for t in tensors)


def _quietly(function, *args):
    """Run ``function`` with the draft-export report's warnings kept out of the log
    (what it specialized on is stated by :func:`_specialized` instead)."""
    logger = logging.getLogger("torch.export._draft_export")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        return function(*args)
    finally:
        logger.setLevel(level)


def _specialized(program) -> str:
    """The capture method, naming the lines whose branch the example inputs chose."""
    from torch._logging.structured import INTERN_TABLE

    files = {index: name for name, index in INTERN_TABLE.items()}
    places = []
    for failure in getattr(getattr(program, "_report", None), "failures", ()):
        stack = failure.data.get("user_stack") if isinstance(failure.data, dict) else None
        # the innermost frame of the model's code (not torch's, nor quirks.where_as_nonzero's,
        # whose short stacks end in quirks.py: the model's own line is reported too)
        frame = next((f for f in reversed(stack or ()) if _models(files, f)), None)
        if frame:
            name = str(files.get(frame.get("filename"), "?")).rpartition("/")[2]
            places.append(f"{name}:{frame.get('line')} `{frame.get('loc', '').strip()}`")
    where = "; ".join(dict.fromkeys(places)) or "a data-dependent branch"
    log.warning("control flow on tensor values follows the example inputs at %s", where)
    return f"draft_export (control flow on values follows the example inputs at {where})"


def _models(files: dict, frame: dict) -> bool:
    name = os.path.realpath(str(files.get(frame.get("filename"), "")))
    ours = {os.path.realpath(__file__), os.path.realpath(quirks.__file__)}
    return name not in ours and f"{os.sep}torch{os.sep}" not in name


def _is_tensor_attribute(model: nn.Module, name: str) -> bool:
    path, _, attribute = name.rpartition(".")
    try:
        module = model.get_submodule(path)
    except AttributeError:
        return False
    value = module.__dict__.get(attribute)
    # a FakeTensor is one this very export assigned (untouched() takes it off)
    return isinstance(value, torch.Tensor) and not isinstance(value, FakeTensor)


def _leaf_labels(spec, prefix: str = "") -> list[str]:
    """Names of the flattened outputs: 'logits', 'past_key_values.0.1', ..."""
    if spec is None or spec.is_leaf():
        return [prefix or "output"]
    children = spec.children()
    keys = spec.context if isinstance(spec.context, (list, tuple)) else None
    if keys is None or len(keys) != len(children):
        keys = range(len(children))
    labels = []
    for key, child in zip(keys, children, strict=True):
        labels += _leaf_labels(child, f"{prefix}.{key}" if prefix else str(key))
    return labels


def _argument_names(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> list[str]:
    names = [f"args[{i}]" for i, a in enumerate(args) if isinstance(a, torch.Tensor)]
    names += [k for k, v in kwargs.items() if isinstance(v, torch.Tensor)]
    return names


def _symbolic_trace(model: nn.Module, args: tuple, kwargs: dict[str, Any]) -> Capture:
    """Fallback for plain modules: symbolic trace, then lower to aten with make_fx
    so the same op rules apply. Parameters become explicit inputs. Tracing runs on
    fake tensors: a value that leaves torch (``.numpy()``) fails loudly instead
    of being baked into the graph as a constant that hides a dependency."""
    from torch.func import functional_call
    from torch.fx.experimental.proxy_tensor import make_fx

    # Non-tensor keyword arguments (configuration objects export refuses) are
    # baked into the trace; tensors stay inputs.
    concrete = {k: v for k, v in kwargs.items() if not isinstance(v, torch.Tensor)}
    tensors = {k: v for k, v in kwargs.items() if isinstance(v, torch.Tensor)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Was not able to add assertion")  # specialised on purpose
        traced = fx.symbolic_trace(model, concrete_args=concrete or None)
    state = dict(traced.named_parameters())
    params = list(state)
    buffers = [name for name, _ in traced.named_buffers()]
    state.update(traced.named_buffers())

    def run(state, *inputs):
        return plain_output(functional_call(traced, state, inputs, tensors))

    lowered = make_fx(run, tracing_mode="fake", record_module_stack=True)(state, *args)
    placeholders = [n for n in lowered.graph.nodes if n.op == "placeholder"]
    names = params + buffers
    inputs = placeholders[len(names) :]
    return Capture(
        graph=lowered.graph,
        params={n.name: name for n, name in zip(placeholders, params, strict=False)},
        buffers={
            n.name: name for n, name in zip(placeholders[len(params) :], buffers, strict=False)
        },
        user_inputs={n.name: f"args[{i}]" for i, n in enumerate(inputs)},
        method="symbolic_trace",
        owner=lowered,
    )


@contextlib.contextmanager
def _quiet_fake_tensor_errors() -> Iterator[None]:
    """Fake tensors log a full traceback before raising; the error we raise
    says the same in one line, so keep the log quiet while capturing."""
    logger = logging.getLogger("torch._subclasses.fake_tensor")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


@contextlib.contextmanager
def innermost_module(model: nn.Module) -> Iterator[dict[str, str]]:
    """Track which of ``model``'s modules is running, so a failure can name it
    (``where["module"]`` after an exception).

    Uses global hooks removed on exit; the model itself gets no hooks.
    """
    names = {id(m): name for name, m in model.named_modules()}
    stack: list[str] = []
    where: dict[str, str] = {}

    def enter(module, _inputs):
        name = names.get(id(module))
        if name is not None:
            stack.append(name)
            where["module"] = name

    def leave(module, _inputs, _output):
        if names.get(id(module)) is not None and stack:
            stack.pop()
            where["module"] = stack[-1] if stack else ""

    pre = nn.modules.module.register_module_forward_pre_hook(enter)
    post = nn.modules.module.register_module_forward_hook(leave)
    try:
        yield where
    finally:
        pre.remove()
        post.remove()


def _capture_error(model, module, export_error, trace_error) -> CaptureError:
    kind = type(model).__name__
    where = f"module '{module}'" if module else f"the top level of {kind}"
    cause = _first_line(export_error)
    message = (
        f"could not capture {kind}: torch.export failed in {where}: {cause}\n"
        f"  the symbolic_trace fallback failed too: {_first_line(trace_error)}\n"
        "  hint: check that the example inputs have the shapes and dtypes the model expects "
        "(pass inputs=... to analyze), and that forward has no Python control flow "
        "on tensor values."
    )
    return CaptureError(message, module=module, cause=cause)


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    return first if len(first) <= 300 else first[:297] + "..."
