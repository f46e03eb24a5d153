"""fx-surgeon: capture a model as an FX graph, find what must be pruned together,
and shrink it into smaller dense shapes that are proven equal to the masked
original.

The pipeline, one public function per stage (rooms of the package in brackets):

- ``analyze(model, inputs=None) -> Analysis``: capture with torch.export and
  group coupled slices (channels, heads by KV group, experts, hidden size,
  blocks) from one coupling rule per aten op [analyzers].
- ``prune(model, ratio, calib=..., **options) -> PruneResult``: the whole
  pipeline in one call with the best measured recipe as defaults: calibrate and
  score [calibrate], plan to the target [plan], cut [rewriters], compensate,
  verify.
- ``make_plan(analysis, scores, PlanOptions(...)) -> Plan`` and
  ``Plan.for_analysis(analysis, keep, remove_blocks)``: plans are plain data
  (JSON), replayable on a fresh model or on checkpoint files [plan].
- ``apply(model, plan) -> nn.Module``: the transactional rewrite; on any error
  the model is unchanged [rewriters].
- ``verify(original, pruned, plan) -> VerifyReport``: the cut against the
  original with the removed units masked, and how much the check could see.
- ``save(model, path)`` / ``load(path)``: safetensors and a manifest; plain
  ``from_pretrained`` loads what one config describes [checkpoint].
- ``prune_checkpoint(src, out, ratio)``: the cut on disk, tensor by tensor.
- ``heal(pruned, original, data, tokens=...) -> HealResult``: recover the cut by
  distillation from the original; ``heal.iterative`` prunes in steps [heal].

Every step below runs as written (tests/test_api_examples.py runs it):

>>> import tempfile, pathlib, torch, surgeon
>>> from surgeon.demo import demo_model
>>> model = demo_model()                                  # a small Llama, random weights
>>> analysis = surgeon.analyze(model)                     # capture -> groups
>>> mlp = analysis.group("mlp@model.layers.0.mlp")
>>> mlp.kind.value, mlp.size
('mlp', 688)
>>> plan = surgeon.Plan.for_analysis(analysis, {mlp.id: list(range(0, 688, 2))})
>>> pruned = surgeon.apply(model, plan, analysis=analysis)            # a cut copy
>>> pruned.model.layers[0].mlp.down_proj.in_features
344
>>> surgeon.verify(model, pruned, plan, analysis=analysis).ok         # proven equal
True
>>> scores = {g.id: torch.rand(g.size) for g in analysis.by_kind("mlp")}
>>> options = surgeon.PlanOptions(ratio=0.25, allocation="uniform")
>>> sorted(set(len(k) for k in surgeon.make_plan(analysis, scores, options).keep.values()))
[464]
>>> result = surgeon.prune(model, 0.25, criterion="magnitude", progress=False)
>>> result.report.verification.ok
True
>>> out = pathlib.Path(tempfile.mkdtemp())
>>> _ = surgeon.save(result.model, out / "cut")
>>> reloaded = surgeon.load(out / "cut")
>>> torch.equal(reloaded.lm_head.weight, result.model.lm_head.weight)
True
>>> model.save_pretrained(out / "dense")
>>> streamed = surgeon.prune_checkpoint(out / "dense", out / "streamed", 0.25, progress=False)
>>> streamed.path.name
'streamed'
"""

from surgeon import heal  # the package is callable: surgeon.heal(student, teacher, data)
from surgeon.analyzers import Analysis, Block, Group, GroupKind, Layout, Level, Member, analyze
from surgeon.checkpoint.persist import load, save
from surgeon.checkpoint.stream import StreamResult, prune_checkpoint
from surgeon.errors import (
    CaptureError,
    InputError,
    PlanError,
    RewriteError,
    SurgeonError,
    VerificationError,
)
from surgeon.plan.plan import Plan
from surgeon.plan.planner import PlanOptions, make_plan
from surgeon.prune import PruneResult, prune
from surgeon.rewriters import apply
from surgeon.verify import VerifyReport, verify

__all__ = [
    "Analysis",
    "Block",
    "CaptureError",
    "Group",
    "GroupKind",
    "InputError",
    "Layout",
    "Level",
    "Member",
    "Plan",
    "PlanOptions",
    "PruneResult",
    "PlanError",
    "RewriteError",
    "StreamResult",
    "SurgeonError",
    "VerificationError",
    "VerifyReport",
    "analyze",
    "apply",
    "heal",
    "load",
    "make_plan",
    "prune",
    "prune_checkpoint",
    "save",
    "verify",
]
__version__ = "0.1.0"
