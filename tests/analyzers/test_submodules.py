"""Capture of chosen submodules for a model whose own forward does not export:
a small detector with data-dependent selection between its backbone and heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.errors import InputError

PARTS = ["backbone", "rpn_head", "box_head", "box_predictor"]


class TinyDetector(nn.Module):
    """Backbone -> features; a proposal head on them; the code in between picks
    the best-scored locations (data-dependent) and gathers their features for a
    box head and its predictor, as Faster R-CNN's RoI pooling does."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 8, 3, padding=1)
        )
        self.rpn_head = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 1))
        self.box_head = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.box_predictor = nn.Linear(32, 5)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        scores = self.rpn_head(features).flatten()
        keep = torch.nonzero(scores > scores.median()).flatten()  # data-dependent
        if keep.numel() == 0:
            return {"boxes": torch.zeros(0, 5)}
        pooled = features.flatten(2)[0, :, keep].t()
        return {"boxes": self.box_predictor(self.box_head(pooled)), "scores": scores[keep]}


def detector() -> TinyDetector:
    torch.manual_seed(0)
    return TinyDetector().eval()


def test_the_whole_detector_captures_only_along_its_example():
    """torch.export stops at the branch on values; a draft export follows the
    example's branch and the analysis says so (submodules avoid that)."""
    analysis = surgeon.analyze(detector(), torch.randn(1, 3, 8, 8))
    assert analysis.capture_method.startswith("draft_export")
    assert "keep.numel() == 0" in analysis.capture_method


def test_chosen_submodules_are_captured_as_the_model_wires_them():
    model, x = detector(), torch.randn(1, 3, 8, 8)
    analysis = surgeon.analyze(model, x, submodules=PARTS)
    assert analysis.model_class == f"TinyDetector ({', '.join(PARTS)})"
    by_param = {(m.param, m.dim): g for g in analysis.groups for m in g.members}
    # inside the backbone: free channels, named as in the model
    assert by_param[("backbone.0.weight", 0)].frozen is None
    assert by_param[("backbone.0.weight", 0)] is by_param[("backbone.2.weight", 1)]
    # the features the code in between reads keep their width, the head's input too
    assert by_param[("backbone.2.weight", 0)].frozen is not None
    assert by_param[("backbone.2.weight", 0)] is by_param[("rpn_head.0.weight", 1)]
    # only the predictor reads box_head's output: one MLP group across both
    mlp = by_param[("box_head.0.weight", 0)]
    assert mlp is by_param[("box_predictor.weight", 1)] and mlp.kind == "mlp" and not mlp.frozen
    # box_head's input comes from the code in between: an input of the parts
    assert by_param[("box_head.0.weight", 1)].frozen is not None


def test_prune_cuts_the_parts_verifies_them_and_the_whole_model_still_runs():
    model, x = detector(), torch.randn(1, 3, 8, 8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    result = surgeon.prune(
        model, 0.3, criterion="magnitude", inputs=x, submodules=PARTS, progress=False
    )
    check = result.report.verification
    assert check.ok and not check.weak
    assert {g.split("@")[0] for g in result.plan.keep} >= {"channels", "mlp"}
    assert result.model.box_head[0].out_features < 32
    assert result.model.backbone[0].out_channels < 16
    with torch.no_grad():
        assert result.model(x)["boxes"].shape[1] == 5
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_bad_submodule_names_are_refused_with_what_exists():
    model, x = detector(), torch.randn(1, 3, 8, 8)
    with pytest.raises(InputError, match="no submodule 'head'.*children are backbone"):
        surgeon.analyze(model, x, submodules=["head"])
    with pytest.raises(InputError, match="overlap"):
        surgeon.analyze(model, x, submodules=["backbone", "backbone.0"])
