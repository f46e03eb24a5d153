"""The stages of the coverage sweep for one built model (see coverage_stages.py).

Every cut is made the user's way (``surgeon.apply`` then ``surgeon.verify``
with the analysis), and a stage that returns a model the library's own check
rejects is a ``mismatch``, never a pass.
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import torch
from coverage_outcomes import NotApplicable, NotPlain, Refused
from coverage_plans import attention_plan, half, width_plan

import surgeon

GENERATE_TOKENS = 4
WIDTH_KINDS = ("mlp", "expert_mlp", "experts", "channels")


class Checks:
    def __init__(self, model, arch) -> None:
        self.model = model
        self.arch = arch
        self.analysis = None
        self.passed: dict[str, dict[str, list[int]]] = {}  # stage -> keep of its plan
        self.removed_block: tuple[str, ...] = ()
        self.combined = None

    # ------------------------------------------------------------------ helpers
    def _cut(self, keep, blocks=()):
        plan = surgeon.Plan.for_analysis(self.analysis, keep, blocks)
        pruned = surgeon.apply(self.model, plan, analysis=self.analysis)
        report = surgeon.verify(self.model, pruned, plan, analysis=self.analysis)
        return plan, pruned, report

    def _checked_cut(self, stage, keep, blocks=()):
        if not keep and not blocks:
            raise NotApplicable("nothing of this kind to cut")
        plan, pruned, report = self._cut(keep, blocks)
        if not report.ok:
            raise Refused(f"verify: max rel {report.max_rel:.3g} ({_worst(report)})")
        self.passed[stage] = dict(keep)
        return pruned, f"{len(keep)} groups cut, max rel {report.max_rel:.2g}"

    def _inputs(self):
        from surgeon.analyzers.example_inputs import example_inputs

        return example_inputs(self.model)

    # ------------------------------------------------------------------ stages
    def analyze(self):
        self.analysis = surgeon.analyze(self.model)
        kinds = sorted({str(g.kind) for g in self.analysis.prunable})
        return self.analysis, f"{len(self.analysis.prunable)} prunable ({', '.join(kinds)})"

    def user_inputs(self):
        from transformers import BatchEncoding

        _, kwargs = self._inputs()
        user = {k: v for k, v in kwargs.items() if k != "use_cache"}
        if "input_ids" in user:
            user["attention_mask"] = torch.ones_like(user["input_ids"])
        # a BatchEncoding is the dict a tokenizer returns: no use_cache, a mask
        surgeon.analyze(self.model, BatchEncoding(user))
        return True, "BatchEncoding(" + ", ".join(user) + ")"

    def cuts(self):
        """widths, KV groups, queries and one block in one plan: one apply and one
        verify when all is well; each part alone to say which fails otherwise."""
        makers = {
            "widths": lambda: width_plan(self.analysis, WIDTH_KINDS, random.Random(1)),
            "kv-groups": lambda: attention_plan(self.analysis, "kv", random.Random(2)),
            "queries": lambda: attention_plan(self.analysis, "q", random.Random(3)),
        }
        parts, errors = {}, {}
        for stage, make in makers.items():
            try:
                parts[stage] = (make(), ())
            except Exception as error:  # noqa: BLE001 - reported as that stage's outcome
                parts[stage], errors[stage] = ({}, ()), error
        removable = [b for b in self.analysis.blocks if b.removable]
        parts["block"] = ({}, (removable[-1].name,) if removable else ())
        keep = _merged_attention(parts)
        keep.update(parts["widths"][0])
        blocks = self.removed_block = parts["block"][1]
        try:
            plan, pruned, report = self._cut(keep, blocks)
            together = report.ok  # strict: an inexact group could hide a wrong one
        except Exception:  # noqa: BLE001 - attributed part by part below
            together = False
        if together:
            self.combined = (plan, pruned)
        for stage, (part_keep, part_blocks) in parts.items():
            if stage in errors:
                body = _raiser(errors[stage])
            elif together:
                self.passed[stage] = dict(part_keep)
                body = _applicable(part_keep, part_blocks, "cut together with the other stages")
            else:
                body = self._part(stage, part_keep, part_blocks)
            yield stage, body

    def _part(self, stage, keep, blocks):
        def body():
            if not keep and not blocks:
                raise NotApplicable("nothing of this kind to cut")
            plan, pruned, report = self._cut(keep, blocks)
            if not report.ok and not _explained(report, self.analysis, keep):
                raise Refused(f"verify: max rel {report.max_rel:.3g} ({_worst(report)})")
            if not report.ok:  # inexact groups must not hide a wrong exact one
                exact = {g: u for g, u in keep.items() if self.analysis.group(g).mask_equivalent}
                if exact and not (alone := self._cut(exact, blocks)[2]).ok:
                    raise Refused(
                        f"verify of the exact groups alone: max rel {alone.max_rel:.3g} "
                        f"({_worst(alone)})"
                    )
            self.passed[stage] = dict(keep)
            return True, _note(report)

        return body

    def hidden(self):
        rng = random.Random(4)
        keep = {}
        for group in self.analysis.by_kind("hidden"):
            if group.frozen or group.size < 2:
                continue
            if len(group.levels) > 1:  # the hidden axis times streams (hyper-connections)
                units = half(group, group.levels[0].name, rng, 0.75)
                if units is not None:
                    keep[group.id] = units
                continue
            count = max(
                group.min_units, 2, (group.size * 3 // 4) // group.multiple_of * group.multiple_of
            )
            if count < group.size:
                keep[group.id] = sorted(rng.sample(range(group.size), count))
        if not keep:
            raise NotApplicable("no prunable hidden group")
        plan, _, report = self._cut(keep)
        if report.ok or _explained(report, self.analysis, keep):
            return True, _note(report)
        raise Refused(f"verify: max rel {report.max_rel:.3g} and not reported inexact")

    def _combined(self):
        if self.combined is not None:
            return self.combined
        keep = {}
        for stage in ("widths", "kv-groups"):
            keep.update(self.passed.get(stage, {}))
        # exact groups only: what generate and reloading are compared on
        keep = {g: u for g, u in keep.items() if self.analysis.group(g).mask_equivalent}
        blocks = self.removed_block if "block" in self.passed else ()
        if not keep and not blocks:
            raise NotApplicable("no cut passed to build on")
        plan, pruned, report = self._cut(keep, blocks)
        if not report.ok and not _explained(report, self.analysis, keep):
            raise Refused(f"verify of the combined cut: max rel {report.max_rel:.3g}")
        self.combined = (plan, pruned)
        return self.combined

    def generate(self):
        if self.arch.task not in ("causal-lm", "seq2seq-lm") or not self.model.can_generate():
            raise NotApplicable("not a generative head")
        from surgeon.rewriters import resolve
        from surgeon.verify import MaskedReference

        plan, pruned = self._combined()
        _, kwargs = self._inputs()
        ids = kwargs["input_ids"][:1]
        options = dict(max_new_tokens=GENERATE_TOKENS, do_sample=False, use_cache=True)
        options["attention_mask"] = torch.ones_like(ids)
        if getattr(self.model.config, "is_encoder_decoder", False):
            # small configs built from defaults may name no start token (T5's is 0)
            config = self.model.config
            start = getattr(config, "decoder_start_token_id", None)
            options["decoder_start_token_id"] = (
                start if start is not None else (config.pad_token_id or 0)
            )
        reference = MaskedReference(self.model, resolve(plan, self.analysis))
        try:
            expected = reference.generate(ids, **options)
        except Exception as error:  # noqa: BLE001 - transformers' own limit at this size
            raise NotApplicable(f"the original does not generate: {error}") from error
        got = pruned.generate(ids, **options)
        if not torch.equal(expected, got):
            raise Refused(f"greedy tokens differ: {expected.tolist()} vs {got.tolist()}")
        return True, f"{GENERATE_TOKENS} tokens equal to the masked original's"

    def save_load(self):
        _, pruned = self._combined()
        with tempfile.TemporaryDirectory() as directory:
            surgeon.save(pruned, directory)
            loaded = surgeon.load(directory)
            _same_outputs(pruned, loaded, self._inputs(), "surgeon.load")
        return True, "reloaded outputs equal"

    def from_pretrained(self):
        """A uniform MLP cut (the same width in every layer, dense and expert
        MLPs alike: what ``allocation="uniform"`` makes; one config field often
        sizes both) must load with plain ``from_pretrained``."""
        keep = width_plan(self.analysis, ("mlp", "expert_mlp"), random.Random(5))
        if not keep:
            raise NotApplicable("no MLP widths to cut")
        for kind in ("mlp", "expert_mlp"):
            widths = {
                len(units) for gid, units in keep.items() if self.analysis.group(gid).kind == kind
            }
            if len(widths) > 1:
                raise NotApplicable(f"{kind} groups of different widths: no uniform cut")
        _, pruned, _ = self._cut(keep)
        if pruned.config.to_dict() == self.model.config.to_dict():
            raise NotApplicable("the config has no field for the cut widths (surgeon.load reloads)")
        with tempfile.TemporaryDirectory() as directory:
            surgeon.save(pruned, directory)
            import json

            manifest = json.loads((Path(directory) / "surgeon.json").read_text())
            if not manifest.get("plain_from_pretrained"):
                raise NotPlain(
                    "a uniform cut's config.json does not describe it (surgeon.load needed)"
                )
            loaded = type(self.model).from_pretrained(directory).eval()
            _same_outputs(pruned, loaded, self._inputs(), "from_pretrained")
        return True, "plain from_pretrained outputs equal"

    def prune(self):
        result = surgeon.prune(self.model, 0.3, criterion="magnitude", progress=False)
        report = result.report.verification
        if report is None or not (report.ok or _explained(report, self.analysis, result.plan.keep)):
            raise Refused(f"prune returned a model whose verification is {report}")
        return True, f"{result.report.params_before:,} -> {result.report.params_after:,}"

    def run_all(self, run_stage) -> None:
        if run_stage("analyze", self.analyze) is None:
            return
        run_stage("user-inputs", self.user_inputs)
        for stage, body in self.cuts():
            run_stage(stage, body)
        for stage in ("hidden", "generate", "save-load", "from-pretrained", "prune"):
            run_stage(stage, getattr(self, stage.replace("-", "_")))


def _explained(report, analysis, keep) -> bool:
    """A mismatch wholly due to groups inexact by nature (norm statistics over
    their axis), which verify lists as such: every cut group it touches is one."""
    cut = {gid for gid in keep if len(keep[gid]) < analysis.group(gid).size}
    inexact = {gid for gid in cut if not analysis.group(gid).mask_equivalent}
    return bool(inexact) and inexact <= set(report.inexact)


def _note(report) -> str:
    if report.ok:
        return f"max rel {report.max_rel:.2g}"
    return f"inexact by nature ({', '.join(report.inexact)[:120]}), max rel {report.max_rel:.2g}"


def _merged_attention(parts) -> dict:
    """KV-group and per-group query cuts of one attention group as one grid."""
    kv, q = parts["kv-groups"][0], parts["queries"][0]
    return {
        gid: sorted(set(kv.get(gid, units)) & set(q.get(gid, units)))
        for gid, units in {**kv, **q}.items()
    }


def _raiser(error):
    def body():
        raise error

    return body


def _applicable(keep, blocks, note):
    def body():
        if not keep and not blocks:
            raise NotApplicable("nothing of this kind to cut")
        return True, note

    return body


def _worst(report) -> str:
    worst = max(report.outputs, key=lambda o: o.max_rel, default=None)
    return f"output {worst.name}" if worst else "no outputs"


def _same_outputs(a, b, inputs, how) -> None:
    from torch.utils import _pytree as pytree

    args, kwargs = inputs
    with torch.no_grad():
        left = [t for t in pytree.tree_leaves(a(*args, **kwargs)) if isinstance(t, torch.Tensor)]
        right = [t for t in pytree.tree_leaves(b(*args, **kwargs)) if isinstance(t, torch.Tensor)]
    if len(left) != len(right) or any(
        x.shape != y.shape or not torch.allclose(x, y, atol=1e-6, rtol=0)
        for x, y in zip(left, right, strict=True)
    ):
        raise Refused(f"outputs after {how} differ from the pruned model's")


def _name_kind(error, checks, keep):
    """Re-raise a widths failure with the kind that fails alone named in it."""
    if not isinstance(error, Exception) or isinstance(error, NotApplicable):
        return error
    for kind in WIDTH_KINDS:
        part = {g: u for g, u in keep.items() if str(checks.analysis.group(g).kind) == kind}
        if not part or len(part) == len(keep):
            continue
        try:
            failed = not checks._cut(part)[2].ok
        except Exception:  # noqa: BLE001
            failed = True
        if failed:
            error.args = (f"[{kind}] {error.args[0] if error.args else ''}", *error.args[1:])
            return error
    return error
