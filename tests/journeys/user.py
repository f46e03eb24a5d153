"""What the journeys share: the fixtures beside the checkout, and loading a
saved directory the way a user would (plain transformers first)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import transformers

import surgeon

# ../shared beside the checkout (never an absolute path): CI places it there
SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = SHARED / "fixtures"


def fixture(*parts: str) -> Path:
    """A path under ../shared/fixtures; fails (does not skip) when it is missing."""
    path = FIXTURES.joinpath(*parts)
    if not path.exists():
        pytest.fail(f"missing fixture {path}: ../shared/fixtures must sit beside the checkout")
    return path


def load_as_user(directory: Path) -> tuple[torch.nn.Module, bool]:
    """Plain ``from_pretrained`` first; where it refuses, its message must name
    ``surgeon.load``, which must then load the directory. Returns the model and
    whether plain transformers loaded it (which the manifest must have said)."""
    manifest = json.loads((directory / "surgeon.json").read_text())
    said = manifest["plain_from_pretrained"]
    try:
        model = transformers.AutoModelForCausalLM.from_pretrained(directory)
    except Exception as refusal:  # noqa: BLE001 - any refusal must name surgeon.load
        assert "surgeon.load" in str(refusal), f"refused without naming surgeon.load: {refusal}"
        assert not said, "the manifest says plain from_pretrained loads it, but it refused"
        model_class = getattr(transformers, manifest["model_class"])  # the class, by name
        with pytest.raises(Exception, match=r"surgeon\.load"):
            model_class.from_pretrained(directory)
        return surgeon.load(directory), False
    assert said, "plain from_pretrained loaded a directory whose manifest says it cannot"
    reloaded = surgeon.load(directory)
    ids = torch.tensor([[1, 5, 9, 2, 7]])
    with torch.no_grad():
        assert torch.equal(model.eval()(ids).logits, reloaded(ids).logits)
    return model.eval(), True


def generates(model: torch.nn.Module, prompt_ids: torch.Tensor, new: int = 8) -> torch.Tensor:
    """Greedy continuation with the KV cache; returns the new tokens."""
    out = model.generate(prompt_ids, max_new_tokens=new, do_sample=False, pad_token_id=0)
    assert out.shape == (prompt_ids.shape[0], prompt_ids.shape[1] + new)
    return out[:, prompt_ids.shape[1] :]
