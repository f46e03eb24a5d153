"""TIED_WIDTHS entries may name a module further down (a dotted child): RAFT divides
its correlation volume by the square root of its feature maps' channel count, and
its context encoder, of the same class as the feature encoder, stays cuttable."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import surgeon
from surgeon.analyzers import limits


class _Encoder(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.conv = nn.Conv2d(8, width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.relu(self.stem(x)))


class _Flow(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.feature_encoder, self.context_encoder = _Encoder(16), _Encoder(12)
        self.head = nn.Conv2d(12 + 1, 2, 1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        fmap = self.feature_encoder(image)
        channels = fmap.shape[1]  # read from the shape: a width the graph does not show
        corr = (fmap * fmap.mean((2, 3), keepdim=True)).sum(1, keepdim=True) / channels**0.5
        return self.head(torch.cat([torch.relu(self.context_encoder(image)), corr], dim=1))


def _owner(analysis, param):
    return next(
        g for g in analysis.groups if any(m.param == param and m.dim == 0 for m in g.members)
    )


def test_a_dotted_child_freezes_that_module_only(monkeypatch):
    key = f"{_Flow.__module__}.{_Flow.__qualname__}"
    table = {**limits.TIED_WIDTHS, key: (("feature_encoder.conv:0",), "reads its width")}
    monkeypatch.setattr(limits, "TIED_WIDTHS", table)
    torch.manual_seed(0)
    analysis = surgeon.analyze(_Flow().eval(), inputs=torch.randn(1, 3, 8, 8))
    assert "reads its width" in (_owner(analysis, "feature_encoder.conv.weight").frozen or "")
    assert _owner(analysis, "context_encoder.conv.weight").frozen is None
    assert _owner(analysis, "feature_encoder.stem.weight").frozen is None


def test_torchvision_raft_is_listed():
    raft = pytest.importorskip("torchvision.models.optical_flow.raft")
    model = raft.raft_small(weights=None)
    (child,), _ = limits.TIED_WIDTHS[f"{raft.RAFT.__module__}.{raft.RAFT.__qualname__}"]
    assert isinstance(model.get_submodule(child.partition(":")[0]), nn.Conv2d)
