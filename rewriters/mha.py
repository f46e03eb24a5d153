"""``nn.MultiheadAttention`` with heads removed.

Torch's forward insists on ``num_heads * head_dim == embed_dim``. After a cut
the inner width is ``kept_heads * head_dim`` while the model width stays
``embed_dim``, so the cut module becomes a :class:`PrunedMultiheadAttention`: the
same parameters and arguments, with a forward that projects to the inner width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from surgeon.errors import RewriteError

from .modules import register_module
from .transaction import Transaction

__all__ = ["PrunedMultiheadAttention"]


class PrunedMultiheadAttention(nn.MultiheadAttention):
    """Multi-head attention whose inner width ``num_heads * head_dim`` may be
    smaller than ``embed_dim`` (heads were removed)."""

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        key_padding_mask: torch.Tensor | None = None,
        need_weights: bool = True,
        attn_mask: torch.Tensor | None = None,
        average_attn_weights: bool = True,
        is_causal: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.batch_first:
            query, key, value = (x.transpose(0, 1) for x in (query, key, value))
        length, batch, _ = query.shape
        heads, head_dim = self.num_heads, self.head_dim
        q, k, v = self._project(query, key, value)
        q, k, v = (_per_head(x, batch * heads, head_dim) for x in (q, k, v))
        mask = _merge_masks(attn_mask, key_padding_mask, batch, heads, length, k.shape[1], q.dtype)
        if is_causal and mask is None:
            mask = torch.full(
                (length, k.shape[1]), float("-inf"), dtype=q.dtype, device=q.device
            ).triu(1)
        scores = torch.bmm(q * head_dim**-0.5, k.transpose(1, 2))
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        if self.training and self.dropout > 0:
            weights = F.dropout(weights, p=self.dropout)
        out = torch.bmm(weights, v).transpose(0, 1).reshape(length, batch, heads * head_dim)
        out = self.out_proj(out)
        if self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        weights = weights.view(batch, heads, length, k.shape[1])
        return out, weights.mean(dim=1) if average_attn_weights else weights

    def _project(self, query, key, value):
        inner = self.num_heads * self.head_dim
        if self._qkv_same_embed_dim:
            w_q, w_k, w_v = self.in_proj_weight.split(inner)
        else:
            w_q, w_k, w_v = self.q_proj_weight, self.k_proj_weight, self.v_proj_weight
        b_q = b_k = b_v = None
        if self.in_proj_bias is not None:
            b_q, b_k, b_v = self.in_proj_bias.split(inner)
        return F.linear(query, w_q, b_q), F.linear(key, w_k, b_k), F.linear(value, w_v, b_v)


def _per_head(x: torch.Tensor, batch_heads: int, head_dim: int) -> torch.Tensor:
    """[length, batch, heads * head_dim] -> [batch * heads, length, head_dim]."""
    return x.reshape(x.shape[0], batch_heads, head_dim).transpose(0, 1)


def _merge_masks(attn_mask, key_padding_mask, batch, heads, length, source, dtype):
    """One additive float mask of shape [batch * heads, length, source], or None."""
    merged = None
    if attn_mask is not None:
        merged = _additive(attn_mask, dtype)
        if merged.dim() == 2:
            merged = merged.expand(batch * heads, length, source)
    if key_padding_mask is not None:
        padding = _additive(key_padding_mask, dtype).view(batch, 1, 1, source)
        padding = padding.expand(batch, heads, 1, source).reshape(batch * heads, 1, source)
        merged = padding if merged is None else merged + padding
    return merged


def _additive(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(
            mask, float("-inf")
        )
    return mask.to(dtype)


@register_module(nn.MultiheadAttention)
def _multihead_attention(module: nn.MultiheadAttention, tx: Transaction, context: dict) -> None:
    if module.bias_k is not None or module.add_zero_attn:
        raise RewriteError(
            "nn.MultiheadAttention with add_bias_kv or add_zero_attn cannot be cut yet; "
            "keep its attention group whole"
        )
    rows = (
        module.in_proj_weight.shape[0] // 3
        if module._qkv_same_embed_dim
        else (module.q_proj_weight.shape[0])
    )
    tx.set(module, "num_heads", rows // module.head_dim)
    if type(module) is nn.MultiheadAttention:
        tx.set(module, "__class__", PrunedMultiheadAttention)
