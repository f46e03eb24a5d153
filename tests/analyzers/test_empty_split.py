"""``split([n, 0])`` (a zero-width part named by a config: DeepSeek-V3.2 and
dots3 shapes) gives every output an axis; analyze crashed with IndexError."""

import torch
from torch import nn

import surgeon


class EmptyPart(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(8, 12)
        self.down = nn.Linear(12, 8)

    def forward(self, x):
        kept, empty = torch.split(self.up(x), [12, 0], dim=-1)
        return self.down(kept) + empty.sum()


def test_a_zero_width_split_part_is_analysed():
    analysis = surgeon.analyze(EmptyPart().eval(), torch.randn(2, 8))
    group = next(g for g in analysis.prunable if "up.weight" in g.params)
    assert group.size == 12
    assert "down.weight" in group.params


class EmptyReshaped(EmptyPart):
    def forward(self, x):
        kept, empty = torch.split(self.up(x), [12, 0], dim=-1)
        return self.down(kept) + empty.reshape(2, 0, 4).sum()


def test_an_empty_part_reshaped_couples_nothing():
    """Falcon-H1 reshapes a zero-width part: analyze crashed (modulo by zero)."""
    analysis = surgeon.analyze(EmptyReshaped().eval(), torch.randn(2, 8))
    group = next(g for g in analysis.prunable if "up.weight" in g.params)
    assert group.size == 12
