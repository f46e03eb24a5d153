"""Modules for the layers of a spec that branch, route or repeat: concat,
split, MoE, convolutions and stacks of residual blocks; and
:func:`make_layer`, which builds any layer spec."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import AttnM, HeadsM, MlpM, NormM, ProjM, activation, parameter
from .spec import (
    Attn,
    Concat,
    Conv,
    Heads,
    Layer,
    Mlp,
    Moe,
    Norm,
    Proj,
    ResConv,
    Split,
    Stack,
)

__all__ = ["make_layer", "pointwise"]


def pointwise(i: int, o: int, cdim: int, spatial: int, bias: bool = True) -> nn.Module:
    if cdim == -1:
        return nn.Linear(i, o, bias=bias)
    return (nn.Conv2d if spatial == 2 else nn.Conv1d)(i, o, 1, bias=bias)


class ConcatM(nn.Module):
    def __init__(self, spec: Concat, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.cdim = spec, cdim
        self.branches = nn.ModuleList(pointwise(d, w, cdim, spatial) for w in spec.widths)
        self.act = activation(spec.act)

    def forward(self, x):
        return torch.cat([self.act(branch(x)) for branch in self.branches], dim=self.cdim)


class SplitM(nn.Module):
    def __init__(self, spec: Split, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.cdim, self.half = spec, cdim, spec.half
        self.inp = pointwise(d, 2 * spec.half, cdim, spatial)

    def forward(self, x):
        y, dim, mode = self.inp(x), self.cdim, self.spec.mode
        if mode == "glu":
            return F.glu(y, dim=dim)
        if mode == "chunk":
            a, b = y.chunk(2, dim=dim)
        elif mode == "split_int":
            a, b = torch.split(y, self.half, dim=dim)
        elif mode == "split_list":
            a, b = torch.split(y, [self.half, self.half], dim=dim)
        elif mode == "narrow":
            a, b = y.narrow(dim, 0, self.half), y.narrow(dim, self.half, self.half)
        else:  # unbind
            a, b = y.unflatten(dim, (2, -1)).unbind(dim % y.dim())
        combine = self.spec.combine
        if combine == "gate":
            return a * torch.sigmoid(b)
        if combine == "mul":
            return a * b
        if combine == "add":
            return a + b
        return torch.cat([b, a], dim=dim)


class Expert(nn.Module):
    def __init__(self, d: int, h: int, act: str) -> None:
        super().__init__()
        self.up, self.down, self.act = nn.Linear(d, h), nn.Linear(h, d), activation(act)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class MoeM(nn.Module):
    def __init__(self, spec: Moe, d: int) -> None:
        super().__init__()
        self.spec, self.top_k = spec, spec.top_k
        if spec.router == "module":
            self.router = nn.Linear(d, spec.experts, bias=False)
        else:
            self.router_weight = parameter(spec.experts, d)
        if spec.style == "modulelist":
            self.experts = nn.ModuleList(
                Expert(d, spec.hidden, spec.act) for _ in range(spec.experts)
            )
        else:
            self.w_up = parameter(spec.experts, d, spec.hidden, fan_in=d)
            self.w_down = parameter(spec.experts, spec.hidden, d, fan_in=spec.hidden)
        self.act = activation(spec.act)

    def forward(self, x):
        b, s, d = x.shape
        t = x.reshape(-1, d)
        logits = self.router(t) if self.spec.router == "module" else F.linear(t, self.router_weight)
        probs = torch.softmax(logits, dim=-1)
        weights, chosen = probs.topk(self.top_k, dim=-1)  # [T, k]
        if self.spec.renorm:
            weights = weights / weights.sum(-1, keepdim=True)
        if self.spec.style == "modulelist":
            outs = torch.stack([expert(t) for expert in self.experts], dim=1)  # [T, E, D]
        elif self.spec.style == "einsum":
            h = self.act(torch.einsum("td,edh->teh", t, self.w_up))
            outs = torch.einsum("teh,ehd->ted", h, self.w_down)
        else:  # bmm over the expert axis
            e = self.w_up.shape[0]
            h = self.act(torch.bmm(t.unsqueeze(0).expand(e, -1, -1), self.w_up))  # [E, T, H]
            outs = torch.bmm(h, self.w_down).transpose(0, 1)  # [T, E, D]
        if self.spec.pick == "gather":
            picked = outs.gather(1, chosen.unsqueeze(-1).expand(-1, -1, d))  # [T, k, D]
        else:
            rows = torch.arange(t.shape[0], device=t.device).unsqueeze(1)
            picked = outs[rows, chosen]  # [T, k, D]
        y = (picked * weights.unsqueeze(-1)).sum(1).reshape(b, s, d)
        return x + y if self.spec.residual else y


class ConvM(nn.Module):
    def __init__(self, spec: Conv, d: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.spatial = spec, spatial
        groups = {"1": 1, "depthwise": d, "2": 2}[spec.groups]
        self.padding = spec.kernel // 2
        if spec.functional:
            self.groups = groups
            shape = (spec.out, d // groups) + (spec.kernel,) * spatial
            self.weight = parameter(*shape, fan_in=d // groups * spec.kernel**spatial)
            self.bias = parameter(spec.out, fan_in=d) if spec.bias else None
        else:
            if spec.transposed:
                cls = nn.ConvTranspose2d if spatial == 2 else nn.ConvTranspose1d
            else:
                cls = nn.Conv2d if spatial == 2 else nn.Conv1d
            self.conv = cls(
                d, spec.out, spec.kernel, padding=self.padding, groups=groups, bias=spec.bias
            )
        self.act = activation(spec.act, cdim=1)

    def forward(self, x):
        if self.spec.functional:
            conv = F.conv2d if self.spatial == 2 else F.conv1d
            y = conv(x, self.weight, self.bias, padding=self.padding, groups=self.groups)
        else:
            y = self.conv(x)
        return self.act(y)


class ResConvM(nn.Module):
    def __init__(self, spec: ResConv, d: int, spatial: int) -> None:
        super().__init__()
        self.spec = spec
        cls = nn.Conv2d if spatial == 2 else nn.Conv1d
        mid = d if spec.depthwise or not spec.mid else spec.mid
        pad = spec.kernel // 2
        self.conv1 = cls(d, mid, spec.kernel, padding=pad, groups=d if spec.depthwise else 1)
        self.conv2 = cls(mid, d, 1)
        self.act = activation(spec.act, cdim=1)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class BlockM(nn.Module):
    """One residual block of a :class:`Stack`: ``x + body(pre_norm(x))``."""

    def __init__(self, spec: Stack, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.norm = make_layer(spec.pre_norm, d, cdim, spatial)[0] if spec.pre_norm else None
        self.body = nn.ModuleList(make_layer(layer, d, cdim, spatial)[0] for layer in spec.body)

    def forward(self, x):
        h = self.norm(x) if self.norm is not None else x
        for layer in self.body:
            h = layer(h)
        return x + h


class StackM(nn.Module):
    def __init__(self, spec: Stack, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(BlockM(spec, d, cdim, spatial) for _ in range(spec.n))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def make_layer(spec: Layer, d: int, cdim: int, spatial: int) -> tuple[nn.Module, int]:
    if isinstance(spec, Proj):
        return ProjM(spec, d), spec.out
    if isinstance(spec, Mlp):
        return MlpM(spec, d), d
    if isinstance(spec, Norm):
        return NormM(spec, d, cdim, spatial), d
    if isinstance(spec, Attn):
        return AttnM(spec, d), d
    if isinstance(spec, Heads):
        return HeadsM(spec, d), d
    if isinstance(spec, Concat):
        return ConcatM(spec, d, cdim, spatial), sum(spec.widths)
    if isinstance(spec, Split):
        return SplitM(spec, d, cdim, spatial), 2 * spec.half if spec.combine == "swap_cat" else (
            spec.half
        )
    if isinstance(spec, Moe):
        return MoeM(spec, d), d
    if isinstance(spec, Conv):
        return ConvM(spec, d, spatial), spec.out
    if isinstance(spec, ResConv):
        return ResConvM(spec, d, spatial), d
    if isinstance(spec, Stack):
        return StackM(spec, d, cdim, spatial), d
    raise TypeError(f"not a layer spec: {spec!r}")
