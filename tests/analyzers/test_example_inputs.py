"""Inputs derived from a Hugging Face config: the shapes the model's forward reads."""

import transformers as hf

from surgeon.analyzers.example_inputs import BATCH, SEQUENCE, example_inputs


def test_a_decoder_over_codebooks_gets_one_row_per_codebook():
    config = hf.MusicgenDecoderConfig(
        vocab_size=64,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        ffn_dim=48,
        num_codebooks=4,
    )
    model = hf.MusicgenForCausalLM(config).eval()
    _, kwargs = example_inputs(model)
    assert tuple(kwargs["input_ids"].shape) == (BATCH * 4, SEQUENCE)
    model(**kwargs)  # the forward accepts them


def test_a_model_whose_main_input_is_named_inputs_gets_token_ids():
    config = hf.PerceiverConfig(
        vocab_size=64,
        d_model=32,
        d_latents=32,
        num_latents=8,
        num_blocks=1,
        num_self_attends_per_block=1,
        num_self_attention_heads=2,
        num_cross_attention_heads=2,
        max_position_embeddings=64,
    )
    model = hf.PerceiverForMaskedLM(config).eval()
    _, kwargs = example_inputs(model)
    assert kwargs["inputs"].dtype.is_floating_point is False
    assert int(kwargs["inputs"].max()) < 64
    model(**kwargs)
