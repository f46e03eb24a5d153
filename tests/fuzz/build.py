"""Build a spec into an ``nn.Module`` in eval mode plus example inputs.

Everything random in the built model comes from ``spec.seed``, so a spec is a
complete, replayable description:

>>> case = build(spec)                           # doctest: +SKIP
>>> case.model(*case.inputs)                     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from hypothesis import strategies as st
from torch import nn

from .grammar import specs
from .layers import Dense, parameter
from .spec import Arch
from .structure import make_layer

__all__ = ["Case", "FuzzNet", "architectures", "build"]


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
            module, d = make_layer(layer, d, cdim, spatial)
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
            self.head_weight = parameter(head.out, inner)

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
