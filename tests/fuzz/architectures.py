"""Random architectures for fuzzing analyze -> apply -> verify: the public face
of the fuzzing package, re-exporting its focused modules.

An architecture is drawn from a small grammar as a plain-data *spec*, then
built into an ``nn.Module`` in eval mode plus example inputs; a random plan is
drawn from its analysis and the property is checked.

``spec``       the spec dataclasses (``repr`` is valid Python)
``grammar``    the grammar over a chooser: hypothesis (``specs``) or
               ``random.Random`` (``random_spec``, for ``bench/fuzz_long.py``)
``layers``     modules of per-token layers (dense, MLP, norm, attention, heads)
``structure``  modules that branch, route or repeat (concat, split, MoE, conv, stacks)
``build``      the whole model and its inputs (``build``, ``architectures``)
``plans``      random plans (``draw_trial``, ``plans``)
``harness``    the property (``check``) and its outcomes

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
"""

from __future__ import annotations

from .build import Case, FuzzNet, architectures, build
from .grammar import HypothesisChooser, RandomChooser, gen_arch, random_spec, specs
from .harness import TOLERANCE, FuzzerBug, Outcome, check, reason_of
from .plans import Trial, draw_trial, plans
from .spec import (
    ACTS,
    VIAS,
    Arch,
    Attn,
    Concat,
    Conv,
    Head,
    Heads,
    Mlp,
    Moe,
    Norm,
    Proj,
    ResConv,
    Split,
    Stack,
)

__all__ = [
    "ACTS",
    "TOLERANCE",
    "VIAS",
    "Arch",
    "Attn",
    "Case",
    "Concat",
    "Conv",
    "FuzzNet",
    "FuzzerBug",
    "Head",
    "Heads",
    "HypothesisChooser",
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
    "gen_arch",
    "plans",
    "random_spec",
    "reason_of",
    "specs",
]
