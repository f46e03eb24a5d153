"""``heal``: recover a pruned model by distilling the original into it.

The loop users expect from a training library, with accelerate doing the
device placement, data parallelism (DDP/FSDP under ``accelerate launch``),
gradient accumulation and bf16 autocast: AdamW with warm-up and decay,
gradient clipping, periodic held-out perplexity, checkpoints that resume to
the same weights, early stopping, and a progress bar with loss, tokens/s and
ETA. The teacher runs without gradients, on the student's device or its own.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch
from torch import nn

from surgeon.errors import InputError
from surgeon.heal.checkpoints import latest, read_state, write
from surgeon.heal.data import EVAL_WINDOW, HealData, prepare
from surgeon.heal.lora import merged, with_adapters
from surgeon.heal.loss import mixed_loss
from surgeon.heal.options import HealOptions
from surgeon.heal.result import HealResult, Progress
from surgeon.heal.schedule import DataOrder, learning_rate

__all__ = ["heal"]

LOG_EVERY = 10  # optimizer steps between loss read-outs (each one waits for the GPU)
ON_DEVICE = 1 << 30  # training ids up to this many bytes live on the GPU


def heal(
    student: nn.Module,
    teacher: nn.Module | None,
    data: Any,
    tokens: int | None = None,
    *,
    tokenizer: Any = None,
    eval_data: Any = None,
    options: HealOptions | None = None,
    accelerator: Any = None,
    **changes: Any,
) -> HealResult:
    """Train ``student`` (in place) to match ``teacher``'s next-token
    distribution on ``tokens`` tokens of ``data``; return it with the history.

    ``data`` and ``eval_data`` are text files (read with ``tokenizer``; ``.xz``
    too), tensors of token ids or iterables of batches. Without ``eval_data``
    a slice of ``data`` is held out for the periodic perplexity. Other keyword
    arguments are :class:`HealOptions` fields. Bad data, a vocabulary that
    differs from the teacher's or too little data raise
    :class:`~surgeon.errors.InputError` before any training or writing.
    The student ends on the accelerator's device, the teacher on
    ``teacher_device`` (default: the same), both moved in place.
    """
    opts = HealOptions.build(options, **({"tokens": tokens} if tokens else {}), **changes)
    needs_teacher = opts.ce_weight < 1 or opts.hidden_weight > 0
    if needs_teacher and teacher is None:
        raise InputError("heal: distillation needs a teacher (or ce_weight=1: no teacher)")
    vocab = _vocab(student, "student")
    if needs_teacher and _vocab(teacher, "teacher") != vocab:
        raise InputError(
            f"heal: the teacher's vocabulary ({_vocab(teacher, 'teacher')}) differs from the "
            f"student's ({vocab}): distillation compares their logits token by token"
        )
    if tokenizer is not None and len(tokenizer) > vocab:
        raise InputError(
            f"heal: the tokenizer has {len(tokenizer)} tokens, the model only {vocab}: "
            "give the tokenizer saved with the model"
        )
    data_set = prepare(
        data, tokenizer, opts.seq_len, vocab, eval_data, opts.eval_windows, opts.tokens
    )
    accelerator = accelerator or _accelerator(opts)
    return _Run(student, teacher if needs_teacher else None, data_set, opts, accelerator).train()


class _Run:
    """One healing run: set-up in ``__init__``, the loop in ``train``."""

    def __init__(self, student, teacher, data: HealData, options: HealOptions, accelerator):
        self.options, self.data, self.accelerator = options, data, accelerator
        world = accelerator.num_processes
        if options.batch_size % world:
            raise InputError(
                f"heal: batch_size={options.batch_size} does not split over {world} processes"
            )
        self.per_process = options.batch_size // world
        self.micro = min(options.micro_batch or self.per_process, self.per_process)
        if self.per_process % self.micro:
            raise InputError(
                f"heal: micro_batch={self.micro} does not divide the {self.per_process} "
                "sequences each process takes per step"
            )
        accelerator.gradient_accumulation_steps = self.per_process // self.micro
        self.steps = math.ceil(options.tokens / (options.batch_size * options.seq_len))
        self.order = DataOrder(len(data.train), options.batch_size, options.seed)
        if options.gradient_checkpointing:
            _checkpointing(student, on=True)
        device = accelerator.device
        if device.type == "cuda" and data.train.numel() * 8 <= ON_DEVICE:  # no copy per step
            self.data = dataclasses.replace(data, train=data.train.to(device))
        trained = (
            with_adapters(student, options.lora_rank, options.lora_alpha)
            if options.lora
            else student
        )
        trained.train()
        parameters = [p for p in trained.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            [
                {"params": [p for p in parameters if p.dim() >= 2]},
                {"params": [p for p in parameters if p.dim() < 2], "weight_decay": 0.0},
            ],
            lr=options.peak_lr,
            betas=(0.9, 0.95),
            weight_decay=options.weight_decay,
            fused=device.type == "cuda",
        )
        self.model, self.optimizer = accelerator.prepare(trained, optimizer)
        self.teacher = teacher
        self.teacher_device = torch.device(options.teacher_device or device)
        self.teacher_was_training = teacher is not None and teacher.training
        if teacher is not None:
            teacher.to(self.teacher_device).eval()
        self.hidden = options.hidden_weight > 0

    def train(self) -> HealResult:
        opts, acc = self.options, self.accelerator
        step, state = 0, {"history": [], "evaluations": [], "best": None, "stale": 0}
        if opts.resume and (found := latest(opts.checkpoint_dir)):
            state = read_state(found, opts.run_shape())
            acc.load_state(str(found))
            step = state["step"]
        eval_every = self._every(opts.eval_every, 10)
        save_every = self._every(opts.checkpoint_every, None) or eval_every
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats(acc.device)
        if step == 0:
            self._evaluate(0, state)
        progress = Progress(opts, self.steps, step, acc.is_main_process)
        started, first, stopped = time.perf_counter(), step, False
        running: dict[str, torch.Tensor] = {}
        while step < self.steps and not stopped:
            self._step(step, running)
            step += 1
            if step % LOG_EVERY == 0 or step == self.steps:
                count = running.pop("micro_steps")
                means = {k: acc.reduce(v / count, reduction="mean") for k, v in running.items()}
                entry = {k: float(v) for k, v in means.items()}  # over every process
                entry |= {"step": step, "tokens": self._tokens(step), "lr": self._lr(step - 1)}
                state["history"].append(entry)
                progress.show(step, entry)
                running.clear()
            if (step % eval_every == 0 or step == self.steps) and self.data.held_out is not None:
                stopped = self._evaluate(step, state)
                progress.show(step, {"ppl": state["evaluations"][-1]["perplexity"]})
            if opts.checkpoint_dir and (step % save_every == 0 or step == self.steps or stopped):
                shape = opts.run_shape()
                write(acc, opts.checkpoint_dir, step, {**state, "step": step, "shape": shape})
        progress.close()
        if self.teacher is not None:
            self.teacher.train(self.teacher_was_training)
        seconds = time.perf_counter() - started
        model = self._plain_model()
        evaluations = state["evaluations"]
        return HealResult(
            model=model,
            options=opts,
            history=state["history"],
            evaluations=evaluations,
            tokens=self._tokens(step),
            steps=step,
            stopped_early=stopped,
            seconds=seconds,
            tokens_per_second=self._tokens(step - first) / seconds if seconds else 0.0,
            peak_memory=torch.cuda.max_memory_allocated(acc.device)
            if torch.cuda.is_available()
            else None,
            held_out=self.data.held_out_source,
            resumed_from=first,
        )

    def _step(self, step: int, running: dict[str, torch.Tensor]) -> None:
        opts, acc = self.options, self.accelerator
        lr = self._lr(step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rows = self.order.step(step)
        rank = acc.process_index
        mine = rows[rank * self.per_process : (rank + 1) * self.per_process]
        for part in mine.split(self.micro):
            ids = self.data.train[part.to(self.data.train.device)].to(acc.device)
            with acc.accumulate(self.model):
                target = self._teacher(ids)
                out = self.model(input_ids=ids, use_cache=False, output_hidden_states=self.hidden)
                loss, parts = mixed_loss(ids, out, target, opts)
                acc.backward(loss)
                if acc.sync_gradients and opts.grad_clip:
                    acc.clip_grad_norm_(self.model.parameters(), opts.grad_clip)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            parts["loss"], parts["micro_steps"] = loss.detach(), 1
            for name, value in parts.items():
                running[name] = running.get(name, 0) + value

    def _teacher(self, ids: torch.Tensor):
        if self.teacher is None:
            return None
        with torch.no_grad(), self.accelerator.autocast():
            out = self.teacher(
                input_ids=ids.to(self.teacher_device),
                use_cache=False,
                output_hidden_states=self.hidden,
            )
        if self.teacher_device != self.accelerator.device:
            out.logits = out.logits.to(self.accelerator.device)
            if self.hidden:
                out.hidden_states = tuple(h.to(self.accelerator.device) for h in out.hidden_states)
        return out

    def _evaluate(self, step: int, state: dict) -> bool:
        """Held-out perplexity after ``step`` steps; True when patience ran out."""
        from surgeon.evaluate import perplexity

        if self.data.held_out is None:
            return False
        value = perplexity(self.model, self.data.held_out, window=EVAL_WINDOW, batch=self.micro)
        state["evaluations"].append(
            {"step": step, "tokens": self._tokens(step), "perplexity": value}
        )
        self.model.train()
        best = state["best"]
        if best is None or value < best * (1 - 1e-3):
            state["best"], state["stale"] = value, 0
            return False
        state["stale"] += 1
        return bool(self.options.patience) and state["stale"] >= self.options.patience

    def _plain_model(self) -> nn.Module:
        """The trained student as a plain module: unwrapped, adapters merged,
        gradient checkpointing off, its provenance marked healed."""
        from surgeon.checkpoint.provenance import Provenance, remember

        acc = self.accelerator
        acc.wait_for_everyone()
        model = merged(acc.unwrap_model(self.model, keep_fp32_wrapper=False))
        if self.options.gradient_checkpointing:
            _checkpointing(model, on=False)
        model.requires_grad_(True).eval()
        provenance = Provenance.of(model)
        if provenance is not None:
            note = f"healed by distillation ({self._tokens(self.steps):,} tokens)"
            done = f"{provenance.compensation}; {note}" if provenance.compensation else note
            remember(model, dataclasses.replace(provenance, compensation=done))
        return model

    def _lr(self, step: int) -> float:
        return learning_rate(self.options, step, self.steps)

    def _tokens(self, steps: int) -> int:
        return steps * self.options.batch_size * self.options.seq_len

    def _every(self, tokens: int, parts: int | None) -> int | None:
        """Steps between events given in tokens (``parts`` per run when 0)."""
        if tokens:
            return max(1, round(tokens / (self.options.batch_size * self.options.seq_len)))
        return max(1, math.ceil(self.steps / parts)) if parts else None


def _checkpointing(model: nn.Module, on: bool) -> None:
    """Activation checkpointing through transformers (``activation_checkpointing_*``
    since 5.2x, ``gradient_checkpointing_*`` before)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.activation_checkpointing_disable()
    elif hasattr(model, "gradient_checkpointing_enable"):
        if on:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_disable()
    elif on:
        raise InputError(
            f"heal: {type(model).__name__} has no activation checkpointing (a transformers "
            "model has); drop gradient_checkpointing=True"
        )


def _vocab(model: nn.Module, role: str) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and hasattr(head, "weight"):
        return head.weight.shape[0]
    size = getattr(getattr(model, "config", None), "vocab_size", None)
    if size is None:
        raise InputError(f"heal: cannot tell the {role}'s vocabulary size (no output embeddings)")
    return size


def _accelerator(options: HealOptions):
    """An Accelerator for this run: the GPUs when there are any, else the CPU
    (several processes under ``accelerate launch`` talk through gloo there).
    accelerate keeps one process-wide state; one process may heal several
    times with other precisions, so a single process renews it here (a
    distributed launch keeps its process group)."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    cuda = torch.cuda.is_available()
    precision = options.precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if not PartialState(cpu=not cuda).use_distributed:
        AcceleratorState._reset_state()
    return Accelerator(cpu=not cuda, mixed_precision="bf16" if precision == "bf16" else "no")
