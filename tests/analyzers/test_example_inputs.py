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


def test_a_forward_taking_spatial_shapes_gets_patch_sequences():
    # Siglip2's NaFlex: flattened patches, which are real, and each image's grid
    vision = hf.Siglip2VisionConfig(
        hidden_size=16,
        intermediate_size=24,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_patches=16,
        patch_size=2,
    )
    config = hf.Siglip2Config(vision_config=vision.to_dict(), num_labels=3)
    model = hf.Siglip2ForImageClassification(config).eval()
    _, kwargs = example_inputs(model)
    assert tuple(kwargs["pixel_values"].shape) == (BATCH, 16, 3 * 2 * 2)
    assert kwargs["spatial_shapes"].tolist() == [[4, 4]] * BATCH
    assert bool(kwargs["pixel_attention_mask"].all())
    model(**kwargs)  # the forward accepts them


def test_audio_read_beside_the_tokens_gets_its_frames_per_token():
    # Voxtral Realtime adds each token's audio_length_per_tok frames to its embedding
    config = hf.VoxtralRealtimeConfig(
        audio_config={
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 2,
            "head_dim": 8,
            "num_mel_bins": 8,
        },
        text_config={
            "vocab_size": 64,
            "hidden_size": 16,
            "intermediate_size": 24,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": 8,
        },
    )
    model = hf.VoxtralRealtimeForConditionalGeneration(config).eval()
    _, kwargs = example_inputs(model)
    frames = config.audio_length_per_tok * SEQUENCE
    assert tuple(kwargs["input_features"].shape) == (BATCH, 8, frames)
    model(**kwargs)
