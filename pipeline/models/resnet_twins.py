"""ResNet twins of paper A: a pretraining ANN and an SNN with identical parameter names.

Both twins are built from the same SpikingJelly layers (subclasses of nn.Conv2d /
nn.BatchNorm2d, so parameter names equal torchvision's); only the activation
and the step mode differ. The SNN's neuron is LIF or LIAF with a fixed or
learnable decay (pipeline.models.spiking.make_neuron); a learnable decay adds
one scalar parameter per neuron module, the only names torchvision lacks. In
the SNN, tensors are (T, B, C, H, W): convs run per time step with shared
weights and BatchNorm2d on the flattened (T*B) batch is the paper's
threshold-dependent BN (statistics over B, T, H, W per channel).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import torch
from spikingjelly.activation_based import functional, layer
from torch import nn

from pipeline.models.spiking import SharpenedReLU, check_neuron, make_neuron

ARCH_BLOCKS: dict[str, list[int]] = {
    "tiny": [1, 1, 1, 1],
    "resnet18": [2, 2, 2, 2],
    "resnet34": [3, 4, 6, 3],
}


@dataclass
class TwinConfig:
    """Everything needed to rebuild a twin; stored in every checkpoint. Every field is given (from
    params.yaml, pipeline/pretrain/models.py); `blocks` is derived from `arch` when empty."""

    kind: str  # "ann" (sharpened ReLU) or "snn" (spiking neurons, see `neuron`)
    arch: str
    width: int
    stem: str  # "imagenet": 7x7/2 + maxpool; "small": 3x3/1, no maxpool
    in_channels: int
    num_classes: int
    time_steps: int | None  # SNN only: steps for static (direct) input; event input brings its own T
    decay: float | None  # SNN only
    threshold: float  # the SNN's firing threshold; the ANN's sharpened-ReLU ceiling; both: the BN init
    neuron: str | None  # SNN only: "lif" (spikes) or "liaf" (analog output LeakyReLU(u))
    learnable_decay: bool | None  # SNN only: decay = 1 - sigmoid(w), one scalar w per neuron module
    sharpen_epochs: int
    decoder_hidden: int | None  # video twin: width of the recurrent decoder; None: no decoder (images, events)
    blocks: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in ("ann", "snn"):
            raise ValueError(f"unknown twin kind '{self.kind}' (ann, snn)")
        if self.kind == "snn":  # an ANN ignores the neuron keys (a checkpoint of an older ANN may hold them)
            neuron_keys = (self.time_steps, self.decay, self.neuron, self.learnable_decay)
            if any(value is None for value in neuron_keys):
                raise ValueError("an SNN twin needs time_steps, decay, neuron and learnable_decay")
            check_neuron(self.neuron, self.decay, self.learnable_decay)
        if self.decoder_hidden is not None and self.decoder_hidden < 1:
            raise ValueError(f"decoder_hidden must be a positive width or None, got {self.decoder_hidden}")
        if self.stem not in ("imagenet", "small"):
            raise ValueError(f"unknown stem '{self.stem}' (imagenet, small)")
        if not self.blocks:
            if self.arch not in ARCH_BLOCKS:
                raise ValueError(f"unknown arch '{self.arch}' ({', '.join(ARCH_BLOCKS)})")
            self.blocks = list(ARCH_BLOCKS[self.arch])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _bn(channels: int, threshold: float) -> layer.BatchNorm2d:
    bn = layer.BatchNorm2d(channels)
    # threshold-dependent BN: scale starts at the firing threshold, shift at 0
    nn.init.constant_(bn.weight, threshold)
    nn.init.zeros_(bn.bias)
    return bn


class BasicBlock(nn.Module):
    """torchvision's BasicBlock layout (same names); activation after the residual add."""

    def __init__(self, inplanes: int, planes: int, stride: int, act: Callable[[], nn.Module], threshold: float) -> None:
        super().__init__()
        self.conv1 = layer.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = _bn(planes, threshold)
        self.act1 = act()
        self.conv2 = layer.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = _bn(planes, threshold)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(layer.Conv2d(inplanes, planes, 1, stride, bias=False), _bn(planes, threshold))
        self.act2 = act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + identity)


class Twin(nn.Module):
    """What the training code asks of a twin (ResNet or video): its kind and the sharpening schedule."""

    cfg: TwinConfig

    @property
    def is_snn(self) -> bool:
        return self.cfg.kind == "snn"

    def set_epoch(self, epoch: int) -> None:
        """Advance the sharpened-ReLU schedule (no-op for the SNN)."""
        for m in self.modules():
            if isinstance(m, SharpenedReLU):
                m.set_epoch(epoch)


class ResNetTwin(Twin):
    """ResNet-18/34 (or the small `tiny` config) as ANN or SNN, by `cfg.kind`.

    ANN input: (B, C, H, W). SNN input: (B, C, H, W) static images (direct input,
    repeated over `time_steps`) or (B, C, T, H, W) event frames (the ES-ImageNet /
    ES-UCF101 loaders' layout). Output: logits (B, classes), averaged over time.
    """

    def __init__(self, cfg: TwinConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        if cfg.kind == "snn":
            act: Callable[[], nn.Module] = lambda: make_neuron(cfg.neuron, cfg.decay, cfg.threshold,
                                                               cfg.learnable_decay)
        else:
            act = lambda: SharpenedReLU(cfg.threshold, cfg.sharpen_epochs)
        if cfg.stem == "imagenet":
            self.conv1 = layer.Conv2d(cfg.in_channels, w, 7, 2, 3, bias=False)
            self.maxpool: nn.Module = layer.MaxPool2d(3, 2, 1)
        else:
            self.conv1 = layer.Conv2d(cfg.in_channels, w, 3, 1, 1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = _bn(w, cfg.threshold)
        self.act = act()
        inplanes = w
        for i, (n, mult) in enumerate(zip(cfg.blocks, (1, 2, 4, 8)), start=1):
            planes = w * mult
            blocks = []
            for j in range(n):
                stride = 2 if (i > 1 and j == 0) else 1
                blocks.append(BasicBlock(inplanes, planes, stride, act, cfg.threshold))
                inplanes = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.avgpool = layer.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(inplanes, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        functional.set_step_mode(self, "m" if cfg.kind == "snn" else "s")

    def _stem_snn(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            # Direct input: the same image at every step. Conv and BN are per-step, so
            # computing them once and repeating is exact for the output (BN statistics
            # of T identical copies equal those of one), and T times cheaper.
            y = nn.BatchNorm2d.forward(self.bn1, nn.Conv2d.forward(self.conv1, x))
            y = y.unsqueeze(0).expand(self.cfg.time_steps, *y.shape)
        elif x.dim() == 5:
            y = self.bn1(self.conv1(x.permute(2, 0, 1, 3, 4).contiguous()))  # (B,C,T,H,W) -> (T,B,C,H,W)
        else:
            raise ValueError(f"SNN input must be (B,C,H,W) or (B,C,T,H,W), got shape {tuple(x.shape)}")
        return self.act(y)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features before the classifier: (T, B, F) per step for the SNN, (B, F) for the ANN."""
        if self.is_snn:
            x = self._stem_snn(x)
        else:
            if x.dim() != 4:
                raise ValueError(f"ANN input must be (B,C,H,W), got shape {tuple(x.shape)}")
            x = self.act(self.bn1(self.conv1(x)))
        x = self.maxpool(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(2 if self.is_snn else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(x)
        if self.is_snn:
            x = x.mean(0)  # mean over time of the pooled features (linear, so = mean of logits)
        return self.fc(x)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
