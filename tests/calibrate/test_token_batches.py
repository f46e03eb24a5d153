"""Calibration data the user's way: a tokenizer's BatchEncoding or a dict of
``input_ids``, alone or in a list (was: TypeError 'string indices must be
integers')."""

from __future__ import annotations

import pytest
import torch
import transformers as hf

import surgeon
from surgeon.calibrate.calibration import token_batches

IDS = torch.arange(40).view(5, 8)


@pytest.mark.parametrize(
    "calib",
    [
        hf.BatchEncoding({"input_ids": IDS, "attention_mask": torch.ones_like(IDS)}),
        {"input_ids": IDS},
        [hf.BatchEncoding({"input_ids": IDS[:3]}), {"input_ids": IDS[3:]}],
        IDS,
    ],
    ids=["BatchEncoding", "dict", "list of batches", "tensor"],
)
def test_tokenizer_outputs_give_their_token_ids(calib):
    batches = token_batches(calib, batch_size=3)
    assert [tuple(b.shape) for b in batches] == [(3, 8), (2, 8)]
    assert torch.equal(torch.cat(batches), IDS)


def test_padded_calibration_batches_are_refused_with_what_to_pass():
    mask = torch.ones_like(IDS)
    mask[0, :2] = 0
    with pytest.raises(surgeon.InputError, match="padding.*text file with tokenizer"):
        token_batches(hf.BatchEncoding({"input_ids": IDS, "attention_mask": mask}))
    with pytest.raises(surgeon.InputError, match="mappings with 'input_ids'"):
        token_batches([{"pixel_values": IDS}])
