"""Element-wise ops (with broadcasting), type and copy ops, tensor creation, and
ops with no tensor result."""

from __future__ import annotations

from torch import ops

from .context import RuleContext
from .registry import register, register_pointwise

aten = ops.aten


@register_pointwise
def broadcast(ctx: RuleContext):
    """Every tensor input broadcasts into the output: aligned axes are one."""
    shapes = ctx.out_shapes()
    out = ctx.fresh(shapes[0])
    for arg in ctx.tensor_args():
        ctx.broadcast_into(ctx.axes(arg), out)
    return out if len(shapes) == 1 else [out, *(ctx.fresh(s) for s in shapes[1:])]


register(
    aten.where.ScalarOther,
    aten.where.ScalarSelf,
    aten.where.Scalar,
    aten.masked_fill.Tensor,
    aten.masked_fill_.Scalar,
    aten.masked_fill_.Tensor,
    aten.__and__.Tensor,
    aten.__or__.Tensor,
    aten.__xor__.Tensor,
    aten.floor_divide.default,
    aten.floor_divide.Scalar,
    aten.hardswish.default,
    aten.hardswish_.default,
    aten.copy.default,
    aten.fill.Scalar,
    aten.fill_.Scalar,
    aten.relu_.default,
    aten.silu_.default,
    aten.gelu_.default,
    aten.multiply.Tensor,  # torch.multiply: mul's alias, not tagged pointwise (ConvBERT)
    aten.log_sigmoid.default,  # composite, not tagged pointwise (xLSTM's gates)
)(broadcast)


@register(aten.copy_.default)
def copy_into(ctx: RuleContext):
    """``dst.copy_(src)``: ``src`` broadcasts into ``dst``. A write into one of
    the model's inputs that nothing reads afterwards couples nothing: it is how
    ``torch.export`` records a buffer registered inside ``forward`` (copied into
    an input it has nothing to do with)."""
    dst = ctx.node.args[0]
    if ctx.is_model_input(dst) and not ctx.node.users:
        return ctx.fresh(ctx.shape(dst))
    return broadcast(ctx)


@register(
    aten.to.dtype,
    aten.to.dtype_layout,
    aten.to.device,
    aten.to.other,
    aten._to_copy.default,
    aten.type_as.default,
    aten.contiguous.default,
    aten.alias.default,
    aten.clone.default,
    aten.detach.default,
    aten.detach_.default,
    aten.lift_fresh_copy.default,
    aten.dropout.default,
    aten.dropout_.default,
    aten.feature_dropout.default,
    aten.alpha_dropout.default,
    aten.zeros_like.default,
    aten.ones_like.default,
    aten.empty_like.default,
    aten.full_like.default,
    aten.rand_like.default,
    aten.randn_like.default,
)
def same_axes(ctx: RuleContext):
    """The output has the input's axes; integer values keep their meaning."""
    source = ctx.node.args[0]
    ctx.value_domain = ctx.domain_of(source)
    return ctx.axes(source)


@register(aten.native_dropout.default)
def native_dropout(ctx: RuleContext):
    axes = ctx.axes(ctx.node.args[0])
    return [axes, axes]


@register(aten.arange.default, aten.arange.start, aten.arange.start_step)
def arange(ctx: RuleContext):
    """Values computed from their index (ALiBi slopes sized by the head count,
    sinusoid frequencies over the hidden size): a unit this axis meets cannot
    be removed, since the code would compute the remaining values anew. Position
    axes it makes are never units, so freezing them costs nothing."""
    axes = ctx.like_output()
    for atom in axes:
        ctx.freeze(
            atom,
            "values are computed from their index by the model's code, so "
            "units on this axis cannot be removed (e.g. ALiBi slopes per head)",
        )
    return axes


@register(
    aten.zeros.default,
    aten.ones.default,
    aten.full.default,
    aten.empty.memory_format,
    aten.scalar_tensor.default,
    aten.new_ones.default,
    aten.new_zeros.default,
    aten.new_full.default,
    aten.new_empty.default,
    aten.randn.default,
    aten.rand.default,
    aten.randint.low,
)
def creation(ctx: RuleContext):
    """A new tensor: its axes are new and coupled to nothing yet."""
    return ctx.like_output()


@register(aten.tril.default, aten.triu.default)
def triangular(ctx: RuleContext):
    """Which entries survive depends on positions along the last two axes."""
    axes = ctx.axes(ctx.node.args[0])
    for atom in axes[-2:]:
        ctx.freeze(atom, "keeps entries by their position, so indices cannot be removed")
    return axes


@register(
    aten._assert_tensor_metadata.default,
    aten._assert_scalar.default,
    aten.sym_constrain_range_for_size.default,
    aten._local_scalar_dense.default,
    aten.item.default,
    aten.sym_size.int,
    aten.sym_numel.default,
)
def no_tensor_result(ctx: RuleContext):
    """Assertions and scalar reads: nothing to relate."""
    return None
