"""The authors' ES-UCF101 model (paper A): a per-step CNN encoder and an LSTM decoder, as ANN or SNN.

Reference: lyh983012/SNN-ANN-Pretrain @ 380f6310, Exp3-DVSUCF101/video-classification-SNN
(configs_ANN.py, configs_LIF.py, configs_LIAF.py, models/LIAFCNN.py, models/LIAF.py,
models/CRNN.py, train_*.py). Per step t of a clip:

  4 conv cells   conv (bias) -> BN -> activation, channels w, 2w, 4w, 8w (w = 8: 8/16/32/64),
                 kernels 5, 3, 3, 3, stride 2, padding 0, no pooling ('cfg_cnn')
  fc4            linear 8w*h*w' -> 1024 -> activation, no BN ('cfg_fc': [1024, 512], useBatchNorm=False)
  fc5            linear 1024 -> 512, no activation (LIAFCell only_linear=True)
then an LSTM (512 -> decoder_hidden, 1 layer, batch first; 'hidden_dim': 256, 'num_layers': 1)
over the steps and a linear classifier on its output at the last step (CRNN.py DecoderRNN:
fc(RNN_out[:, -1, :])). No dropout anywhere (LIAFCNN builds its cells with dropOut=0).

ANN (configs_ANN.py: 'actFun': torch.relu, 'time_windows': 1): ReLU activations; train_ANN.py
runs the encoder on one frame at a time, so BN statistics are per frame.
SNN (configs_LIF.py / configs_LIAF.py): the activations are neurons (LIF: spikes; LIAF: ReLU of
the membrane); the decoder stays an ANN LSTM. BN (BatchNorm3d in their LIAFConvCell) normalises
over (B, T, H, W) per channel. Membrane (LIAF.py BaseNeuron.mem_update):
u_t = decay * u_{t-1} * (1 - s_{t-1}) + I_t, s_t = [u_t > 0.5], reset spike detached, decay =
sigmoid(p) learnable per cell with p = 0.5 at the start; LIF's surrogate is a Gaussian,
0.3989422804014327 / sigma * exp(-0.5 / sigma**2 * (u - thresh + bias)**2), sigma = 1, bias = -0.2.

Their encoder flattens the last conv output, (B, C, T, H, W), with `x.view(B, T, -1)`
(LIAFCNN.forward). For the ANN (T = 1 per call) that is each frame's own (C, H, W) map; for the
SNN (T = 15) row t holds a block of about C/T channels at every step, so the fc and LSTM "steps"
are channel groups, not time steps. `flatten: reference` reproduces this; `flatten: per_step`
gives step t its own map (what the ANN sees).

Parameter names follow theirs under `encoder.` / `decoder.` (encoder.network.cnn0.kernel.weight,
encoder.network.cnn0.NormLayer.running_mean, decoder.LSTM.weight_ih_l0, decoder.fc.weight, ...),
so the transfer can be checked key for key against their train_*_from_*.py filters. Their decay
parameter `network.cnnK.decay` is here the neuron's `w` (decay = 1 - sigmoid(w) = sigmoid(-w)).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from spikingjelly.activation_based import functional, layer, surrogate
from torch import nn

from pipeline.models.resnet_twins import Twin
from pipeline.models.spiking import (DecayResetLIAF, DecayResetLIF, ParametricLIAF, check_neuron,
                                     parametric_lif)

CONV_KERNELS = (5, 3, 3, 3)  # cfg_cnn kernel sizes; stride 2, padding 0, usePool False
CONV_STRIDE = 2
FC_SIZES = (1024, 512)  # cfg_fc; the last one is the LSTM's input ('embed_dim': 512)
LSTM_LAYERS = 1  # 'num_layers': 1
REFERENCE_DECAY = 1.0 / (1.0 + math.exp(-0.5))  # LIAF.py: sigmoid of Parameter(torch.ones(1) * 0.5)
GAUSS_SIGMA = 1.0  # LIAF.py LIFactFun.sigma
GAUSS_SHIFT = 0.2  # -LIFactFun.bias: the surrogate peaks at u = thresh + 0.2
FLATTENS = ("reference", "per_step")
STEM_PREFIX = "encoder.network.cnn0."  # their `'module.network.cnn0' not in k` transfer filter
DECODER_PREFIX = "decoder."  # LSTM + classifier (their rnn_decoder)


class _ShiftedGaussianFn(torch.autograd.Function):
    """Heaviside forward; backward SpikingJelly's Erf gradient taken at x - shift."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, alpha: float, shift: float) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha, ctx.shift = alpha, shift
        return surrogate.heaviside(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return surrogate.erf_backward(grad, x - ctx.shift, ctx.alpha)[0], None, None


class ShiftedGaussian(surrogate.SurrogateFunctionBase):
    """Spike [x >= 0] (x = u - thresh) with the reference's Gaussian surrogate gradient
    N(x; shift, sigma) = exp(-(x - shift)^2 / (2 sigma^2)) / (sigma sqrt(2 pi)).

    SpikingJelly's Erf(alpha) has the gradient alpha / sqrt(pi) * exp(-alpha^2 x^2), the same
    Gaussian for alpha = 1 / (sigma sqrt 2) but centred at the threshold; the reference's
    bias = -0.2 moves the centre to u = thresh + 0.2.
    """

    def __init__(self, sigma: float = GAUSS_SIGMA, shift: float = GAUSS_SHIFT, spiking: bool = True) -> None:
        super().__init__(spiking=spiking, alpha=1.0 / (sigma * math.sqrt(2.0)), shift=shift)

    @staticmethod
    def spiking_function(x: torch.Tensor, alpha: float, shift: float) -> torch.Tensor:
        return _ShiftedGaussianFn.apply(x, alpha, shift)

    @staticmethod
    def primitive_function(x: torch.Tensor, alpha: float, shift: float) -> torch.Tensor:
        return torch.erfc(-alpha * (x - shift)) / 2.0


def crnn_neuron(kind: str, decay: float, threshold: float, learnable_decay: bool) -> nn.Module:
    """The project's neurons with the reference's Exp3 outputs: LIF spikes with the shifted Gaussian
    surrogate; LIAF ReLU(u) (configs_LIAF.py 'actFun': torch.relu, not ES-ImageNet's LeakyReLU(0.2))."""
    check_neuron(kind, decay, learnable_decay)
    if kind == "liaf":
        cls = ParametricLIAF if learnable_decay else DecayResetLIAF
        return cls(decay, threshold, negative_slope=0.0)  # the spike only resets: its surrogate never acts
    node = parametric_lif(decay, threshold) if learnable_decay else DecayResetLIF(decay, threshold)
    node.surrogate_function = ShiftedGaussian()
    return node


def conv_out(size: int, kernel: int) -> int:
    """LIAFConvCell's size formula with padding 0: floor((size - kernel) / stride + 1)."""
    return (size - kernel) // CONV_STRIDE + 1


@dataclass
class CRNNConfig:
    """Everything needed to rebuild a CRNN; stored in every checkpoint as `model_config`."""

    kind: str  # "ann" (ReLU, RGB frames) or "snn" (LIF/LIAF encoder, events)
    arch: str = "crnn"
    in_channels: int = 3
    num_classes: int = 101
    input_size: list[int] = field(default_factory=lambda: [256, 342])  # 'input_size': [256, 342]
    steps: int = 15  # first `steps` steps of every clip (0 = all); 'begin_frame': 1, 'end_frame': 16
    width: int = 8  # channels of the first conv cell (then 2w, 4w, 8w)
    decoder_hidden: int = 256  # 'hidden_dim': 256
    flatten: str = "reference"
    neuron: str = "lif"
    decay: float = REFERENCE_DECAY
    threshold: float = 0.5  # LIAF.py self.thresh = 0.5
    learnable_decay: bool = True  # BaseNeuron.decay_trainable = True

    def __post_init__(self) -> None:
        if self.kind not in ("ann", "snn"):
            raise ValueError(f"unknown crnn kind '{self.kind}' (ann, snn)")
        if self.arch != "crnn":
            raise ValueError(f"CRNNConfig is arch 'crnn', got '{self.arch}'")
        if self.flatten not in FLATTENS:
            raise ValueError(f"unknown crnn flatten '{self.flatten}' ({', '.join(FLATTENS)})")
        check_neuron(self.neuron, self.decay, self.learnable_decay)
        self.input_size = [int(v) for v in self.input_size]
        if len(self.input_size) != 2:
            raise ValueError(f"crnn input_size must be [height, width], got {self.input_size}")
        if min(self.feature_map()) < 1:
            raise ValueError(f"crnn input_size {self.input_size} is too small: four stride-2 convs with "
                             f"kernels {'/'.join(map(str, CONV_KERNELS))} need at least 33 x 33 pixels")

    def feature_map(self) -> tuple[int, int]:
        """(H, W) after the four conv cells: 256 x 342 -> 14 x 20."""
        h, w = self.input_size
        for k in CONV_KERNELS:
            h, w = conv_out(h, k), conv_out(w, k)
        return h, w

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ConvCell(nn.Module):
    """LIAFConvCell without pooling or dropout: conv (bias) -> BN -> activation."""

    def __init__(self, cin: int, cout: int, kernel: int, act: nn.Module) -> None:
        super().__init__()
        self.kernel = layer.Conv2d(cin, cout, kernel, CONV_STRIDE, 0, bias=True)
        self.NormLayer = layer.BatchNorm2d(cout)  # default init, as their nn.BatchNorm3d
        self.neuron = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.NormLayer(self.kernel(x)))


class FCCell(nn.Module):
    """LIAFCell without BN or dropout: linear (bias) -> activation, or linear only (`act` None)."""

    def __init__(self, fin: int, fout: int, act: nn.Module | None) -> None:
        super().__init__()
        self.kernel = layer.Linear(fin, fout)
        self.neuron = act if act is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.neuron(self.kernel(x))


class Encoder(nn.Module):
    """LIAFCNN: cells cnn0..cnn3, fc4, fc5 in `network` (their names). Single-step (ANN, one frame
    (B, C, H, W) -> (B, 512)) or multi-step (SNN, (T, B, C, H, W) -> (T, B, 512))."""

    def __init__(self, cfg: CRNNConfig) -> None:
        super().__init__()
        self.cfg = cfg

        def act() -> nn.Module:
            if cfg.kind == "ann":
                return nn.ReLU()
            return crnn_neuron(cfg.neuron, cfg.decay, cfg.threshold, cfg.learnable_decay)

        self.network = nn.Sequential()
        cin = cfg.in_channels
        for i, k in enumerate(CONV_KERNELS):
            cout = cfg.width * 2 ** i
            self.network.add_module(f"cnn{i}", ConvCell(cin, cout, k, act()))
            cin = cout
        h, w = cfg.feature_map()
        sizes = [cin * h * w, *FC_SIZES]
        n = len(CONV_KERNELS)
        for j in range(len(FC_SIZES)):
            last = j == len(FC_SIZES) - 1
            self.network.add_module(f"fc{n + j}", FCCell(sizes[j], sizes[j + 1], None if last else act()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = len(CONV_KERNELS)
        convs, fcs = list(self.network)[:n], list(self.network)[n:]
        for cell in convs:
            x = cell(x)
        if self.cfg.kind == "ann":
            x = x.flatten(1)  # one frame: its (C, H, W) map, as their view(B, 1, -1)
        elif self.cfg.flatten == "per_step":
            x = x.flatten(2)
        else:  # LIAFCNN.forward: x.view(B, T, -1) of the (B, C, T, H, W) map
            steps, batch = x.shape[:2]
            x = x.permute(1, 2, 0, 3, 4).reshape(batch, steps, -1).transpose(0, 1)
        for cell in fcs:
            x = cell(x)
        return x


class Decoder(nn.Module):
    """CRNN.py DecoderRNN: LSTM over the steps (batch first), classifier on the last step's output."""

    def __init__(self, in_features: int, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.LSTM = nn.LSTM(input_size=in_features, hidden_size=hidden, num_layers=LSTM_LAYERS,
                            batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, F) -> logits (B, classes)."""
        self.LSTM.flatten_parameters()
        out, _ = self.LSTM(x)  # zero initial state
        return self.fc(out[:, -1, :])


class CRNN(Twin):
    """CNN encoder + LSTM decoder as ANN or SNN, by `cfg.kind`. Input (B, C, T, H, W): RGB frames
    in [0, 1] (ANN, C = 3) or events (SNN, C = 2), H x W = `cfg.input_size`; the first `cfg.steps`
    steps are used. Output: logits (B, classes)."""

    def __init__(self, cfg: CRNNConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(FC_SIZES[-1], cfg.decoder_hidden, cfg.num_classes)
        functional.set_step_mode(self.encoder, "m" if cfg.kind == "snn" else "s")

    def _clip(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"CRNN input must be (B, C, T, H, W), got shape {tuple(x.shape)}")
        if list(x.shape[3:]) != self.cfg.input_size or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"CRNN built for {self.cfg.in_channels} x {self.cfg.input_size[0]} x "
                             f"{self.cfg.input_size[1]} inputs (model.input_size), got clips "
                             f"(B, C, T, H, W) = {tuple(x.shape)}")
        if self.cfg.steps:
            if x.shape[2] < self.cfg.steps:
                raise ValueError(f"CRNN uses the first {self.cfg.steps} steps (model.steps), the clips have "
                                 f"{x.shape[2]}")
            x = x[:, :, :self.cfg.steps]
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._clip(x)
        if self.is_snn:
            features = self.encoder(x.permute(2, 0, 1, 3, 4).contiguous()).transpose(0, 1)  # (B, T, 512)
        else:  # train_ANN.py: the encoder sees one frame at a time (per-frame BN statistics)
            features = torch.stack([self.encoder(x[:, :, t]) for t in range(x.shape[2])], dim=1)
        return self.decoder(features)
