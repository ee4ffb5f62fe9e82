"""Inference-time rewrites of an `ActionDetector`: same outputs (to rounding), less time.

    model = optimize_for_inference(model, precision="bf16")   # a new module; `model` is left untouched
    scores = model([slow, fast], boxes)                       # (K, num_classes) float32 probabilities

What it does, and why each step is kept (`scripts/bench_model.py` measures them):
  - BN folding: every eval-mode BatchNorm that directly follows a conv becomes
    that conv's scale and bias, removing one full read + write of each activation.
  - channels_last_3d: oneDNN's (and cuDNN's) fast 3D convolutions work on
    channels-last memory; contiguous (B, C, T, H, W) tensors pay reorders around every conv.
  - low precision ("bf16", "fp16"): the backbone's weights are cast once (no
    per-call autocast casts); the RoI head stays float32 because boxes in bf16
    lose whole pixels (bf16 has 8 significant bits). Only worth it on CUDA and
    on CPUs with AVX512-BF16 / AMX (`sfdet.devices.fast_low_precision_available`).
  - ReLUs and residual adds inside the convs (fp32 on CPU): oneDNN applies them as post-ops
    while the conv writes its output (`_convolution_pointwise`), bit-identical to conv, add,
    ReLU one after the other but without re-reading every activation twice (~10 % of the
    forward on 2 cores, AVX2 as AVX512: the elementwise passes are memory-bound).
  - `torch.inference_mode` around the forward: no autograd bookkeeping.
  - `torch.compile` (optional, off by default): compiles slowly and, measured
    on CPU, barely helps once the above are in place.

The result refuses `train()`: its BNs are gone, so training it would silently
train a different network. Train the original model instead.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from sfdet.devices import CONCRETE_PRECISIONS as PRECISIONS
from sfdet.errors import ConfigError
from sfdet.models.detector import ActionDetector
from sfdet.models.nonlocal_block import NonLocal
from sfdet.models.resnet3d import BasicBlock, BottleneckBlock, ProjectionShortcut, Stem
from sfdet.models.slowfast import Lateral

_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# (conv, bn) attribute pairs whose forward is exactly `bn(conv(x))`, per module class.
_CONV_BN_PAIRS: dict[type, list[tuple[str, str]]] = {
    Stem: [("conv", "bn")],
    ProjectionShortcut: [("conv", "bn")],
    Lateral: [("conv", "bn")],
    BottleneckBlock: [("conv_a", "bn_a"), ("conv_b", "bn_b"), ("conv_c", "bn_c")],
    BasicBlock: [("conv_a", "bn_a"), ("conv_b", "bn_b")],
    NonLocal: [("out", "bn")],
}


def fold_conv_bn(conv: nn.Conv3d, bn: nn.BatchNorm3d) -> nn.Conv3d:
    """A conv (with bias) computing `bn(conv(x))` of the eval-mode BN, folded in float64."""
    scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)  # (C_out,)
    bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
    folded = nn.Conv3d(conv.in_channels, conv.out_channels, conv.kernel_size, stride=conv.stride,
                       padding=conv.padding, dilation=conv.dilation, groups=conv.groups, bias=True,
                       padding_mode=conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        folded.weight.copy_(conv.weight.double() * scale.view(-1, 1, 1, 1, 1))
        folded.bias.copy_((bias - bn.running_mean.double()) * scale + bn.bias.double())
    return folded


def fold_batch_norms(model: nn.Module) -> int:
    """Fold, in place, every BN that follows a conv in sfdet's blocks into that conv; returns how many.

    Only valid for inference (BN in eval mode, running statistics). Folded BNs become `nn.Identity`.
    """
    folded = 0
    for module in model.modules():
        for conv_name, bn_name in _CONV_BN_PAIRS.get(type(module), []):
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if isinstance(conv, nn.Conv3d) and isinstance(bn, nn.BatchNorm3d) and bn.track_running_stats:
                setattr(module, conv_name, fold_conv_bn(conv, bn))
                setattr(module, bn_name, nn.Identity())
                folded += 1
    return folded


class Conv3dAs2d(nn.Module):
    """A (1, kh, kw) or (kt, 1, 1) Conv3d run as a Conv2d on a view of its channels-last input.

    oneDNN's 2D convolutions are faster than its 3D ones for these shapes
    (notably the (3,1,1) convs of res4/res5), and on channels_last_3d memory both
    views are free: (B, C, T, H, W) is (B*T, C, H, W) channels-last for a
    spatial kernel, and (B, C, T, H*W) channels-last for a temporal one.
    Input and output are channels_last_3d (B, C, T, H, W).
    """

    def __init__(self, conv: nn.Conv3d):
        super().__init__()
        kt, kh, kw = conv.kernel_size
        self.spatial = kt == 1 and conv.stride[0] == 1 and conv.padding[0] == 0
        if self.spatial:
            kernel, stride, padding, dilation = (kh, kw), conv.stride[1:], conv.padding[1:], conv.dilation[1:]
        else:  # (kt, 1, 1), no spatial stride or padding (see `conv3d_runs_as_2d`)
            kernel, stride, padding, dilation = (kt, 1), (conv.stride[0], 1), (conv.padding[0], 0), (conv.dilation[0], 1)
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, kernel, stride=stride, padding=padding,
                              dilation=dilation, groups=conv.groups, bias=conv.bias is not None,
                              device="meta")  # parameters come from `conv` just below
        weight = conv.weight.detach().reshape(conv.out_channels, -1, *kernel)
        self.conv.weight = nn.Parameter(weight.contiguous(memory_format=torch.channels_last), requires_grad=False)
        if conv.bias is not None:
            self.conv.bias = nn.Parameter(conv.bias.detach().clone(), requires_grad=False)

    def forward(self, x: torch.Tensor, relu: bool = False, residual: torch.Tensor | None = None) -> torch.Tensor:
        """conv(x) [+ residual] [then ReLU]; `residual` has the output's shape (B, O, T', H', W')."""
        b, _, t, h, w = x.shape
        x = x.contiguous(memory_format=torch.channels_last_3d)  # a no-op in the optimised model
        as_2d = self._as_2d_spatial if self.spatial else self._as_2d_temporal
        other = None if residual is None else as_2d(residual.contiguous(memory_format=torch.channels_last_3d))
        y = self._conv2d(as_2d(x), relu, other)
        if self.spatial:
            y = y.unflatten(0, (b, t)).transpose(1, 2)  # (B*T, O, H', W') -> (B, O, T, H', W')
        else:
            y = y.unflatten(3, (h, w))  # (B, O, T', H*W) -> (B, O, T', H, W)
        return _with_channels_last_3d_strides(y)

    @staticmethod
    def _as_2d_spatial(x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2).flatten(0, 1)  # (B, C, T, H, W) -> (B*T, C, H, W), channels-last, a view

    @staticmethod
    def _as_2d_temporal(x: torch.Tensor) -> torch.Tensor:
        return x.flatten(3)  # (B, C, T, H, W) -> (B, C, T, H*W), channels-last, a view

    def _conv2d(self, x: torch.Tensor, relu: bool, other: torch.Tensor | None) -> torch.Tensor:
        conv = self.conv
        if (relu or other is not None) and _fusable(x, conv.weight):
            args = (conv.weight, conv.bias, list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
            if other is None:
                return torch.ops.mkldnn._convolution_pointwise(x, *args, "relu", [], "")
            if other.shape == (x.shape[0], conv.out_channels, *_conv_output_hw(conv, x)) and \
                    other.is_contiguous(memory_format=torch.channels_last):
                return torch.ops.mkldnn._convolution_pointwise.binary(
                    x, other, *args, "add", None, "relu" if relu else None, [], "")
        y = conv(x)
        if other is not None:
            y = y + other
        return torch.relu_(y) if relu else y


_POINTWISE = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")


def _fusable(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether oneDNN's fused conv + post-ops runs this: CPU, float32, channels-last, no autograd."""
    return (_POINTWISE and x.device.type == "cpu" and x.dtype == torch.float32 and weight.dtype == torch.float32
            and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)))


def _conv_output_hw(conv: nn.Conv2d, x: torch.Tensor) -> tuple[int, int]:
    return tuple((size + 2 * p - d * (k - 1) - 1) // s + 1 for size, k, s, p, d in
                 zip(x.shape[2:], conv.kernel_size, conv.stride, conv.padding, conv.dilation))


def _conv_then(conv: nn.Module, x: torch.Tensor, relu: bool, residual: torch.Tensor | None = None) -> torch.Tensor:
    """`relu(conv(x) [+ residual])` (no ReLU if not `relu`), fused into the conv where `Conv3dAs2d` can."""
    if isinstance(conv, Conv3dAs2d):
        return conv(x, relu=relu, residual=residual)
    y = conv(x)
    if residual is not None:
        y = y + residual
    return torch.relu_(y) if relu else y


class FusedBottleneck(nn.Module):
    """A BN-folded `BottleneckBlock`: relu(conv_a) -> relu(conv_b) -> relu(conv_c + shortcut), post-ops fused."""

    def __init__(self, block: BottleneckBlock):
        super().__init__()
        self.shortcut, self.conv_a, self.conv_b, self.conv_c = block.shortcut, block.conv_a, block.conv_b, block.conv_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        y = _conv_then(self.conv_a, x, relu=True)
        y = _conv_then(self.conv_b, y, relu=True)
        return _conv_then(self.conv_c, y, relu=True, residual=identity)


class FusedBasicBlock(nn.Module):
    """A BN-folded `BasicBlock`: relu(conv_a) -> relu(conv_b + shortcut), post-ops fused."""

    def __init__(self, block: BasicBlock):
        super().__init__()
        self.shortcut, self.conv_a, self.conv_b = block.shortcut, block.conv_a, block.conv_b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.shortcut is None else self.shortcut(x)
        return _conv_then(self.conv_b, _conv_then(self.conv_a, x, relu=True), relu=True, residual=identity)


class FusedStem(nn.Module):
    """A BN-folded `Stem`: pool(relu(conv)), the ReLU fused."""

    def __init__(self, stem: Stem):
        super().__init__()
        self.conv, self.pool = stem.conv, stem.pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(_conv_then(self.conv, x, relu=True))


_FUSED = {BottleneckBlock: (FusedBottleneck, ("bn_a", "bn_b", "bn_c")), BasicBlock: (FusedBasicBlock, ("bn_a", "bn_b")),
          Stem: (FusedStem, ("bn",))}


def fuse_post_ops(model: nn.Module) -> int:
    """Replace, in place, each BN-folded Stem / BottleneckBlock / BasicBlock by its fused form; returns how many.

    Their forwards are the originals' with the BNs gone (folded) and the ReLU / residual add handed to
    `Conv3dAs2d` (run `convs_as_2d` first; a conv still 3D keeps the separate ReLU and add).
    """
    replaced = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            fused = _FUSED.get(type(child))
            if fused is None or not all(isinstance(getattr(child, bn, None), nn.Identity) for bn in fused[1]):
                continue
            if isinstance(child, Stem) and not isinstance(child.relu, nn.ReLU):
                continue
            setattr(module, name, fused[0](child))
            replaced += 1
    return replaced


def _with_channels_last_3d_strides(x: torch.Tensor) -> torch.Tensor:
    """The same memory with the textbook channels_last_3d strides.

    A view can carry any stride on a size-1 dim (e.g. B=1); `torch.cat` then no
    longer recognises the layout and returns a contiguous tensor, which every
    following conv would have to copy back.
    """
    x = x.contiguous(memory_format=torch.channels_last_3d)  # a no-op unless a backend chose another layout
    b, c, t, h, w = x.shape
    return x.as_strided(x.shape, (t * h * w * c, 1, h * w * c, w * c, c), x.storage_offset())


def conv3d_runs_as_2d(conv: nn.Module) -> bool:
    """Whether `Conv3dAs2d` can run `conv`: a 3D kernel that is purely spatial or purely temporal."""
    if type(conv) is not nn.Conv3d or conv.padding_mode != "zeros":
        return False
    kt, kh, kw = conv.kernel_size
    if kt == 1 and conv.stride[0] == 1 and conv.padding[0] == 0:
        return True
    return (kh, kw) == (1, 1) and conv.stride[1:] == (1, 1) and conv.padding[1:] == (0, 0)


def convs_as_2d(model: nn.Module) -> int:
    """Replace, in place, every Conv3d that `Conv3dAs2d` can run; returns how many."""
    replaced = 0
    for module in list(model.modules()):
        for name, child in module.named_children():
            if conv3d_runs_as_2d(child):
                setattr(module, name, Conv3dAs2d(child))
                replaced += 1
    return replaced


class PreparedBackbone(nn.Module):
    """Runs a backbone in `dtype` and `memory_format` and hands float32 features to the head.

        inputs  [(B, 3, T_p, H, W)] per pathway, any dtype / layout
        outputs [(B, C_p, 1, H/s, W/s)] per pathway, float32, already averaged over time
    """

    def __init__(self, backbone: nn.Module, dtype: torch.dtype, memory_format: torch.memory_format):
        super().__init__()
        self.backbone = backbone
        self.dtype = dtype
        self.memory_format = memory_format

    def forward(self, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
        inputs = [x.to(dtype=self.dtype, memory_format=self.memory_format) for x in inputs]
        return [temporal_mean(f.float()) for f in self.backbone(inputs)]


def temporal_mean(features: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, 1, H, W), the RoI head's temporal pooling done ahead of it.

    On channels-last memory a mean over T as a (B, T, H*W*C) reduction is ~3x faster than
    `mean(dim=2)`; the head's own mean over the remaining single frame is then exact.
    """
    if not features.is_contiguous(memory_format=torch.channels_last_3d):
        return features.mean(dim=2, keepdim=True)
    return features.permute(0, 2, 3, 4, 1).mean(dim=1, keepdim=True).permute(0, 4, 1, 2, 3)


class InferenceDetector(ActionDetector):
    """An `ActionDetector` rewritten by `optimize_for_inference`: eval only, float32 probabilities out."""

    def __init__(self, backbone: nn.Module, head: nn.Module, cfg, precision: str):
        super().__init__(backbone, head, cfg)
        self.precision = precision
        super().train(False)

    def train(self, mode: bool = True) -> InferenceDetector:
        if mode:
            raise ConfigError("this model was optimised for inference (BatchNorms folded into the convs) and "
                              "cannot be trained; train the original model from build_model/load_checkpoint")
        return super().train(False)

    def forward(self, inputs: list[torch.Tensor], boxes: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
        # An outer autocast (e.g. a caller's bf16 region) must not pull the head's boxes into bf16.
        device_type = inputs[0].device.type
        with torch.inference_mode(), torch.autocast(device_type, enabled=False):
            return super().forward(inputs, boxes)


def optimize_for_inference(model: ActionDetector, precision: str = "fp32", channels_last: bool = True,
                           fold_bn: bool = True, conv_2d: bool = True, compile: bool = False) -> InferenceDetector:
    """A faster copy of `model` for inference on the device it sits on (the original is not modified).

    precision: "fp32" (same outputs to ~1e-5), "bf16" (CUDA, or CPUs with AVX512-BF16/AMX),
    "fp16" (CUDA only). Raises `ConfigError` for an unknown or unsupported precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got '{precision}'")
    device = next(model.parameters()).device
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError("precision fp16 needs CUDA; use bf16 or fp32 on CPU")
    backbone = copy.deepcopy(model.backbone).eval()
    head = copy.deepcopy(model.head).eval().float()
    if fold_bn:
        fold_batch_norms(backbone)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    backbone = backbone.to(dtype=_DTYPES[precision], memory_format=memory_format)
    if conv_2d and channels_last and not compile:  # the compiler picks its own layouts
        convs_as_2d(backbone)
        fuse_post_ops(backbone)
    prepared = PreparedBackbone(backbone, _DTYPES[precision], memory_format)
    if compile:
        # freezing: weights become constants, so BN-folded convs get oneDNN's prepacked weights and fused ReLU/add
        prepared = torch.compile(prepared, dynamic=False, options={"freezing": True})
    return InferenceDetector(prepared, head, model.cfg, precision)
