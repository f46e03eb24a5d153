"""Stacks run in lockstep (``zip(self.embeds, self.stages)``: PVT, PoolFormer)
are not removable block by block: dropping one stage drops its partner from
the zip too. A stack iterated alone stays removable."""

import torch
from torch import nn

import surgeon


class Stage(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, width)

    def forward(self, x):
        return x + self.fc(x)


class Zipped(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        widths = [8, 12, 16]
        inputs = [4, 8, 12]
        self.embeds = nn.ModuleList(nn.Linear(a, b) for a, b in zip(inputs, widths, strict=True))
        self.stages = nn.ModuleList(Stage(w) for w in widths)
        self.tail = nn.ModuleList(Stage(16) for _ in range(2))
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        for embed, stage in zip(self.embeds, self.stages, strict=True):
            x = stage(embed(x))
        for block in self.tail:
            x = block(x)
        return self.head(x)


def test_zipped_stacks_are_not_removable_and_say_why():
    torch.manual_seed(0)
    analysis = surgeon.analyze(Zipped().eval(), inputs=torch.randn(2, 4))
    blocks = {b.name: b for b in analysis.blocks}
    for i in range(3):
        stage = blocks[f"stages.{i}"]
        assert stage.residual and not stage.removable
        assert "lockstep with 'embeds'" in stage.reason
    assert blocks["tail.0"].removable and blocks["tail.1"].removable
