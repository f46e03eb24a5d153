"""Normalisations. Layer/RMS/group norms compute statistics across the axes
they normalise, so removing units there changes more than masking would; batch
norm's statistics are per channel, so its channels can go freely."""

from __future__ import annotations

from torch import ops

from ..axes import FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


def _normalised(ctx: RuleContext, x, ndim: int, weight, bias):
    x_axes = ctx.axes(x)
    for atom in x_axes[len(x_axes) - ndim :]:
        ctx.fact(atom, FactKind.STATISTIC, f"normalised by {ctx.describe()}")
    for param in (weight, bias):
        if ctx.axes(param) is not None:
            ctx.broadcast_into(ctx.axes(param), x_axes)
    return x_axes


@register(aten.layer_norm.default)
def layer_norm(ctx: RuleContext):
    x, shape = ctx.node.args[:2]
    return _normalised(ctx, x, len(shape), ctx.arg(2, "weight"), ctx.arg(3, "bias"))


@register(aten.native_layer_norm.default)
def native_layer_norm(ctx: RuleContext):
    x, shape = ctx.node.args[:2]
    axes = _normalised(ctx, x, len(shape), ctx.arg(2, "weight"), ctx.arg(3, "bias"))
    stats = axes[: len(axes) - len(shape)] + tuple(ctx.algebra.new(1) for _ in shape)
    return [axes, stats, stats]


@register(aten.rms_norm.default)
def rms_norm(ctx: RuleContext):
    x, shape = ctx.node.args[:2]
    return _normalised(ctx, x, len(shape), ctx.arg(2, "weight"), None)


@register(aten.group_norm.default)
def group_norm(ctx: RuleContext):
    """Statistics are taken within each group: whole groups can go exactly,
    channels inside a group cannot."""
    x, groups = ctx.node.args[:2]
    weight, bias = ctx.arg(2, "weight"), ctx.arg(3, "bias")
    x_axes = ctx.axes(x)
    channel = x_axes[1]
    group = ctx.algebra.new(groups)
    per_group = ctx.algebra.new(ctx.size(channel) // groups)
    ctx.algebra.unify_products([channel], [group, per_group])
    ctx.fact(per_group, FactKind.STATISTIC, f"normalised by {ctx.describe()}")
    for param in (weight, bias):
        if ctx.axes(param) is not None:
            ctx.unify(ctx.axes(param)[0], channel)
    return x_axes


def _per_channel(ctx: RuleContext, x, params):
    x_axes = ctx.axes(x)
    for param in params:
        if ctx.axes(param) is not None:
            ctx.unify(ctx.axes(param)[0], x_axes[1])
    return x_axes


@register(aten.batch_norm.default, aten.instance_norm.default)
def batch_norm(ctx: RuleContext):
    x, weight, bias, mean, var = ctx.node.args[:5]
    return _per_channel(ctx, x, (weight, bias, mean, var))


@register(
    aten._native_batch_norm_legit_no_training.default,
    aten._native_batch_norm_legit.default,
    aten.native_batch_norm.default,
    aten._native_batch_norm_legit_functional.default,
)
def native_batch_norm(ctx: RuleContext):
    x, weight, bias, mean, var = ctx.node.args[:5]
    axes = _per_channel(ctx, x, (weight, bias, mean, var))
    return [axes, *(ctx.fresh(s) if s is not None else None for s in ctx.out_shapes()[1:])]
