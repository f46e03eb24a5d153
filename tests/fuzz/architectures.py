"""Random architectures for fuzzing analyze -> apply -> verify.

An architecture is drawn from a small grammar as a plain-data *spec* (frozen
dataclasses whose ``repr`` is valid Python), then built into an ``nn.Module`` in
eval mode plus example inputs. Everything random in the built model comes from
``spec.seed``, so a spec is a complete, replayable description:

>>> case = build(spec)                           # doctest: +SKIP
>>> case.model(*case.inputs)                     # doctest: +SKIP

The grammar is written once against a *chooser* (``int``, ``pick``, ``flag``,
``sample``) so that the same code draws from hypothesis (``architectures()``,
shrinkable) and from ``random.Random`` (``random_spec``, for the long run in
``bench/fuzz_long.py``).

Families
  ``seq``     float input ``[B, S, F]``, a dense stem to the stream width
  ``tokens``  token ids ``[B, S]``, an embedding (optionally positions, tied head)
  ``conv1d``  ``[B, C, L]``        ``conv2d``  ``[B, C, H, W]``

Layers (on the stream; ``cdim`` is -1 for sequences, 1 for convolutions)
  Proj, Mlp (plain / gated ``silu(gate) * up``, residual or not), Norm (layer,
  rms, batch, group), Attn (MHA / GQA via repeat_kv or sdpa ``enable_gqa``,
  fused qkv, qk-norm, causal), Heads (reshape into heads and back), Concat,
  Split (chunk, split, narrow, unflatten+unbind, glu), Moe (router -> softmax
  -> top-k -> gather over a ModuleList or a 3-D parameter with einsum/bmm),
  Conv, ResConv, and Stack (a ModuleList of identical residual blocks, the
  depth-pruning candidates).

The second half of this module is the property itself (``check``): analyze,
draw a plan, apply, verify, and classify the outcome.
"""

from __future__ import annotations

import copy
import math
import re
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Union

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

import surgeon
from surgeon.rewriters.resolve import units_of

__all__ = [
    "ACTS",
    "Arch",
    "Attn",
    "Case",
    "Concat",
    "Conv",
    "Heads",
    "Mlp",
    "Moe",
    "Norm",
    "Outcome",
    "Proj",
    "RandomChooser",
    "ResConv",
    "Split",
    "Stack",
    "Trial",
    "architectures",
    "build",
    "check",
    "draw_trial",
    "plans",
    "random_spec",
    "specs",
]

ACTS = ("relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "identity")
VIAS = ("module", "flinear", "matmul_t", "matmul", "einsum")


# ---------------------------------------------------------------------------------
# The spec: plain data
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Proj:
    """``act(x W^T + b)``: changes the stream width to ``out``."""

    out: int
    act: str = "identity"
    bias: bool = True
    via: str = "module"  # nn.Linear / F.linear(raw) / x @ W.t() / x @ W / einsum


@dataclass(frozen=True)
class Mlp:
    """``down(act(up(x)))`` or gated ``down(act(gate(x)) * up(x))``; width kept."""

    hidden: int
    act: str = "relu"
    gated: bool = False
    residual: bool = False
    via: str = "module"
    bias: bool = True


@dataclass(frozen=True)
class Norm:
    kind: str  # layer | rms | batch | group
    groups: int = 1  # GroupNorm groups


@dataclass(frozen=True)
class Attn:
    """Self-attention with ``kv`` KV heads of ``rep`` queries each (``rep`` is 1 for MHA)."""

    kv: int
    rep: int
    head_dim: int
    gqa: str = "none"  # none | repeat_kv | enable_gqa
    impl: str = "sdpa"  # sdpa | manual (softmax(q k^T) v)
    causal: bool = False
    fused: bool = False  # one qkv projection split by head-count attributes
    qk_norm: bool = False  # RMSNorm over head_dim on q and k
    sizes: str = "infer"  # infer (view(b, s, -1, hd)) | attr (view(b, s, self.num_heads, hd))
    via: str = "module"  # module | flinear
    bias: bool = False
    residual: bool = False


@dataclass(frozen=True)
class Heads:
    """Reshape into ``n`` heads of ``d``, per-head op, reshape back; width kept."""

    n: int
    d: int
    op: str = "scale"  # scale | sum (over heads) | transpose (heads <-> dim)
    sizes: str = "infer_n"  # infer_n: view(.., -1, d) | infer_d: view(.., n, -1)
    act: str = "identity"
    residual: bool = False


@dataclass(frozen=True)
class Concat:
    """``cat([act(branch_i(x))], channel dim)``: width ``sum(widths)``."""

    widths: tuple[int, ...]
    act: str = "relu"


@dataclass(frozen=True)
class Split:
    """``y = in(x)`` of width ``2 * half``, split in two and combined."""

    half: int
    mode: str = "chunk"  # chunk | split_int | split_list | narrow | unbind | glu
    combine: str = "gate"  # gate (a * sigmoid(b)) | mul | add | swap_cat (cat([b, a]))


@dataclass(frozen=True)
class Moe:
    """Router -> softmax -> top-k -> gather of the chosen experts' outputs."""

    experts: int
    top_k: int
    hidden: int
    style: str = "modulelist"  # modulelist | einsum | bmm
    act: str = "silu"
    renorm: bool = False  # divide the top-k weights by their sum
    router: str = "module"  # module | flinear
    residual: bool = False
    pick: str = "gather"  # gather (index expanded over D) | index (outs[rows, chosen])


@dataclass(frozen=True)
class Conv:
    """Convolution to ``out`` channels (same spatial size)."""

    out: int
    kernel: int = 3
    groups: str = "1"  # 1 | depthwise | 2
    act: str = "relu"
    bias: bool = True
    transposed: bool = False
    functional: bool = False  # F.convNd with raw parameters and a literal groups attribute


@dataclass(frozen=True)
class ResConv:
    """``x + conv2(act(conv1(x)))``, ``conv1`` optionally depthwise."""

    kernel: int = 3
    act: str = "relu"
    depthwise: bool = False
    mid: int = 0  # width of conv1's output when not depthwise (0: same as input)


Layer = Union[Proj, Mlp, Norm, Attn, Heads, Concat, Split, Moe, Conv, ResConv, "Stack"]


@dataclass(frozen=True)
class Stack:
    """``n`` identical residual blocks ``x + body(x)`` in an ``nn.ModuleList``."""

    n: int
    body: tuple[Layer, ...]
    pre_norm: Norm | None = None


@dataclass(frozen=True)
class Head:
    pool: str = "none"  # none | mean | last (seq); mean | amax | flatten (conv)
    proj: str = "linear"  # linear | flinear | matmul_t | tied | none
    out: int = 3
    aux: str = ""  # "" | tuple | dict: also return the stream before the head


@dataclass(frozen=True)
class Arch:
    family: str  # seq | tokens | conv1d | conv2d
    seed: int
    batch: int
    length: int  # sequence length or spatial size
    features: int  # input features / channels, or vocabulary size for tokens
    width: int  # stream width after the stem
    layers: tuple[Layer, ...]
    head: Head
    trunk: str = "sequential"  # sequential | modulelist | attrs
    positions: bool = False  # tokens: add a learned position embedding
    stem_via: str = "module"


# ---------------------------------------------------------------------------------
# Choosers: one grammar, two sources of randomness
# ---------------------------------------------------------------------------------


class RandomChooser:
    """Draws from ``random.Random`` (the long run)."""

    def __init__(self, rng) -> None:
        self.rng = rng

    def int(self, lo: int, hi: int) -> int:
        return self.rng.randint(lo, hi)

    def pick(self, options: Sequence[Any]) -> Any:
        return self.rng.choice(list(options))

    def flag(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def sample(self, n: int, k: int) -> list[int]:
        return sorted(self.rng.sample(range(n), k))


class _HypothesisChooser:
    """Draws through hypothesis, so examples shrink: integers toward ``lo``,
    picks toward the first option, flags toward False, samples toward the first
    ``k`` indices."""

    def __init__(self, draw) -> None:
        self.draw = draw

    def int(self, lo: int, hi: int) -> int:
        return self.draw(st.integers(lo, hi))

    def pick(self, options: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(list(options)))

    def flag(self, p: float = 0.5) -> bool:
        return self.draw(st.integers(0, 99)) >= 100 - round(100 * p)

    def sample(self, n: int, k: int) -> list[int]:
        return sorted(self.draw(st.permutations(range(n)))[:k])


# ---------------------------------------------------------------------------------
# The grammar
# ---------------------------------------------------------------------------------


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _norm(c, width: int, kinds: Sequence[str]) -> Norm:
    kind = c.pick(kinds)
    if kind == "group":
        # at least 2 channels per group: a group of one channel normalises a single
        # value, which only amplifies rounding noise (by 1/sqrt(eps)) into the output
        return Norm("group", c.pick([g for g in _divisors(width) if width // g >= 2] or [1]))
    return Norm(kind)


def _seq_layer(c, d: int, depth: int, in_block: bool = False) -> tuple[Layer, int]:
    """One sequence layer on a stream of width ``d`` and the width it leaves."""
    options = ["mlp", "mlp", "attn", "attn", "norm", "heads", "moe"]
    if not in_block:
        options += ["proj", "proj", "concat", "split", "split"]
        if depth < 1:
            options += ["stack", "stack"]
    kind = c.pick(options)
    residual = (not in_block) and c.flag(0.5)
    if kind == "proj":
        out = c.int(2, 16)
        return Proj(out, c.pick(ACTS), c.flag(0.7), c.pick(VIAS)), out
    if kind == "mlp":
        act = c.pick(ACTS + ("softmax",)) if not c.flag(0.3) else "silu"
        return Mlp(c.int(2, 16), act, c.flag(0.4), residual, c.pick(VIAS), c.flag(0.6)), d
    if kind == "norm":
        return _norm(c, d, ("layer", "rms", "batch", "group")), d
    if kind == "attn":
        gqa = c.pick(("none", "repeat_kv", "enable_gqa"))
        kv = c.int(1, 3)
        rep = 1 if gqa == "none" else c.int(1, 3)
        impl = "sdpa" if gqa == "enable_gqa" else c.pick(("sdpa", "manual"))
        return Attn(
            kv=kv,
            rep=rep,
            head_dim=c.int(2, 4),
            gqa=gqa,
            impl=impl,
            causal=c.flag(0.5),
            fused=c.flag(0.25),
            qk_norm=c.flag(0.2),
            sizes="attr" if c.flag(0.2) else "infer",
            via="flinear" if c.flag(0.25) else "module",
            bias=c.flag(0.3),
            residual=residual,
        ), d
    if kind == "heads":
        return Heads(
            n=c.int(2, 4),
            d=c.int(2, 4),
            op=c.pick(("scale", "sum", "transpose")),
            sizes=c.pick(("infer_n", "infer_d")),
            act=c.pick(ACTS),
            residual=residual,
        ), d
    if kind == "moe":
        experts = c.int(2, 5)
        return Moe(
            experts=experts,
            top_k=c.int(1, min(2, experts)),
            hidden=c.int(2, 8),
            style=c.pick(("modulelist", "einsum", "bmm")),
            act=c.pick(ACTS),
            renorm=c.flag(0.5),
            router="flinear" if c.flag(0.25) else "module",
            residual=residual,
            pick=c.pick(("gather", "index")),
        ), d
    if kind == "concat":
        widths = tuple(c.int(1, 8) for _ in range(c.int(2, 3)))
        return Concat(widths, c.pick(ACTS)), sum(widths)
    if kind == "split":
        half = c.int(2, 8)
        mode = c.pick(("chunk", "chunk", "split_int", "split_list", "narrow", "unbind", "glu"))
        combine = "gate" if mode == "glu" else c.pick(("gate", "mul", "add", "swap_cat"))
        return Split(half, mode, combine), (2 * half if combine == "swap_cat" else half)
    if kind == "stack":
        body: list[Layer] = []
        for _ in range(c.int(1, 2)):
            layer, d2 = _seq_layer(c, d, depth + 1, in_block=True)
            assert d2 == d
            body.append(layer)
        pre = _norm(c, d, ("layer", "rms", "batch", "group")) if c.flag(0.6) else None
        return Stack(c.int(2, 3), tuple(body), pre), d
    raise AssertionError(kind)


def _conv_layer(c, d: int, depth: int, in_block: bool = False) -> tuple[Layer, int]:
    options = ["resconv", "norm"]
    if not in_block:
        options += ["conv", "conv", "conv", "concat", "split"]
        if depth < 1:
            options += ["stack"]
    kind = c.pick(options)
    if kind == "conv":
        groups = c.pick(("1", "1", "depthwise", "2"))
        out = d if groups == "depthwise" else c.int(2, 16)
        if groups == "2" and (d % 2 or out % 2):
            groups = "1"
        return Conv(
            out,
            c.pick((1, 3)),
            groups,
            c.pick(ACTS),
            c.flag(0.7),
            transposed=c.flag(0.15),
            functional=c.flag(0.15),
        ), out
    if kind == "resconv":
        depthwise = c.flag(0.4)
        return ResConv(c.pick((1, 3)), c.pick(ACTS), depthwise, 0 if depthwise else c.int(0, 12)), d
    if kind == "norm":
        return _norm(c, d, ("batch", "batch", "group", "layer", "rms")), d
    if kind == "concat":
        widths = tuple(c.int(1, 8) for _ in range(c.int(2, 3)))
        return Concat(widths, c.pick(ACTS)), sum(widths)
    if kind == "split":
        half = c.int(2, 8)
        mode = c.pick(("chunk", "chunk", "split_int", "split_list", "narrow", "unbind", "glu"))
        combine = "gate" if mode == "glu" else c.pick(("gate", "mul", "add", "swap_cat"))
        return Split(half, mode, combine), (2 * half if combine == "swap_cat" else half)
    if kind == "stack":
        body = [_conv_layer(c, d, depth + 1, in_block=True)[0] for _ in range(c.int(1, 2))]
        pre = _norm(c, d, ("batch", "group", "layer")) if c.flag(0.5) else None
        return Stack(c.int(2, 3), tuple(body), pre), d
    raise AssertionError(kind)


def gen_arch(c) -> Arch:
    family = c.pick(("seq", "tokens", "conv1d", "conv2d"))
    conv = family.startswith("conv")
    width = c.int(2, 16)
    features = c.int(2, 8) if family != "tokens" else c.int(4, 16)
    length = c.int(2, 4) if family == "conv2d" else c.int(3, 6)
    layers: list[Layer] = []
    d = width
    for _ in range(c.int(1, 4)):
        layer, d = (_conv_layer if conv else _seq_layer)(c, d, 0)
        layers.append(layer)
    if conv:
        head = Head(c.pick(("mean", "mean", "amax", "flatten")), "linear", c.int(1, 6))
    else:
        projs = ["linear", "linear", "flinear", "matmul_t", "none"]
        if family == "tokens":
            projs += ["tied", "tied"]
        proj = c.pick(projs)
        if proj == "tied" and d != width:
            layers.append(Proj(width, c.pick(ACTS), c.flag(0.5), "module"))
            d = width
        out = features if proj == "tied" else c.int(1, 6)
        head = Head(c.pick(("none", "none", "mean", "last")), proj, out)
    head = Head(head.pool, head.proj, head.out, c.pick(("", "", "", "tuple", "dict")))
    return Arch(
        family=family,
        seed=c.int(0, 2**16),
        batch=c.int(2, 3),
        length=length,
        features=features,
        width=width,
        layers=tuple(layers),
        head=head,
        trunk=c.pick(("sequential", "sequential", "modulelist", "attrs")),
        positions=family == "tokens" and c.flag(0.3),
        stem_via=c.pick(VIAS) if family == "seq" else "module",
    )


def random_spec(rng) -> Arch:
    """A spec from ``random.Random`` (same grammar as :func:`specs`)."""
    return gen_arch(RandomChooser(rng))


@st.composite
def specs(draw) -> Arch:
    """Hypothesis strategy of architecture specs (plain data)."""
    return gen_arch(_HypothesisChooser(draw))


# ---------------------------------------------------------------------------------
# Building modules
# ---------------------------------------------------------------------------------


def _act(name: str, cdim: int = -1) -> Callable[[torch.Tensor], torch.Tensor]:
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


def _param(*shape: int, fan_in: int | None = None) -> nn.Parameter:
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
        self.weight = _param(*shape, fan_in=i)
        self.bias = _param(o, fan_in=i) if bias else None

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
            _act(spec.act),
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
        self.act = _act(spec.act)

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
                setattr(self, f"{name}_weight", _param(o, i))
                setattr(self, f"{name}_bias", _param(o, fan_in=i) if bias else None)
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
        self.act = _act(spec.act)

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


def _pointwise(i: int, o: int, cdim: int, spatial: int, bias: bool = True) -> nn.Module:
    if cdim == -1:
        return nn.Linear(i, o, bias=bias)
    return (nn.Conv2d if spatial == 2 else nn.Conv1d)(i, o, 1, bias=bias)


class ConcatM(nn.Module):
    def __init__(self, spec: Concat, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.cdim = spec, cdim
        self.branches = nn.ModuleList(_pointwise(d, w, cdim, spatial) for w in spec.widths)
        self.act = _act(spec.act)

    def forward(self, x):
        return torch.cat([self.act(branch(x)) for branch in self.branches], dim=self.cdim)


class SplitM(nn.Module):
    def __init__(self, spec: Split, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.spec, self.cdim, self.half = spec, cdim, spec.half
        self.inp = _pointwise(d, 2 * spec.half, cdim, spatial)

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
        self.up, self.down, self.act = nn.Linear(d, h), nn.Linear(h, d), _act(act)

    def forward(self, x):
        return self.down(self.act(self.up(x)))


class MoeM(nn.Module):
    def __init__(self, spec: Moe, d: int) -> None:
        super().__init__()
        self.spec, self.top_k = spec, spec.top_k
        if spec.router == "module":
            self.router = nn.Linear(d, spec.experts, bias=False)
        else:
            self.router_weight = _param(spec.experts, d)
        if spec.style == "modulelist":
            self.experts = nn.ModuleList(
                Expert(d, spec.hidden, spec.act) for _ in range(spec.experts)
            )
        else:
            self.w_up = _param(spec.experts, d, spec.hidden, fan_in=d)
            self.w_down = _param(spec.experts, spec.hidden, d, fan_in=spec.hidden)
        self.act = _act(spec.act)

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
            self.weight = _param(*shape, fan_in=d // groups * spec.kernel**spatial)
            self.bias = _param(spec.out, fan_in=d) if spec.bias else None
        else:
            if spec.transposed:
                cls = nn.ConvTranspose2d if spatial == 2 else nn.ConvTranspose1d
            else:
                cls = nn.Conv2d if spatial == 2 else nn.Conv1d
            self.conv = cls(
                d, spec.out, spec.kernel, padding=self.padding, groups=groups, bias=spec.bias
            )
        self.act = _act(spec.act, cdim=1)

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
        self.act = _act(spec.act, cdim=1)

    def forward(self, x):
        return x + self.conv2(self.act(self.conv1(x)))


class BlockM(nn.Module):
    """One residual block of a :class:`Stack`: ``x + body(pre_norm(x))``."""

    def __init__(self, spec: Stack, d: int, cdim: int, spatial: int) -> None:
        super().__init__()
        self.norm = _make(spec.pre_norm, d, cdim, spatial)[0] if spec.pre_norm else None
        self.body = nn.ModuleList(_make(layer, d, cdim, spatial)[0] for layer in spec.body)

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


def _make(spec: Layer, d: int, cdim: int, spatial: int) -> tuple[nn.Module, int]:
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


class FuzzNet(nn.Module):
    """The built architecture; ``repr`` starts with its spec."""

    def __init__(self, spec: Arch) -> None:
        super().__init__()
        self.spec = spec
        conv = spec.family.startswith("conv")
        cdim = 1 if conv else -1
        spatial = 2 if spec.family == "conv2d" else 1
        d = spec.width
        if spec.family == "tokens":
            self.embed = nn.Embedding(spec.features, d)
            if spec.positions:
                self.pos = nn.Embedding(spec.length, d)
        elif conv:
            cls = nn.Conv2d if spatial == 2 else nn.Conv1d
            self.stem = cls(spec.features, d, 3, padding=1)
        else:
            self.stem = Dense(spec.features, d, True, spec.stem_via)
        modules = []
        for layer in spec.layers:
            module, d = _make(layer, d, cdim, spatial)
            modules.append(module)
        if spec.trunk == "sequential":
            self.trunk = nn.Sequential(*modules)
        elif spec.trunk == "modulelist":
            self.trunk = nn.ModuleList(modules)
        else:
            for i, module in enumerate(modules):
                setattr(self, f"layer{i}", module)
            self.n_layers = len(modules)
        head = spec.head
        inner = d * (spec.length**spatial) if head.pool == "flatten" else d
        if head.proj == "linear":
            self.head = nn.Linear(inner, head.out)
        elif head.proj == "tied":
            self.head = nn.Linear(d, spec.features, bias=False)
            self.head.weight = self.embed.weight
        elif head.proj in ("flinear", "matmul_t"):
            self.head_weight = _param(head.out, inner)

    def _layers(self):
        if self.spec.trunk == "attrs":
            return [getattr(self, f"layer{i}") for i in range(self.n_layers)]
        return list(self.trunk)

    def forward(self, x):
        spec = self.spec
        if spec.family == "tokens":
            h = self.embed(x)
            if spec.positions:
                h = h + self.pos(torch.arange(x.shape[1], device=x.device))
        else:
            h = self.stem(x)
        if spec.trunk == "sequential":
            h = self.trunk(h)
        else:
            for layer in self._layers():
                h = layer(h)
        stream = h
        pool = spec.head.pool
        if pool == "mean":
            h = h.mean(1) if spec.family in ("seq", "tokens") else h.flatten(2).mean(-1)
        elif pool == "last":
            h = h[:, -1]
        elif pool == "amax":
            h = h.flatten(2).amax(-1)
        elif pool == "flatten":
            h = h.flatten(1)
        proj = spec.head.proj
        if proj in ("linear", "tied"):
            out = self.head(h)
        elif proj == "flinear":
            out = F.linear(h, self.head_weight)
        elif proj == "matmul_t":
            out = h @ self.head_weight.t()
        else:
            out = h
        if spec.head.aux == "tuple":
            return out, stream
        if spec.head.aux == "dict":
            return {"out": out, "stream": stream}
        return out

    def extra_repr(self) -> str:
        return f"spec={self.spec!r}"


@dataclass
class Case:
    """A built architecture: the module (eval mode) and its example inputs."""

    spec: Arch
    model: nn.Module
    inputs: tuple

    def __repr__(self) -> str:
        return f"build({self.spec!r})"


def build(spec: Arch) -> Case:
    """Build ``spec`` deterministically (torch seeded from ``spec.seed``) in eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(spec.seed)
        model = FuzzNet(spec)
        with torch.no_grad():
            for module in model.modules():
                if isinstance(
                    module, (nn.LayerNorm, nn.RMSNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
                ):
                    if module.weight is not None:
                        module.weight.uniform_(0.5, 1.5)
                    if getattr(module, "bias", None) is not None:
                        module.bias.uniform_(-0.5, 0.5)
                if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    module.running_mean.uniform_(-0.5, 0.5)
                    module.running_var.uniform_(0.5, 1.5)
        model.eval()
        if spec.family == "tokens":
            x = torch.randint(0, spec.features, (spec.batch, spec.length))
        elif spec.family == "seq":
            x = torch.randn(spec.batch, spec.length, spec.features)
        elif spec.family == "conv1d":
            x = torch.randn(spec.batch, spec.features, spec.length)
        else:
            x = torch.randn(spec.batch, spec.features, spec.length, spec.length)
    return Case(spec, model, (x,))


def architectures() -> st.SearchStrategy[Case]:
    """Hypothesis strategy: a random architecture built into a :class:`Case`
    (``case.spec``, ``case.model``, ``case.inputs``); it prints as its spec."""
    return specs().map(build)


# ---------------------------------------------------------------------------------
# Plans
# ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """What to do with one analysed model: the plan, and whether to cut in place."""

    plan: surgeon.Plan
    inplace: bool = False


def draw_trial(analysis: surgeon.Analysis, c) -> Trial:
    """A random valid plan: a random subset of the prunable groups (norm-statistics
    groups rarely), each with a random full grid of kept units (at least
    ``min_units``), sometimes whole levels kept; sometimes removable blocks."""
    keep: dict[str, list[int]] = {}
    candidates = list(analysis.prunable)
    for group in candidates:
        if not c.flag(0.6 if group.mask_equivalent else 0.15):
            continue
        units = _grid(group, c)
        if units is not None:
            keep[group.id] = units
    exact = [g for g in candidates if g.mask_equivalent]
    if not keep and exact:
        group = c.pick(exact)
        units = _grid(group, c)
        if units is not None:
            keep[group.id] = units
    if analysis.frozen and c.flag(0.05):  # naming a frozen group whole is allowed
        group = c.pick(list(analysis.frozen))
        keep[group.id] = list(range(group.size))
    remove: list[str] = []
    containers: dict[str, list] = {}
    for block in analysis.blocks:
        containers.setdefault(block.container, []).append(block)
    for blocks in containers.values():
        removable = [b.name for b in blocks if b.removable]
        if removable and c.flag(0.35):
            count = c.int(1, min(len(removable), len(blocks) - 1))
            remove += [removable[i] for i in c.sample(len(removable), count)]
    return Trial(surgeon.Plan(keep, tuple(remove)), inplace=c.flag(0.25))


def _grid(group: surgeon.Group, c) -> list[int] | None:
    for _ in range(4):
        kept = {}
        for level in group.levels:
            if level.size == 1 or c.flag(0.25):
                kept[level.name] = tuple(range(level.size))
            else:
                count = c.int(1, level.size)
                kept[level.name] = tuple(c.sample(level.size, count))
        if math.prod(len(k) for k in kept.values()) >= group.min_units:
            return units_of(kept, group)
    return None


@st.composite
def plans(draw, analysis: surgeon.Analysis) -> Trial:
    """Hypothesis strategy of :class:`Trial` for one analysis."""
    return draw_trial(analysis, _HypothesisChooser(draw))


# ---------------------------------------------------------------------------------
# The property
# ---------------------------------------------------------------------------------

TOLERANCE = 1e-5


@dataclass
class Outcome:
    """``status`` is one of ``verified``, ``verified-inexact`` (a mismatch wholly
    explained by norm-statistics groups listed in ``report.inexact``),
    ``refused`` (a SurgeonError before surgery; ``reason`` says which),
    ``nothing-prunable``, or a failure: ``crash`` (another exception inside the
    library), ``mismatch`` (silent), ``state`` (the model was changed by a
    refused or copying call)."""

    status: str
    reason: str = ""
    stage: str = ""
    detail: str = ""
    trial: Trial | None = None
    max_rel: float | None = None
    extra: dict = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status in ("crash", "mismatch", "state")

    @property
    def key(self) -> str:
        return f"{self.status}: {self.reason}" if self.reason else self.status

    def describe(self) -> str:
        lines = [f"{self.key} (stage {self.stage or '-'})"]
        if self.trial is not None:
            lines.append(f"plan: {self.trial.plan!r} inplace={self.trial.inplace}")
        if self.detail:
            lines.append(self.detail)
        return "\n".join(lines)


class FuzzerBug(AssertionError):
    """The built model does not run by itself: a bug in this grammar, not the library."""


def _snapshot(model: nn.Module) -> tuple[dict[str, torch.Tensor], str]:
    state = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=False).items()}
    return state, repr(model)


def _changed(model: nn.Module, before) -> str | None:
    state, text = before
    now = model.state_dict()
    if now.keys() != state.keys():
        return f"state_dict keys changed: {sorted(set(now) ^ set(state))}"
    for name, tensor in state.items():
        if now[name].shape != tensor.shape or not torch.equal(now[name], tensor):
            return f"tensor '{name}' changed ({tuple(tensor.shape)} -> {tuple(now[name].shape)})"
    if repr(model) != text:
        return "module attributes changed (repr differs)"
    return None


def reason_of(error: BaseException) -> str:
    """A short, number-free key for an expected refusal."""
    name = type(error).__name__
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    found = re.search(r"failed with: (.*?)(?:\. A size written|$)", text)
    if found:
        text = "no longer runs: " + found.group(1)
    elif isinstance(error, surgeon.PlanError):
        text = re.sub(r"^plan\['[^']*'\]: ", "", text)
    elif "could not capture" in text:
        text = re.sub(r"^.*?torch\.export failed in ", "capture failed in ", text)
    text = re.sub(r"'[^']*'", "'…'", text)
    text = re.sub(r"\[[^\]]*\]", "[…]", text)
    text = re.sub(r"\d+", "N", text)
    return f"{name}: {text[:90]}"


def _tail(error: BaseException, lines: int = 12) -> str:
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _crash_reason(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    own = [
        f for f in frames if "/site-packages/" not in f.filename and "/lib/python" not in f.filename
    ]
    where = own[-1] if own else (frames[-1] if frames else None)
    at = f" at {where.filename.rsplit('/', 2)[-2:][-1]}:{where.name}" if where else ""
    message = str(error).splitlines()[0] if str(error) else ""
    message = re.sub(r"\d+", "N", message)[:80]
    return f"{type(error).__name__}{at}: {message}"


def check(case: Case, draw: Callable[[surgeon.Analysis], Trial]) -> Outcome:
    """Analyze ``case``, draw a trial with ``draw(analysis)``, apply, verify.

    The property: either the cut model verifies (exactly, or with every mismatch
    explained by the norm-statistics groups the report lists in ``inexact``), or
    a SurgeonError is raised before surgery and the model is unchanged. Any
    other exception inside the library is a crash; a mismatch not explained is
    a silent mismatch.
    """
    model, inputs = case.model, case.inputs
    try:
        with torch.no_grad():
            model(*inputs)
    except Exception as error:  # the grammar built something that does not run
        raise FuzzerBug(f"{case!r} does not run: {error!r}") from error
    before = _snapshot(model)

    try:
        analysis = surgeon.analyze(model, inputs)
    except surgeon.SurgeonError as error:
        return Outcome("refused", reason_of(error), "analyze", _tail(error, 3))
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "analyze", _tail(error))
    if (why := _changed(model, before)) is not None:
        return Outcome("state", "analyze changed the model", "analyze", why)
    if not analysis.prunable and not any(b.removable for b in analysis.blocks):
        return Outcome("nothing-prunable")

    trial = draw(analysis)
    plan = trial.plan
    work = copy.deepcopy(model) if trial.inplace else model
    work_before = _snapshot(work) if trial.inplace else before
    try:
        pruned = surgeon.apply(work, plan, inplace=trial.inplace, analysis=analysis)
    except surgeon.SurgeonError as error:
        why = _changed(work, work_before)
        if why is None and trial.inplace:
            why = _changed(model, before)
        if why is not None:
            return Outcome(
                "state",
                f"{type(error).__name__} left the model changed",
                "apply",
                f"{why}\n{_tail(error, 3)}",
                trial,
            )
        return Outcome("refused", reason_of(error), "apply", _tail(error, 3), trial)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "apply", _tail(error), trial)
    if not trial.inplace and (why := _changed(model, before)) is not None:
        return Outcome("state", "apply (copy) changed the original", "apply", why, trial)

    try:
        report = surgeon.verify(model, pruned, plan, inputs, analysis=analysis)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "verify", _tail(error), trial)
    if report.ok and report.max_rel <= TOLERANCE:
        return Outcome("verified", trial=trial, max_rel=report.max_rel)

    # A mismatch must be explained by norm-statistics groups the report names.
    cut = {c for c, units in plan.keep.items() if _removes(analysis, c, units)}
    inexact = {c for c in cut if not analysis.group(c).mask_equivalent}
    detail = str(report)
    if not inexact:
        return Outcome("mismatch", "silent mismatch", "verify", detail, trial, report.max_rel)
    if set(report.inexact) != inexact:
        return Outcome(
            "mismatch",
            "inexact groups not listed",
            "verify",
            f"cut non-mask-equivalent: {sorted(inexact)}\n{detail}",
            trial,
            report.max_rel,
        )
    rest = surgeon.Plan(
        {k: v for k, v in plan.keep.items() if k not in inexact}, plan.remove_blocks
    )
    try:
        rest_pruned = surgeon.apply(model, rest, analysis=analysis)
        rest_report = surgeon.verify(model, rest_pruned, rest, inputs, analysis=analysis)
    except Exception as error:
        return Outcome("crash", _crash_reason(error), "verify-rest", _tail(error), trial)
    if not (rest_report.ok and rest_report.max_rel <= TOLERANCE):
        return Outcome(
            "mismatch",
            "silent mismatch besides inexact groups",
            "verify",
            f"without {sorted(inexact)}:\n{rest_report}",
            Trial(rest),
            report.max_rel,
        )
    return Outcome("verified-inexact", trial=trial, max_rel=report.max_rel)


def _removes(analysis: surgeon.Analysis, group_id: str, units) -> bool:
    return len(set(units)) < analysis.group(group_id).size
