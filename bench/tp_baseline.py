"""Torch-Pruning 1.6.1 run as its LLM example runs it, for bench/quality.py.

Follows examples/LLMs/prune_llm.py of Torch-Pruning: ``tp.pruner.MetaPruner``
with ``num_heads`` for q/k/v (GQA: ``num_key_value_heads`` for k and v),
``prune_num_heads=True``, ``prune_head_dims=False``, ``lm_head`` ignored,
and the attention attributes fixed afterwards (``num_key_value_groups``).
Two changes so the rows compare with fx-surgeon's: the hidden size is left
alone (``o_proj`` and ``down_proj``, whose output channels are the residual
stream, are ignored layers, which drops TP's hidden group), and the MLP
ratio is set so that the *block parameters* removed match the target given
the heads TP actually removed. Taylor gets gradients of the same calibration
batches (summed, as TP's LLM-Pruner port does). Attention runs eager: under
sdpa TP's trace of these models fails (../shared/docs/field-notes.md).
"""

from __future__ import annotations

import copy
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch
import transformers as hf
from torch import nn


@dataclass
class TPResult:
    model: nn.Module | None
    block_removed: float  # fraction of block parameters removed
    error: str | None = None
    note: str = ""


def load_with_gradients(directory: Path, batches: list[torch.Tensor]) -> nn.Module:
    """The fixture with eager attention and the calibration loss's gradients
    summed into ``.grad`` (TaylorImportance reads them; deep copies keep them)."""
    model = hf.AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    for batch in batches:
        model(input_ids=batch, labels=batch, use_cache=False).loss.backward()
    return model


def _block_params(model: nn.Module) -> tuple[int, int]:
    """(attention, MLP/expert) parameters inside the decoder layers, norms excluded."""
    attention = mlp = 0
    for name, param in model.named_parameters():
        if ".layers." not in name or "norm" in name:
            continue
        if ".self_attn." in name:
            attention += param.numel()
        elif ".mlp." in name and ".gate.weight" not in name:  # a MoE router is not cut
            mlp += param.numel()
    return attention, mlp


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def tp_prune(
    base: nn.Module,
    importance: str,
    target: float,
    heads: bool,
    example: torch.Tensor,
    limit: int = 300,
) -> TPResult:
    """Prune a copy of ``base`` to remove ``target`` of its block parameters;
    a run that gives no answer within ``limit`` seconds is reported as such."""
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(limit)
    started = time.time()
    try:
        return _prune(base, importance, target, heads, example)
    except _Timeout:
        return TPResult(None, 0.0, f"no answer within {time.time() - started:.0f} s")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _prune(base, importance, target, heads, example) -> TPResult:
    import torch_pruning as tp

    attention0, mlp0 = _block_params(base)
    total = attention0 + mlp0
    head_ratio = target if heads else 0.0
    mlp_ratio = min(target * total / mlp0, 0.95)
    result = None
    for _ in range(2):  # second pass: correct the MLP ratio for the heads TP removed
        try:
            result = _run(tp, base, importance, mlp_ratio, head_ratio, heads, example)
        except _Timeout:
            raise
        except Exception as error:  # noqa: BLE001 - reported in the table
            last = traceback.extract_tb(error.__traceback__)[-1]
            where = f"{Path(last.filename).name}:{last.lineno}"
            return TPResult(None, 0.0, f"{type(error).__name__}: {error} (at {where})"[:200])
        attention, mlp = _block_params(result)
        attention_removed = attention0 - attention
        wanted = (target * total - attention_removed) / mlp0
        if abs(wanted - mlp_ratio) * mlp0 < 0.005 * total or not 0 < wanted < 1:
            break
        mlp_ratio = wanted
    attention, mlp = _block_params(result)
    removed = 1 - (attention + mlp) / total
    note = ""
    if heads and attention == attention0:
        note = f"no heads removed at head_pruning_ratio={head_ratio:g}"
    if mlp == mlp0:
        note = (note + "; " if note else "") + "MLP/experts not cut (no TP group)"
    return TPResult(result, removed, None, note)


def _run(tp, base, importance, mlp_ratio, head_ratio, heads, example) -> nn.Module:
    model = copy.deepcopy(base)
    num_heads, ignored = {}, [model.lm_head]
    config = model.config
    for name, module in model.named_modules():
        if name.endswith("self_attn"):
            if heads:
                num_heads[module.q_proj] = config.num_attention_heads
                num_heads[module.k_proj] = config.num_key_value_heads
                num_heads[module.v_proj] = config.num_key_value_heads
                ignored.append(module.o_proj)
            else:
                ignored += [module.q_proj, module.k_proj, module.v_proj, module.o_proj]
        if name.endswith("down_proj") and isinstance(module, nn.Linear):
            ignored.append(module)
    scorer = (
        tp.importance.TaylorImportance()
        if importance == "taylor"
        else tp.importance.MagnitudeImportance(p=2)
    )
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs={"input_ids": example, "use_cache": False},
        importance=scorer,
        global_pruning=False,
        pruning_ratio=mlp_ratio,
        ignored_layers=ignored,
        num_heads=num_heads,
        prune_num_heads=heads,
        prune_head_dims=False,
        head_pruning_ratio=head_ratio,
        output_transform=lambda out: out.logits,
    )
    gradients = {n: p.grad for n, p in base.named_parameters()}
    for name, param in model.named_parameters():  # TP's trace clears them
        param.grad = None if gradients[name] is None else gradients[name].clone()
    for group in pruner.step(interactive=True):
        group.prune()
    for name, module in model.named_modules():
        if name.endswith("self_attn"):  # as the example does after pruning
            q_heads = module.q_proj.out_features // module.head_dim
            kv_heads = module.k_proj.out_features // module.head_dim
            module.num_key_value_groups = q_heads // kv_heads
            config.num_attention_heads, config.num_key_value_heads = q_heads, kv_heads
    for param in model.parameters():
        param.grad = None
    return model.eval()


def tp_prune_vision(model: nn.Module, example_inputs, name: str, ratio: float) -> nn.Module:
    """Torch-Pruning's own torchvision example (examples/torchvision_models/
    torchvision_pruning.py, ``my_prune``) at channel ratio ``ratio``: group L1
    magnitude, its per-model ignored layers, heads as channel groups of
    ``nn.MultiheadAttention``, and ``hidden_dim`` fixed afterwards on a ViT.
    Prunes ``model`` in place and returns it."""
    import torch_pruning as tp

    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == 1000]
    if "ssd" in name:
        ignored.append(model.head)
    if name == "raft_large":
        ignored += [model.corr_block, model.update_block, model.mask_predictor]
    if "fasterrcnn" in name:
        rpn, roi = model.rpn.head, model.roi_heads
        ignored += [rpn.cls_logits, rpn.bbox_pred, model.backbone.fpn, roi]
    if name == "fcos_resnet50_fpn":
        head = model.head
        ignored += [
            head.classification_head.cls_logits,
            head.regression_head.bbox_reg,
            head.regression_head.bbox_ctrness,
        ]
    if name == "keypointrcnn_resnet50_fpn":
        roi = model.roi_heads
        ignored += [
            model.rpn.head.cls_logits,
            model.backbone.fpn.layer_blocks,
            model.rpn.head.bbox_pred,
            roi.box_head,
            roi.box_predictor,
            roi.keypoint_predictor,
        ]
    if name == "maskrcnn_resnet50_fpn_v2":
        roi = model.roi_heads
        ignored += [
            model.rpn.head.cls_logits,
            model.rpn.head.bbox_pred,
            roi.box_predictor,
            roi.mask_predictor,
        ]
    if name == "retinanet_resnet50_fpn_v2":
        head = model.head
        ignored += [head.classification_head.cls_logits, head.regression_head.bbox_reg]
    heads = {m: m.num_heads for m in model.modules() if isinstance(m, nn.MultiheadAttention)}
    for param in model.parameters():
        param.requires_grad_(True)
    pruner = tp.pruner.MetaPruner(
        model,
        example_inputs=example_inputs,
        importance=tp.importance.GroupMagnitudeImportance(p=1),
        pruning_ratio=ratio,
        global_pruning=False,
        ignored_layers=ignored,
        num_heads=heads,
    )
    for group in pruner.step(interactive=True):
        group.prune()
    if hasattr(model, "conv_proj") and hasattr(model, "hidden_dim"):  # torchvision ViT
        model.hidden_dim = model.conv_proj.out_channels
    return model.eval()
