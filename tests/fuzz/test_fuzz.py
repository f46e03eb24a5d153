"""Property-based fuzzing of analyze -> apply -> verify over random architectures.

For every drawn architecture (``tests/fuzz/architectures.py`` lists the
modules that draw, build and check them) and a random plan over its prunable
groups (sometimes removing blocks, sometimes cutting in place) exactly one of
these must hold:

* the cut model verifies against the masked original (max rel error <= 1e-5
  in fp32), where a mismatch is allowed only when it is wholly explained by
  the norm-statistics groups the report lists in ``report.inexact`` (the plan
  without them must verify exactly);
* a ``surgeon.SurgeonError`` (PlanError, RewriteError, CaptureError) was
  raised before surgery and the model is unchanged (state_dict and attributes).

Any other exception inside the library is a crash; an unexplained mismatch is
a silent mismatch. Outcomes are counted and printed by the last test; the long
run is ``python bench/fuzz_long.py``.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

from tests.fuzz.build import architectures, build
from tests.fuzz.grammar import specs
from tests.fuzz.harness import check
from tests.fuzz.plans import Trial, plans

OUTCOMES: Counter[str] = Counter()


@settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
@given(case=architectures(), data=st.data())
def test_cut_models_verify_or_are_refused_untouched(case, data):
    def draw(analysis) -> Trial:
        groups = [(g.id, [(lv.name, lv.size) for lv in g.levels]) for g in analysis.prunable]
        note(f"prunable groups: {groups}")
        return data.draw(plans(analysis), label="trial")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        outcome = check(case, draw)
    OUTCOMES[outcome.key if outcome.status != "verified" else "verified"] += 1
    assert not outcome.failed, outcome.describe()


@settings(max_examples=15, deadline=None, derandomize=True)
@given(spec=specs())
def test_a_spec_builds_the_same_model_and_inputs_every_time(spec):
    first, second = build(spec), build(spec)
    assert not first.model.training
    assert first.model.state_dict().keys() == second.model.state_dict().keys()
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(tensor, second.model.state_dict()[name]), name
    assert all(torch.equal(a, b) for a, b in zip(first.inputs, second.inputs, strict=True))
    assert repr(spec) in repr(first.model)


def test_outcome_counts(capsys):
    """Print how the fuzz examples ended (run after the property test)."""
    if not OUTCOMES:
        pytest.skip("the property test did not run in this session")
    total = sum(OUTCOMES.values())
    with capsys.disabled():
        print(f"\nfuzz outcomes over {total} examples:", file=sys.stderr)
        for key, count in OUTCOMES.most_common():
            print(f"  {count:4d}  {key}", file=sys.stderr)
    # The fuzzer is only worth something if most examples reach verify.
    verified = OUTCOMES["verified"] + OUTCOMES["verified-inexact"]
    assert verified >= total // 3, OUTCOMES
