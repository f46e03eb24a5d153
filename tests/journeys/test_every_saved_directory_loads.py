"""Every directory ``surgeon prune`` writes either loads with plain
``from_pretrained`` and generates, or is refused by it with a message naming
``surgeon.load``, which loads it and generates. Small random models saved in
bfloat16 beside the fixtures' tokenizer, cut with the command line as a user
would: the defaults, then one flag at a time."""

from __future__ import annotations

import shutil

import pytest
import torch
import transformers

from surgeon.checkpoint.shards import open_checkpoint
from surgeon.cli import main
from tests.journeys.user import fixture, generates, load_as_user

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
SMALL = dict(vocab_size=8192, hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
MODELS = {
    "llama": lambda: transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**SMALL, intermediate_size=128, num_hidden_layers=3, head_dim=16)
    ),
    "mixtral": lambda: transformers.MixtralForCausalLM(
        transformers.MixtralConfig(
            **SMALL, intermediate_size=64, num_hidden_layers=2, num_local_experts=4
        )
    ),
}
# (model, flags after the defaults, loads with plain from_pretrained)
CUTS = {
    "defaults (ragged MLP widths)": ("llama", [], False),
    "uniform": ("llama", ["--allocation", "uniform"], True),
    "uniform, a layer removed": ("llama", ["--allocation", "uniform", "--layers", "1"], True),
    "ragged, a layer removed": (
        "llama",
        ["--ratio", "0.55", "--allocation", "global", "--layers", "1"],
        False,
    ),
    "query heads per layer": ("llama", ["--kinds", "attention", "--heads", "q"], None),
    "MoE defaults (expert channels)": ("mixtral", [], None),
    "MoE, whole experts, uniform": (
        "mixtral",
        ["--kinds", "experts", "--allocation", "uniform"],
        True,
    ),
}


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory) -> dict:
    tokenizer = fixture("tiny-llama")
    dirs = {}
    for name, build in MODELS.items():
        torch.manual_seed(0)
        directory = tmp_path_factory.mktemp(name)
        build().to(torch.bfloat16).save_pretrained(directory)
        for file in TOKENIZER_FILES:
            shutil.copy(tokenizer / file, directory / file)
        dirs[name] = directory
    return dirs


@pytest.mark.parametrize("cut", sorted(CUTS))
def test_a_saved_cut_loads_plainly_or_is_refused_naming_surgeon_load(cut, model_dirs, tmp_path):
    name, flags, plain = CUTS[cut]
    out = tmp_path / "out"
    calib = ["--calib", str(fixture("text", "calib.txt")), "--samples", "4", "--length", "32"]
    ratio = [] if "--ratio" in flags else ["--ratio", "0.3"]
    command = ["prune", str(model_dirs[name]), *ratio, *calib, *flags, "-o", str(out)]
    assert main(command) == 0
    model, loaded_plainly = load_as_user(out)
    if plain is not None:
        assert loaded_plainly == plain
    assert {e.torch_dtype for e in open_checkpoint(out).values()} == {torch.bfloat16}
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    prompt = tokenizer("The dictionary", return_tensors="pt").input_ids
    assert tokenizer.decode(generates(model, prompt)[0])  # text comes out
    assert main(["verify", str(model_dirs[name]), str(out)]) == 0
