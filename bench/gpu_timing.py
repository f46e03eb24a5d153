"""Timing on the GPU: CUDA-event medians, prefill, and graph-replayed decode steps.

Used by ``bench/gpu_speed.py``; on the CPU (``--smoke``) the same code runs
without CUDA graphs, timed with ``perf_counter``.
"""

from __future__ import annotations

import statistics
import time

import torch


def timed(fn, warmup: int, repeat: int, device: str) -> float:
    """Median milliseconds of ``fn`` (CUDA events on GPU, perf_counter on CPU)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            begin = time.perf_counter()
            fn()
            times.append((time.perf_counter() - begin) * 1e3)
    return statistics.median(times)


def prefill_ms(model, tokens: int, device: str, repeat: int) -> float:
    ids = torch.randint(0, model.config.vocab_size, (1, tokens), device=device)
    with torch.inference_mode():
        return timed(lambda: model(ids, use_cache=False, logits_to_keep=1), 3, repeat, device)


class GraphedDecoder:
    """Greedy decode steps with a static KV cache, one step captured in a CUDA graph.

    The captured step reads ``ids`` and ``position``, writes the next token
    into ``ids`` and advances ``position``, so replays run back to back
    without the host touching anything.
    """

    def __init__(self, model, batch: int, prompt: int, new_tokens: int, device: str):
        from transformers import StaticCache

        self.model, self.prompt, self.device = model, prompt, device
        self.cache = StaticCache(config=model.config, max_cache_len=prompt + new_tokens + 1)
        prompt_ids = torch.randint(0, model.config.vocab_size, (batch, prompt), device=device)
        with torch.inference_mode():
            out = model(
                prompt_ids,
                past_key_values=self.cache,
                cache_position=torch.arange(prompt, device=device),
                logits_to_keep=1,
            )
            self.ids = out.logits[:, -1:].argmax(-1)
            self.position = torch.tensor([prompt], device=device)
        self.graph = None
        if device == "cuda":
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._step()
            torch.cuda.current_stream().wait_stream(stream)
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self._step()

    def _step(self) -> None:
        with torch.inference_mode():
            logits = self.model(
                self.ids,
                past_key_values=self.cache,
                cache_position=self.position,
                position_ids=self.position.view(1, 1).expand(self.ids.shape[0], 1),
            ).logits
            self.logits = logits[:, -1]
            self.ids.copy_(logits[:, -1:].argmax(-1))
            self.position.add_(1)

    def rewind(self) -> None:
        """Back to the end of the prompt (newer transformers count cache length per layer)."""
        with torch.inference_mode():  # the cache's tensors were made under it
            self.position.fill_(self.prompt)
            for layer in getattr(self.cache, "layers", ()):
                if hasattr(layer, "cumulative_length"):
                    layer.cumulative_length.fill_(self.prompt)

    def graph_error(self) -> float:
        """Relative difference of one replayed step's logits from an eager step."""
        if self.graph is None:
            return 0.0
        with torch.inference_mode():
            ids = self.ids.clone()
        self.rewind()
        self.graph.replay()
        with torch.inference_mode():
            replayed = self.logits.float().clone()
            self.ids.copy_(ids)
        self.rewind()
        self._step()
        eager = self.logits.float()
        return ((replayed - eager).norm() / eager.norm()).item()

    def run(self, steps: int) -> None:
        self.rewind()
        for _ in range(steps):
            self.graph.replay() if self.graph is not None else self._step()


def decode(model, batch: int, device: str, repeat: int) -> tuple[float, float]:
    """Tokens per second over 128 new tokens, and the graph's error against eager."""
    prompt, new_tokens = 128, 128
    decoder = GraphedDecoder(model, batch, prompt, new_tokens, device)
    error = decoder.graph_error()
    ms = timed(lambda: decoder.run(new_tokens), 1, repeat, device)
    return batch * new_tokens / (ms / 1e3), error
