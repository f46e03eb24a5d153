"""Checkpoints: save and load cut models (``persist``), read model directories
(``directory``), and cut checkpoint files tensor by tensor without building the
model (``stream``, with its shard reader/writer and converted-layout rules)."""
