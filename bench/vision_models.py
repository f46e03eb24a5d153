"""The models of the vision sweep (bench/vision_coverage.py), built as their
libraries build them, with random weights.

The torchvision list is Torch-Pruning's own (examples/torchvision_models in
VainF/Torch-Pruning 1.6.1: the 77 models its readme reports pruned and the 8
it reports failing), built with the same arguments and example inputs as its
script; then twelve timm families, the smallest member of each.

Random weights leave BatchNorm statistics at mean 0 and variance 1, which
trained networks never have: activations then shrink or blow up with depth,
and a check that masks removed channels may see nothing (GoogLeNet's output
moved by 1e-11). :func:`build` re-estimates them on random batches, as a
trained model's were on its data, so the equivalence checks can see a cut.
For the same reason, weights that random initialisation leaves at zero
(torchvision ViT's classifier) get small random values, and layer scales
initialised near zero (ConvNeXt's 1e-6) start at 1: otherwise every output
is the same whatever is removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

__all__ = ["DETECTION_PARTS", "MODELS", "VisionModel", "build"]

_CLASSIFICATION = [
    "alexnet",
    "vit_b_16",
    "vit_b_32",
    "vit_l_16",
    "vit_l_32",
    "vit_h_14",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "convnext_large",
    "densenet121",
    "densenet169",
    "densenet201",
    "densenet161",
    "efficientnet_b0",
    "efficientnet_b1",
    "efficientnet_b2",
    "efficientnet_b3",
    "efficientnet_b4",
    "efficientnet_b5",
    "efficientnet_b6",
    "efficientnet_b7",
    "efficientnet_v2_s",
    "efficientnet_v2_m",
    "efficientnet_v2_l",
    "googlenet",
    "inception_v3",
    "mnasnet0_5",
    "mnasnet0_75",
    "mnasnet1_0",
    "mnasnet1_3",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "regnet_y_400mf",
    "regnet_y_800mf",
    "regnet_y_1_6gf",
    "regnet_y_3_2gf",
    "regnet_y_8gf",
    "regnet_y_16gf",
    "regnet_y_32gf",
    "regnet_y_128gf",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "resnext50_32x4d",
    "resnext101_32x8d",
    "wide_resnet50_2",
    "wide_resnet101_2",
    "squeezenet1_0",
    "squeezenet1_1",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "vgg11_bn",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "swin_t",
    "swin_s",
    "swin_b",
    "shufflenet_v2_x0_5",
    "shufflenet_v2_x1_0",
    "shufflenet_v2_x1_5",
    "shufflenet_v2_x2_0",
]
_SEGMENTATION = [
    "fcn_resnet50",
    "fcn_resnet101",
    "deeplabv3_resnet50",
    "deeplabv3_resnet101",
    "deeplabv3_mobilenet_v3_large",
    "lraspp_mobilenet_v3_large",
]
_DETECTION = [
    "ssdlite320_mobilenet_v3_large",
    "ssd300_vgg16",
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fcos_resnet50_fpn",
    "keypointrcnn_resnet50_fpn",
    "maskrcnn_resnet50_fpn_v2",
    "retinanet_resnet50_fpn_v2",
]
_TIMM = [
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
    "levit_128s",
    "swin_tiny_patch4_window7_224",
    "convnext_atto",
    "resnet26",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "regnetx_002",
    "mixer_s16_224",
    "poolformer_s12",
    "mobilevit_xxs",
]

# The parts of a detection model whose computation exports: the backbone with
# its FPN and the heads' layers; anchors, proposals, RoI pooling and
# non-maximum suppression in between stay as they are.
DETECTION_PARTS = {
    "ssd": ["backbone", "head"],
    "fasterrcnn": ["backbone", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor"],
    "maskrcnn": [
        "backbone",
        "rpn.head",
        "roi_heads.box_head",
        "roi_heads.box_predictor",
        "roi_heads.mask_head",
        "roi_heads.mask_predictor",
    ],
    "keypointrcnn": [
        "backbone",
        "rpn.head",
        "roi_heads.box_head",
        "roi_heads.box_predictor",
        "roi_heads.keypoint_head",
        "roi_heads.keypoint_predictor",
    ],
    "fcos": ["backbone", "head"],
    "retinanet": ["backbone", "head"],
}


@dataclass(frozen=True)
class VisionModel:
    name: str
    source: str  # "torchvision" or "timm"
    task: str  # classification, segmentation, detection, optical flow
    kwargs: dict[str, Any] = field(default_factory=dict)
    size: int = 224
    parts: tuple[str, ...] = ()  # detection: the submodules that are captured
    big: bool = False  # run alone: it needs most of the memory

    @property
    def key(self) -> str:
        return self.name if self.source == "torchvision" else f"timm/{self.name}"


def _torchvision() -> list[VisionModel]:
    big = {"vit_h_14", "vit_l_16", "regnet_y_128gf", "regnet_y_32gf", "vit_l_32"}
    models = []
    for name in _CLASSIFICATION:
        kwargs = {"aux_logits": False} if name in ("googlenet", "inception_v3") else {}
        # 128x128 where the model takes any size (structure does not depend on it,
        # and the CPU sweep runs five forwards per model); 224 where it is fixed
        size = 224 if name.startswith(("vit", "swin")) else 160 if "inception" in name else 128
        models.append(
            VisionModel(name, "torchvision", "classification", kwargs, size, (), name in big)
        )
    for name in _SEGMENTATION:
        models.append(
            VisionModel(
                name,
                "torchvision",
                "segmentation",
                {"aux_loss": None, "weights_backbone": None},
                128,
            )
        )
    for name in _DETECTION:
        family = "ssd" if name.startswith("ssd") else name.split("_")[0]
        kwargs = {"weights_backbone": None}
        if "ssd" not in name:
            kwargs["trainable_backbone_layers"] = 5  # BatchNorm2d, not FrozenBatchNorm2d
            kwargs.update(min_size=320, max_size=320)  # not resized to 800
        if family in ("maskrcnn", "keypointrcnn"):
            kwargs["box_score_thresh"] = 0.0  # random scores: keep boxes for the mask heads
        models.append(
            VisionModel(
                name, "torchvision", "detection", kwargs, 320, tuple(DETECTION_PARTS[family])
            )
        )
    models.append(VisionModel("raft_large", "torchvision", "optical flow", {}, 128))
    return models


def _fixed_size(timm_name: str) -> bool:
    return timm_name.startswith(("vit", "deit", "levit", "swin", "mixer"))


MODELS: list[VisionModel] = _torchvision() + [
    VisionModel(name, "timm", "classification", {}, 224 if _fixed_size(name) else 128)
    for name in _TIMM
]


def build(spec: VisionModel) -> tuple[nn.Module, Any]:
    """The model in eval mode with BatchNorm statistics estimated on random
    batches, and its example inputs (what ``inputs=`` receives)."""
    torch.manual_seed(0)
    if spec.source == "timm":
        import timm

        model = timm.create_model(spec.name, pretrained=False, **spec.kwargs)
    else:
        import torchvision

        model = torchvision.models.get_model(spec.name, weights=None, **spec.kwargs)
    x = torch.randn(1, 3, spec.size, spec.size)
    if spec.task == "optical flow":
        inputs: Any = (x, torch.randn(1, 3, spec.size, spec.size))
    elif spec.task == "detection":
        inputs = ([x[0]],)  # a list of images, as detection models take them
    else:
        inputs = x
    _wake_silent_weights(model)
    _estimate_batch_norm(model.backbone if spec.task == "detection" else model, spec)
    return model.eval(), inputs


def _wake_silent_weights(model: nn.Module) -> None:
    with torch.no_grad():
        for param in model.parameters():
            first = param.flatten()[0]
            if param.numel() < 2 or not bool((param == first).all()):
                continue
            if param.dim() >= 2 and first == 0:
                param.normal_(0.0, 0.02)
            elif 0 < abs(float(first)) <= 1e-4:
                param.fill_(1.0)


def _estimate_batch_norm(model: nn.Module, spec: VisionModel, batches: int = 2) -> None:
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average over the batches
    model.train()
    size = spec.size
    with torch.no_grad():
        for _ in range(batches):
            x = torch.randn(2, 3, size, size)
            model(x, x) if spec.task == "optical flow" else model(x)
    for norm in norms:
        norm.momentum = 0.1
    model.eval()
