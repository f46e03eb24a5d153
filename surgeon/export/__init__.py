"""Export: serve cut models. ``gguf`` writes llama.cpp's format (ragged cuts
through its ``deci`` graph); ``decilm`` writes NVIDIA's heterogeneous-Llama
checkpoint (``block_configs``) that vLLM, SGLang and TensorRT-LLM read;
``per_layer_config`` builds a transformers config with per-layer overrides
(``surgeon.save(..., format="per_layer_config")``); ``describe`` reads the
per-layer structure they all share."""

from surgeon.export.deci_config import block_configs, decilm, decilm_config
from surgeon.export.decoder import DecoderShape, ExportError, LayerShape, describe
from surgeon.export.per_layer import per_layer_config
from surgeon.export.to_gguf import GgufExport, gguf

__all__ = [
    "DecoderShape",
    "ExportError",
    "GgufExport",
    "LayerShape",
    "block_configs",
    "decilm",
    "decilm_config",
    "describe",
    "gguf",
    "per_layer_config",
]
