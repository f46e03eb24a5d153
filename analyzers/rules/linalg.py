"""Matrix products: linear layers (also with transposed weights, as in HF
``Conv1D`` and Falcon), batched products, einsum, and the attention heads that
batched products between two activations reveal."""

from __future__ import annotations

import re

from torch import ops

from ..axes import FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


@register(aten.linear.default)
def linear(ctx: RuleContext):
    """``y[..., o] = x[..., i] W[o, i] + b[o]``."""
    x, weight = ctx.node.args[:2]
    bias = ctx.arg(2, "bias")
    x_axes, w_axes = ctx.axes(x), ctx.axes(weight)
    out = ctx.like_output()
    ctx.unify_all(x_axes[:-1], out[:-1])
    ctx.unify(x_axes[-1], w_axes[1])
    ctx.unify(out[-1], w_axes[0])
    if ctx.axes(bias) is not None:
        ctx.broadcast_into(ctx.axes(bias), out)
    return out


def _product(ctx: RuleContext, a_axes, b_axes, a_node, b_node, out):
    """Relate ``a[..., M, K] @ b[..., K, N] -> out[..., M, N]`` (both rank >= 2)."""
    batch_a, batch_b = a_axes[:-2], b_axes[:-2]
    batch_out = out[:-2]
    if batch_out and not ctx.is_weight(a_node) and not ctx.is_weight(b_node):
        _tag_attention(ctx, batch_b, b_axes[-2], b_axes[-1])
        if _one_head(ctx, batch_a, batch_b):
            # no head axis makes its width structure, yet the code reshapes it into
            # (1 head, head_dim), head_dim an attribute q, k and v share (PVT)
            for atom in (b_axes[-2], b_axes[-1]):
                ctx.freeze(atom, "the width of a single attention head")
    ctx.broadcast_into(batch_a, batch_out)
    ctx.broadcast_into(batch_b, batch_out)
    ctx.unify(a_axes[-1], b_axes[-2])
    ctx.unify_all([a_axes[-2], b_axes[-1]], out[-2:])


def _one_head(ctx: RuleContext, batch_a, batch_b) -> bool:
    """Per-head scores or outputs of one head: (batch, 1 head) on both sides."""
    return (
        len(batch_a) >= 2
        and len(batch_b) >= 2
        and ctx.size(batch_a[-1]) == 1
        and ctx.size(batch_b[-1]) == 1
    )


def _tag_attention(ctx: RuleContext, batch_b, k_atom, n_atom) -> None:
    """A batched product of two activations computes per-head scores or
    per-head outputs: its batch axes are heads and its inner axes belong to one
    head. Heads on the right operand (keys/values) that were broadcast from
    size 1 (``repeat_kv``) are queries per KV head; the rest are KV heads."""
    for atom in batch_b:
        for leaf in ctx.algebra.product_leaves(atom):
            broadcast = ctx.algebra.has_fact(leaf, FactKind.BROADCAST)
            ctx.fact(leaf, FactKind.Q_PER_KV if broadcast else FactKind.KV_HEAD, ctx.describe())
            ctx.fact(leaf, FactKind.HEAD, ctx.describe())
    for atom in (k_atom, n_atom):
        ctx.fact(atom, FactKind.HEAD_DIM, ctx.describe())


@register(aten.matmul.default)
def matmul(ctx: RuleContext):
    a, b = ctx.node.args[:2]
    a_axes, b_axes = list(ctx.axes(a)), list(ctx.axes(b))
    out = ctx.like_output()
    one = ctx.algebra.new(1)
    full_out = list(out)
    if len(a_axes) == 1:
        a_axes.insert(0, one)
        full_out.insert(len(full_out) - (0 if len(b_axes) == 1 else 1), one)
    if len(b_axes) == 1:
        b_axes.append(one)
        full_out.append(one)
    _product(ctx, tuple(a_axes), tuple(b_axes), a, b, tuple(full_out))
    return out


@register(aten.mm.default, aten.bmm.default)
def mm(ctx: RuleContext):
    a, b = ctx.node.args[:2]
    out = ctx.like_output()
    _product(ctx, ctx.axes(a), ctx.axes(b), a, b, out)
    return out


@register(aten.addmm.default, aten.baddbmm.default, aten.addbmm.default)
def addmm(ctx: RuleContext):
    """``bias + a @ b``: GPT-2's ``Conv1D`` is ``addmm(b, x, W)`` with ``W[in, out]``."""
    bias, a, b = ctx.node.args[:3]
    out = ctx.like_output()
    _product(ctx, ctx.axes(a), ctx.axes(b), a, b, out)
    ctx.broadcast_into(ctx.axes(bias), out)
    return out


@register(aten.einsum.default)
def einsum(ctx: RuleContext):
    """Axes named by the same letter are one; ``...`` broadcasts from the right."""
    equation, operands = ctx.node.args[:2]
    equation = equation.replace(" ", "")
    inputs, _, output = equation.partition("->")
    specs = inputs.split(",")
    if not output:
        letters = "".join(specs).replace(".", "")
        output = "..." * ("..." in inputs) + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1)
        )
    out = ctx.like_output()
    named: dict[str, int] = {}

    def bind(spec: str, axes) -> None:
        labels = re.findall(r"\.\.\.|[a-zA-Z]", spec)
        if "..." in labels:
            at = labels.index("...")
            extra = len(axes) - (len(labels) - 1)
            labels[at : at + 1] = [f"@{extra - i}" for i in range(extra)]
        for label, atom in zip(labels, axes, strict=True):
            if ctx.size(atom) == 1:
                continue
            if label in named:
                ctx.unify(named[label], atom)
            else:
                named[label] = atom

    for spec, operand in zip(specs, operands, strict=True):
        bind(spec, ctx.axes(operand))
    bind(output, out)
    if len(operands) == 2:
        _einsum_heads(ctx, specs, output, operands)
    return out


def _einsum_heads(ctx: RuleContext, specs, output: str, operands) -> None:
    """A batched matrix product written as an einsum between two activations
    (CvT's ``bhlk,bhtk->bhlt``, Funnel's ``bnqd,bnkd->bnqk``) reveals heads as
    :func:`_product` does: batch letters on both sides and in the output, one
    contracted letter, one free letter on each side. Two batch letters (batch,
    heads): Mamba-2's chunked scan (``bclhn,bcshn->bclsh``, a chunk axis beside
    the heads) is a state-space product, whose heads the state-space rules own.
    A leading ``...`` on all three (LongT5's blocks, ``...qhd,...khd->...hqk``)
    holds the batch-like axes; then the one batch letter written out is the heads."""
    a, b = specs
    if ctx.is_weight(operands[0]) or ctx.is_weight(operands[1]):
        return
    a_all, b_all = ctx.axes(operands[0]), ctx.axes(operands[1])
    lead = "..." in a + b + output
    if lead:
        if not all(spec.startswith("...") and "." not in spec[3:] for spec in (a, b, output)):
            return
        a, b, output = a[3:], b[3:], output[3:]
        if len(a_all) - len(a) != len(b_all) - len(b):
            return  # the ellipses broadcast: not one batch of blocks
    batch = [c for c in b if c in a and c in output]
    contracted = [c for c in b if c in a and c not in output]
    free_a = [c for c in a if c not in b and c in output]
    free_b = [c for c in b if c not in a and c in output]
    if len(batch) != (1 if lead else 2) or len(contracted) != 1:
        return
    if len(free_a) != 1 or len(free_b) != 1:
        return
    if len(set(a)) != len(a) or len(set(b)) != len(b) or len(a) + len(b) != 2 * len(batch) + 4:
        return  # a diagonal, or a letter summed away on one side only
    a_axes = dict(zip(a, a_all[len(a_all) - len(a) :], strict=True))
    b_axes = dict(zip(b, b_all[len(b_all) - len(b) :], strict=True))
    batch_a = [*a_all[: len(a_all) - len(a)], *(a_axes[c] for c in batch)]
    batch_b = [*b_all[: len(b_all) - len(b)], *(b_axes[c] for c in batch)]
    _tag_attention(ctx, batch_b, b_axes[contracted[0]], b_axes[free_b[0]])
    if _one_head(ctx, batch_a, batch_b):
        for atom in (b_axes[contracted[0]], b_axes[free_b[0]]):
            ctx.freeze(atom, "the width of a single attention head")
