"""Convolutions (1d/2d/3d, grouped, depthwise, transposed) and per-channel
spatial ops (pooling, upsampling)."""

from __future__ import annotations

from math import prod

from torch import ops

from ..axes import FactKind
from .context import RuleContext
from .registry import register

aten = ops.aten


def _conv(ctx: RuleContext, x, weight, bias, groups: int, transposed: bool):
    """Relate channels of a (possibly grouped) convolution.

    Normal weights are ``[O, C/g, k...]``, transposed ones ``[C, O/g, k...]``.
    With ``g`` groups both channel axes are ``g x per-group`` products sharing
    the group factor, so removing a whole group, or the same in-group channel
    of every group, are the two ways the units can go.
    """
    x_axes, w_axes = ctx.axes(x), ctx.axes(weight)
    out = ctx.like_output()
    batched = len(x_axes) == len(w_axes)
    channel = 1 if batched else 0
    if batched:
        ctx.unify(x_axes[0], out[0])
    w_in, w_out = (0, 1) if transposed else (1, 0)
    if groups == 1:
        ctx.unify(x_axes[channel], w_axes[w_in])
        ctx.unify(out[channel], w_axes[w_out])
    else:
        group = ctx.algebra.new(groups)
        if transposed:
            per_group_in = ctx.algebra.new(ctx.size(w_axes[0]) // groups)
            ctx.algebra.unify_products([w_axes[0]], [group, per_group_in])
            ctx.unify(x_axes[channel], w_axes[0])
            ctx.algebra.unify_products([out[channel]], [group, w_axes[1]])
        else:
            ctx.algebra.unify_products([x_axes[channel]], [group, w_axes[1]])
            per_group_out = ctx.algebra.new(ctx.size(w_axes[0]) // groups)
            ctx.algebra.unify_products([w_axes[0]], [group, per_group_out])
            ctx.unify(out[channel], w_axes[0])
    if ctx.axes(bias) is not None:
        ctx.unify(ctx.axes(bias)[0], out[channel])
    for atom in (*w_axes[2:], *out[channel + 1 :]):
        ctx.fact(atom, FactKind.POSITION, f"spatial axis of {ctx.describe()}")
    return out


@register(aten.convolution.default)
def convolution(ctx: RuleContext):
    x, weight, bias, _stride, _pad, _dil, transposed, _out_pad, groups = ctx.node.args[:9]
    return _conv(ctx, x, weight, bias, groups, transposed)


@register(aten.conv1d.default, aten.conv2d.default, aten.conv3d.default)
def conv(ctx: RuleContext):
    x, weight = ctx.node.args[:2]
    return _conv(ctx, x, weight, ctx.arg(2, "bias"), ctx.arg(6, "groups", 1), False)


@register(aten.conv1d.padding, aten.conv2d.padding, aten.conv3d.padding)
def conv_padding(ctx: RuleContext):
    x, weight = ctx.node.args[:2]
    return _conv(ctx, x, weight, ctx.arg(2, "bias"), ctx.arg(6, "groups", 1), False)


@register(aten.conv_transpose1d.default, aten.conv_transpose2d.input, aten.conv_transpose3d.input)
def conv_transpose(ctx: RuleContext):
    x, weight = ctx.node.args[:2]
    return _conv(ctx, x, weight, ctx.arg(2, "bias"), ctx.arg(6, "groups", 1), True)


@register(
    aten.max_pool1d.default,
    aten.max_pool2d.default,
    aten.max_pool3d.default,
    aten.avg_pool1d.default,
    aten.avg_pool2d.default,
    aten.avg_pool3d.default,
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten.adaptive_max_pool2d.default,
    aten.max_pool2d_with_indices.default,
    aten.upsample_nearest2d.vec,
    aten.upsample_bilinear2d.vec,
    aten.upsample_nearest1d.vec,
)
def per_channel_spatial(ctx: RuleContext):
    """Batch and channel axes pass through; spatial axes are new."""
    x = ctx.node.args[0]
    x_axes = ctx.axes(x)
    shapes = ctx.out_shapes()
    lead = len(x_axes) - _spatial_rank(ctx)
    # the input's spatial axes are mixed (windows, interpolation): positions too,
    # even where they come from a parameter (PVT interpolates its position table)
    for atom in x_axes[lead:]:
        ctx.fact(atom, FactKind.POSITION, f"spatial axis of {ctx.describe()}")
    outs = []
    for shape in shapes:
        out = ctx.fresh(shape)
        ctx.unify_all(x_axes[:lead], out[:lead])
        for atom in out[lead:]:
            ctx.fact(atom, FactKind.POSITION, f"spatial axis of {ctx.describe()}")
        outs.append(out)
    return outs[0] if len(outs) == 1 else outs


@register(aten.im2col.default)
def im2col(ctx: RuleContext):
    """``unfold``: ``(N, C, H, W) -> (N, C x kh x kw, L)``, each channel's window
    positions side by side (channel-major); windows and blocks are positions."""
    x, kernel = ctx.node.args[:2]
    x_axes = ctx.axes(x)
    out = ctx.fresh(ctx.out_shape())
    lead = len(x_axes) - 3
    ctx.unify_all(x_axes[:lead], out[:lead])
    window = ctx.algebra.new(prod(kernel))
    ctx.algebra.unify_products([out[lead]], [x_axes[lead], window])
    for atom in (window, *x_axes[lead + 1 :], *out[lead + 1 :]):
        ctx.fact(atom, FactKind.POSITION, f"window of {ctx.describe()}")
    return out


def _spatial_rank(ctx: RuleContext) -> int:
    name = str(ctx.node.target)
    for rank in (1, 2, 3):
        if f"{rank}d" in name:
            return rank
    raise AssertionError(f"cannot tell the spatial rank of {name}")
