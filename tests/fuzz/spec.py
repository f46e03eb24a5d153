"""The fuzzing grammar's vocabulary: architecture *specs* as plain data.

Frozen dataclasses whose ``repr`` is valid Python (``eval`` over this module's
names rebuilds them), so a failing example is saved, replayed and turned into
a regression test from its text alone. ``tests/fuzz/grammar.py`` draws them,
``tests/fuzz/build.py`` turns them into modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

__all__ = [
    "ACTS",
    "VIAS",
    "Arch",
    "Attn",
    "Concat",
    "Conv",
    "Head",
    "Heads",
    "Layer",
    "Mlp",
    "Moe",
    "Norm",
    "Proj",
    "ResConv",
    "Split",
    "Stack",
]

ACTS = ("relu", "gelu", "silu", "tanh", "sigmoid", "softplus", "identity")
VIAS = ("module", "flinear", "matmul_t", "matmul", "einsum")


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
