"""``surgeon.prune(model, ratio, inputs=x)`` on any ``nn.Module``: the default
cut removes channels and MLP widths, verified with a check that could see a
wrong cut; Taylor back-propagates the user's loss function."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import surgeon
from surgeon.errors import InputError
from tests import vision

BUILDERS = {
    "alexnet": (vision.alexnet_like, 16),
    "resnet": (vision.resnet_like, 16),
    "convnext": (vision.convnext_like, 32),
    "vit": (vision.vit_like, 16),
    "efficientnet": (vision.efficientnet_like, 16),
}


def state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_default_magnitude_cut_removes_the_target_and_verifies(name):
    build, size = BUILDERS[name]
    model, x = build(), torch.randn(2, 3, size, size)
    before = state(model)
    result = surgeon.prune(model, 0.3, criterion="magnitude", inputs=x, progress=False)
    report = result.report
    (p0, p1) = report.block_params
    assert 0.25 <= 1 - p1 / p0 <= 0.31
    assert report.params_after < report.params_before
    check = report.verification
    assert check.ok and not check.weak and check.power > 100 * check.tolerance
    cut_kinds = {group_id.split("@")[0].split("#")[0] for group_id in result.plan.keep}
    # the defaults: no heads; residual streams only where BatchNorm makes their cut exact
    allowed = {"channels", "mlp"} | ({"hidden"} if name in ("resnet", "efficientnet") else set())
    assert cut_kinds and cut_kinds <= allowed
    with torch.no_grad():
        assert result.model(x).shape == model(x).shape
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_taylor_back_propagates_the_users_loss_on_their_batches():
    model, x = vision.resnet_like(), torch.randn(4, 3, 16, 16)
    y = torch.tensor([0, 3, 5, 7])
    result = surgeon.prune(
        model,
        0.3,
        criterion="taylor",
        inputs=x,
        calib=[(x, y), (x.flip(0), y.flip(0))],
        loss_fn=F.cross_entropy,
        compensate=None,
        progress=False,
    )
    assert set(result.report.criterion.values()) == {"taylor"}
    assert result.report.verification.ok
    assert all(p.grad is None for p in model.parameters())  # the user's .grad untouched
    # Taylor scores differ from magnitude ones: they read the gradients
    magnitude = surgeon.prune(
        model, 0.3, criterion="magnitude", inputs=x, compensate=None, progress=False
    )
    assert result.plan.keep != magnitude.plan.keep


def test_taylor_without_a_target_calls_the_loss_on_the_output_alone():
    model, x = vision.alexnet_like(), torch.randn(2, 3, 16, 16)
    seen = []

    def loss(output):
        seen.append(output.shape)
        return output.logsumexp(-1).mean()

    result = surgeon.prune(
        model, 0.3, criterion="taylor", inputs=x, loss_fn=loss, compensate=None, progress=False
    )
    assert seen == [(2, 10)] and result.report.verification.ok


def test_taylor_without_a_loss_says_to_pass_one():
    model, x = vision.alexnet_like(), torch.randn(2, 3, 16, 16)
    with pytest.raises(InputError, match="loss_fn="):
        surgeon.prune(model, 0.3, criterion="taylor", inputs=x, progress=False)


def test_a_model_that_reads_no_token_ids_needs_inputs():
    with pytest.raises(InputError, match="inputs="):
        surgeon.prune(vision.alexnet_like(), 0.3, criterion="magnitude", progress=False)
