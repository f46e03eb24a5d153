"""``x[mask] = vector`` (T5Gemma2 writes a learned embedding at its special
tokens): the vector broadcasts against x's last axes, so it joins x's width
group instead of forming a group of its own that a cut would slice alone."""

import torch
from torch import nn

import surgeon


class Special(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(16, 8)
        self.special = nn.Parameter(torch.randn(8))
        self.up = nn.Linear(8, 12)
        self.down = nn.Linear(12, 8)

    def forward(self, ids):
        x = self.embed(ids)
        x[ids == 3] = self.special
        return x + self.down(torch.relu(self.up(x)))


def test_the_assigned_vector_shares_the_width_of_what_it_is_written_into():
    torch.manual_seed(0)
    ids = torch.tensor([[1, 3, 5, 3], [2, 2, 7, 9]])
    analysis = surgeon.analyze(Special().eval(), inputs=ids)
    (group,) = [g for g in analysis.groups if any(m.param == "special" for m in g.members)]
    assert {m.param for m in group.members} >= {"special", "embed.weight", "up.weight"}
    assert group.kind == "hidden"
