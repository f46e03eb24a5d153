"""Modules for the per-token layers of a spec: dense projections (written five
ways), MLPs, norms, attention and head reshapes."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .spec import Attn, Heads, Mlp, Norm, Proj

__all__ = ["AttnM", "Dense", "HeadsM", "MlpM", "NormM", "ProjM", "activation", "parameter"]


def activation(name: str, cdim: int = -1) -> Callable[[torch.Tensor], torch.Tensor]:
    if name == "softmax":
        return lambda x: torch.softmax(x, dim=cdim)
    return {
        "relu": F.relu,
        "gelu": F.gelu,
        "silu": F.silu,
        "tanh": torch.tanh,
        "sigmoid": torch.sigmoid,
        "softplus": F.softplus,
        "identity": lambda x: x,
    }[name]


def parameter(*shape: int, fan_in: int | None = None) -> nn.Parameter:
    bound = 1 / math.sqrt(fan_in or shape[-1])
    return nn.Parameter(torch.empty(*shape).uniform_(-bound, bound))


class Dense(nn.Module):
    """``x W^T + b`` on the last axis, written as ``via`` says."""

    def __init__(self, i: int, o: int, bias: bool = True, via: str = "module") -> None:
        super().__init__()
        self.via = via
        if via == "module":
            self.lin = nn.Linear(i, o, bias=bias)
            return
        shape = (o, i) if via in ("flinear", "matmul_t") else (i, o)
        self.weight = parameter(*shape, fan_in=i)
        self.bias = parameter(o, fan_in=i) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.via == "module":
            return self.lin(x)
        if self.via == "flinear":
            return F.linear(x, self.weight, self.bias)
        if self.via == "matmul_t":
            y = torch.matmul(x, self.weight.t())
        elif self.via == "matmul":
            y = x @ self.weight
        else:
            y = torch.einsum("...i,io->...o", x, self.weight)
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"via={self.via}"


class ProjM(nn.Module):
    def __init__(self, spec: Proj, d: int) -> None:
        super().__init__()
        self.spec, self.dense, self.act = (
            spec,
            Dense(d, spec.out, spec.bias, spec.via),
            activation(spec.act),
        )

    def forward(self, x):
        return self.act(self.dense(x))


class MlpM(nn.Module):
    def __init__(self, spec: Mlp, d: int) -> None:
        super().__init__()
        self.spec = spec
        self.up = Dense(d, spec.hidden, spec.bias, spec.via)
        self.gate = Dense(d, spec.hidden, spec.bias, spec.via) if spec.gated else None
        self.down = Dense(spec.hidden, d, spec.bias, spec.via)
        self.act = activation(spec.act)

    def forward(self, x):
        h = self.act(self.gate(x)) * self.up(x) if self.gate is not None else self.act(self.up(x))
        y = self.down(h)
        return x + y if self.spec.residual else y


class NormM(nn.Module):
    """A norm over the channel axis ``cdim`` of a 3-D or 4-D stream."""

    def __init__(self, spec: Norm, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.cdim = spec, cdim
        if spec.kind == "layer":
            self.norm = nn.LayerNorm(d)
        elif spec.kind == "rms":
            self.norm = nn.RMSNorm(d)
        elif spec.kind == "batch":
            self.norm = nn.BatchNorm2d(d) if spatial == 2 else nn.BatchNorm1d(d)
        else:
            self.norm = nn.GroupNorm(spec.groups, d)

    def forward(self, x):
        last = self.spec.kind in ("layer", "rms")
        if last and self.cdim == 1:
            return self.norm(x.movedim(1, -1)).movedim(-1, 1)
        if not last and self.cdim == -1:
            return self.norm(x.transpose(1, 2)).transpose(1, 2)
        return self.norm(x)


class AttnM(nn.Module):
    def __init__(self, spec: Attn, d: int) -> None:
        super().__init__()
        self.spec = spec
        self.num_key_value_heads = spec.kv
        self.num_key_value_groups = spec.rep
        self.num_heads = spec.kv * spec.rep
        self.head_dim = hd = spec.head_dim
        q, kv = self.num_heads * hd, spec.kv * hd
        shapes = (
            {"qkv": (q + 2 * kv, d)} if spec.fused else {"q": (q, d), "k": (kv, d), "v": (kv, d)}
        )
        shapes["o"] = (d, q)
        for name, (o, i) in shapes.items():
            bias = spec.bias and name != "o"
            if spec.via == "module":
                setattr(self, f"{name}_proj", nn.Linear(i, o, bias=bias))
            else:
                setattr(self, f"{name}_weight", parameter(o, i))
                setattr(self, f"{name}_bias", parameter(o, fan_in=i) if bias else None)
        if spec.qk_norm:
            self.q_norm, self.k_norm = nn.RMSNorm(hd), nn.RMSNorm(hd)

    def _proj(self, name: str, x):
        if self.spec.via == "module":
            return getattr(self, f"{name}_proj")(x)
        return F.linear(x, getattr(self, f"{name}_weight"), getattr(self, f"{name}_bias"))

    def forward(self, x):
        spec = self.spec
        b, s, _ = x.shape
        hd = self.head_dim
        if spec.fused:
            sizes = [self.num_heads * hd, self.num_key_value_heads * hd]
            q, k, v = self._proj("qkv", x).split([sizes[0], sizes[1], sizes[1]], dim=-1)
        else:
            q, k, v = self._proj("q", x), self._proj("k", x), self._proj("v", x)
        if spec.sizes == "attr":
            q = q.view(b, s, self.num_heads, hd)
            k = k.view(b, s, self.num_key_value_heads, hd)
            v = v.view(b, s, self.num_key_value_heads, hd)
        else:
            q, k, v = (t.view(b, s, -1, hd) for t in (q, k, v))
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))
        if spec.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if spec.gqa == "repeat_kv":
            kvh, rep = k.shape[1], self.num_key_value_groups
            k = k[:, :, None].expand(b, kvh, rep, s, hd).reshape(b, kvh * rep, s, hd)
            v = v[:, :, None].expand(b, kvh, rep, s, hd).reshape(b, kvh * rep, s, hd)
        if spec.impl == "sdpa":
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=spec.causal, enable_gqa=spec.gqa == "enable_gqa"
            )
        else:
            scores = q @ k.transpose(-1, -2) / math.sqrt(hd)
            if spec.causal:
                mask = torch.ones(s, s, dtype=torch.bool, device=x.device).triu(1)
                scores = scores.masked_fill(mask, float("-inf"))
            out = torch.softmax(scores, dim=-1) @ v
        out = out.transpose(1, 2).reshape(b, s, -1)
        y = self._proj("o", out)
        return x + y if spec.residual else y


class HeadsM(nn.Module):
    def __init__(self, spec: Heads, d: int) -> None:
        super().__init__()
        self.spec = spec
        self.n_heads, self.per_head = spec.n, spec.d
        self.inp = nn.Linear(d, spec.n * spec.d)
        self.scale = nn.Parameter(torch.randn(spec.n, 1))
        inner = spec.d if spec.op == "sum" else spec.n * spec.d
        self.out = nn.Linear(inner, d)
        self.act = activation(spec.act)

    def forward(self, x):
        b, s, _ = x.shape
        y = self.inp(x)
        if self.spec.sizes == "infer_n":
            y = y.view(b, s, -1, self.per_head)
        else:
            y = y.view(b, s, self.n_heads, -1)
        y = self.act(y * self.scale)
        if self.spec.op == "sum":
            y = y.sum(2)
        elif self.spec.op == "transpose":
            y = y.transpose(2, 3).reshape(b, s, -1)
        else:
            y = y.reshape(b, s, -1)
        y = self.out(y)
        return x + y if self.spec.residual else y
