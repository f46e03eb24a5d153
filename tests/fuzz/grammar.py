"""The grammar of random architectures, written once against a *chooser*.

A chooser has ``int``, ``pick``, ``flag`` and ``sample``; the same grammar draws
from hypothesis (:func:`specs`, shrinkable) and from ``random.Random``
(:func:`random_spec`, the long run in ``bench/fuzz_long.py``). The order of the
draws is what makes example ``i`` of seed ``s`` the same architecture in every
run: change it only knowing that old indices lose their meaning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st

from .spec import (
    ACTS,
    VIAS,
    Arch,
    Attn,
    Concat,
    Conv,
    Head,
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

__all__ = ["HypothesisChooser", "RandomChooser", "gen_arch", "random_spec", "specs"]


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


class HypothesisChooser:
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
        return _concat(c)
    if kind == "split":
        return _split(c)
    if kind == "stack":
        body: list[Layer] = []
        for _ in range(c.int(1, 2)):
            layer, d2 = _seq_layer(c, d, depth + 1, in_block=True)
            assert d2 == d
            body.append(layer)
        pre = _norm(c, d, ("layer", "rms", "batch", "group")) if c.flag(0.6) else None
        return Stack(c.int(2, 3), tuple(body), pre), d
    raise AssertionError(kind)


def _concat(c) -> tuple[Layer, int]:
    """A concat of 2 or 3 branches (the same draws for sequence and conv models)."""
    widths = tuple(c.int(1, 8) for _ in range(c.int(2, 3)))
    return Concat(widths, c.pick(ACTS)), sum(widths)


def _split(c) -> tuple[Layer, int]:
    """A split into halves recombined (the same draws for sequence and conv models)."""
    half = c.int(2, 8)
    mode = c.pick(("chunk", "chunk", "split_int", "split_list", "narrow", "unbind", "glu"))
    combine = "gate" if mode == "glu" else c.pick(("gate", "mul", "add", "swap_cat"))
    return Split(half, mode, combine), (2 * half if combine == "swap_cat" else half)


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
        return _concat(c)
    if kind == "split":
        return _split(c)
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
    return gen_arch(HypothesisChooser(draw))
