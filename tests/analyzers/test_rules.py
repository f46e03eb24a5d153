"""One tiny module per coupling pattern."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

import surgeon
from surgeon.analyzers.rules import registered_ops


def members(analysis, kind=None):
    return {
        (m.param, m.dim, str(m.layout))
        for g in analysis.prunable
        if kind is None or g.kind == kind
        for m in g.members
    }


class TwoLayer(nn.Module):
    def __init__(self, act=F.relu):
        super().__init__()
        self.fc1, self.fc2, self.act = nn.Linear(6, 10), nn.Linear(10, 4), act

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_linear_chain_couples_outputs_of_one_layer_with_inputs_of_the_next():
    analysis = surgeon.analyze(TwoLayer().eval(), torch.randn(3, 6))
    assert members(analysis) == {
        ("fc1.weight", 0, "unit(10)"),
        ("fc1.bias", 0, "unit(10)"),
        ("fc2.weight", 1, "unit(10)"),
    }
    assert analysis.prunable[0].kind == "mlp"


def test_activations_with_nonzero_value_at_zero_do_not_change_coupling():
    analysis = surgeon.analyze(TwoLayer(torch.sigmoid).eval(), torch.randn(3, 6))
    assert len(analysis.prunable) == 1 and analysis.prunable[0].size == 10


def test_transposed_weights_through_matmul_and_addmm():
    class Transposed(nn.Module):
        def __init__(self):
            super().__init__()
            self.w_in = nn.Parameter(torch.randn(10, 6))  # used as x @ w_in.T (Falcon)
            self.w_out = nn.Parameter(torch.randn(10, 4))  # stored [in, out] (HF Conv1D)
            self.b_out = nn.Parameter(torch.zeros(4))

        def forward(self, x):
            h = torch.relu(x @ self.w_in.t())
            return torch.addmm(self.b_out, h.reshape(-1, 10), self.w_out)

    analysis = surgeon.analyze(Transposed().eval(), torch.randn(3, 6))
    assert members(analysis) == {("w_in", 0, "unit(10)"), ("w_out", 0, "unit(10)")}


def test_broadcast_scale_parameter_joins_the_channel_it_multiplies():
    class Scaled(TwoLayer):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(torch.ones(10))

        def forward(self, x):
            return self.fc2(self.fc1(x) * self.scale)

    assert ("scale", 0, "unit(10)") in members(surgeon.analyze(Scaled().eval(), torch.randn(3, 6)))


def test_layer_and_rms_norms_mark_their_axis_as_not_equivalent_to_masking():
    for norm in (nn.LayerNorm(10), nn.RMSNorm(10)):
        model = nn.Sequential(nn.Linear(6, 10), norm, nn.Linear(10, 4)).eval()
        (group,) = surgeon.analyze(model, torch.randn(3, 6)).prunable
        assert not group.mask_equivalent
        assert ("1.weight", 0, "unit(10)") in {
            (m.param, m.dim, str(m.layout)) for m in group.members
        }
        assert "statistics" in group.notes[0]


def test_a_sum_without_a_weight_is_flagged_as_unprovable_by_masking():
    """After a nonlinearity with f(0) != 0, zeroed units still add f(0) to a
    weight-free sum, so a masked reference proves nothing there."""

    class Pool(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(6, 10)

        def forward(self, x):
            return torch.nn.functional.softplus(self.fc(x)).sum(-1)

    (group,) = surgeon.analyze(Pool().eval(), torch.randn(3, 6)).prunable
    assert group.size == 10 and not group.mask_equivalent
    assert "summed over without a weight" in group.notes[0]


def _attention(gqa_path: str):
    class Attention(nn.Module):
        def __init__(self):
            super().__init__()
            self.q = nn.Linear(16, 8 * 4)
            self.k = nn.Linear(16, 2 * 4)
            self.v = nn.Linear(16, 2 * 4)
            self.o = nn.Linear(8 * 4, 16)

        def forward(self, x):
            b, s, _ = x.shape
            q = self.q(x).view(b, s, -1, 4).transpose(1, 2)
            k = self.k(x).view(b, s, -1, 4).transpose(1, 2)
            v = self.v(x).view(b, s, -1, 4).transpose(1, 2)
            if gqa_path == "enable_gqa":
                out = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
            else:
                k = k[:, :, None].expand(b, 2, 4, s, 4).reshape(b, 8, s, 4)
                v = v[:, :, None].expand(b, 2, 4, s, 4).reshape(b, 8, s, 4)
                out = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1) @ v
            return self.o(out.transpose(1, 2).reshape(b, s, -1))

    return Attention().eval()


def test_gqa_through_enable_gqa_and_through_repeat_kv_give_the_same_group():
    x = torch.randn(2, 5, 16)
    results = []
    for path in ("enable_gqa", "repeat_kv"):
        (attention,) = surgeon.analyze(_attention(path), x).prunable
        assert (attention.kv_heads, attention.q_per_kv, attention.head_dim) == (2, 4, 4)
        results.append({(m.param, m.dim, str(m.layout)) for m in attention.members})
    assert results[0] == results[1]
    assert ("q.weight", 0, "kv(2) x q(4) x 4") in results[0]
    assert ("k.bias", 0, "kv(2) x 4") in results[0]


def test_einsum_letters_couple_axes():
    class Bilinear(nn.Module):
        def __init__(self):
            super().__init__()
            self.w1 = nn.Parameter(torch.randn(6, 10))
            self.w2 = nn.Parameter(torch.randn(10, 4))

        def forward(self, x):
            return torch.einsum("bh,ho->bo", torch.einsum("bi,ih->bh", x, self.w1), self.w2)

    assert members(surgeon.analyze(Bilinear().eval(), torch.randn(3, 6))) == {
        ("w1", 1, "unit(10)"),
        ("w2", 0, "unit(10)"),
    }


def test_stack_and_unbind_keep_per_slice_coupling():
    class Stacked(TwoLayer):
        def forward(self, x):
            h = torch.stack([self.fc1(x), self.fc1(x)], dim=0)
            a, b = h.unbind(0)
            return self.fc2(a + b)

    assert len(surgeon.analyze(Stacked().eval(), torch.randn(3, 6)).prunable) == 1


@torch.library.custom_op("surgeon_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x.clone()


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Mystery(nn.Module):
    def forward(self, x):
        return mystery(x)


def test_an_op_without_a_rule_freezes_its_axes_and_says_where():
    class WithMystery(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.odd, self.fc2 = nn.Linear(6, 10), Mystery(), nn.Linear(10, 4)

        def forward(self, x):
            return self.fc2(self.odd(self.fc1(x)))

    analysis = surgeon.analyze(WithMystery().eval(), torch.randn(3, 6))
    assert list(analysis.unknown_ops) == ["surgeon_test.mystery.default"]
    frozen = {g.id: g.frozen for g in analysis.frozen if g.kind == "mlp"}
    assert len(frozen) == 2  # fc1's outputs and fc2's inputs, no longer known to be one
    for reason in frozen.values():
        assert "surgeon_test.mystery.default" in reason
        assert "module 'odd'" in reason and "no coupling rule" in reason
    assert not analysis.prunable


def test_the_rule_table_is_keyed_by_exact_overloads():
    ops = registered_ops()
    assert "aten.linear.default" in ops
    assert "aten.scaled_dot_product_attention.default" in ops
    assert "transformers.grouped_mm_fallback.default" in ops
    assert all(op.count(".") >= 2 for op in ops)
