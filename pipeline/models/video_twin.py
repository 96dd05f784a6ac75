"""Video twins of paper A (ES-UCF101): a per-step conv encoder and a recurrent decoder.

The encoder is a ResNetTwin applied to every time step (its classifier is
dropped: the decoder's output is what gets classified); the decoder is one
recurrent layer whose activation is the ANN's sharpened ReLU or the SNN's
neuron (LIF by default). ANN and SNN have identical parameter names and shapes
except the encoder's first conv (3 RGB channels vs 2 event polarities), so the
ANN trained on RGB frames hands everything else to the SNN that reads events, as
in the paper. (A learnable decay adds the SNN-only `w` of each neuron, as in
ResNetTwin.)
"""
from __future__ import annotations

import torch
from spikingjelly.activation_based import base, functional
from torch import nn

from pipeline.models.resnet_twins import ResNetTwin, Twin, TwinConfig
from pipeline.models.spiking import SharpenedReLU, make_neuron


class RecurrentDecoder(base.MemoryModule):
    """One recurrent layer over the encoder's per-step features, (T, B, F) -> (T, B, hidden).

    ANN: h_t = act(BN(W_in x_t) + W_rec h_{t-1}), h_0 = 0, act = SharpenedReLU.
    SNN: u_t = decay * u_{t-1} * (1 - s_{t-1}) + BN(W_in x_t) + W_rec s_{t-1},
         s_t = [u_t > thr]  (DecayResetLIF's dynamics; s_0 = u_0 = 0).
    The SNN's neuron is the encoder's (cfg.neuron, cfg.learnable_decay): the LIF
    above by default; with LIAF, s_t is its analog output. BN normalises W_in x
    over time and batch together (the encoder's threshold-dependent BN, weight
    initialised to the threshold). The SNN keeps u (in its neuron) and s_{t-1}
    between calls until functional.reset_net.
    """

    def __init__(self, in_features: int, hidden: int, cfg: TwinConfig) -> None:
        super().__init__()
        self.w_in = nn.Linear(in_features, hidden, bias=False)  # BN supplies the shift
        self.bn = nn.BatchNorm1d(hidden)
        nn.init.constant_(self.bn.weight, cfg.threshold)
        nn.init.zeros_(self.bn.bias)
        self.w_rec = nn.Linear(hidden, hidden, bias=False)
        self.spiking = cfg.kind == "snn"
        if self.spiking:
            self.act: nn.Module = make_neuron(cfg.neuron, cfg.decay, cfg.threshold, cfg.learnable_decay)
            functional.set_step_mode(self.act, "s")  # one step at a time: the input depends on s_{t-1}
        else:
            self.act = SharpenedReLU(cfg.threshold, cfg.sharpen_epochs)
        self.register_memory("last_output", 0.0)  # s_{t-1} of the SNN

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps, batch, _ = x.shape
        drive = self.bn(self.w_in(x.flatten(0, 1))).view(steps, batch, -1)
        prev = drive.new_zeros(drive.shape[1:])
        if self.spiking and isinstance(self.last_output, torch.Tensor):
            prev = self.last_output
        outputs = []
        for t in range(steps):
            prev = self.act(drive[t] + self.w_rec(prev))
            outputs.append(prev)
        if self.spiking:
            self.last_output = prev
        return torch.stack(outputs)


class VideoTwin(Twin):
    """Encoder (ResNetTwin per step) + RecurrentDecoder + linear classifier, as ANN or SNN by `cfg.kind`.

    ANN input: RGB clips (B, 3, T, H, W) in [0, 1]; every frame goes through the
    encoder (T folded into the batch). SNN input: events (B, 2, T, H, W); the
    encoder runs in multi-step mode. Both: features x_t (T, B, F), decoder
    outputs h_t (or spikes s_t), logits = fc(mean over t of h_t) (B, classes).
    """

    def __init__(self, cfg: TwinConfig) -> None:
        if cfg.decoder_hidden is None:
            raise ValueError("a VideoTwin needs cfg.decoder_hidden (the recurrent decoder's width)")
        super().__init__()
        self.cfg = cfg
        decoder_hidden = cfg.decoder_hidden
        self.encoder = ResNetTwin(cfg)
        features = self.encoder.fc.in_features
        self.encoder.fc = nn.Identity()  # the decoder's output is classified, not the encoder's
        self.decoder = RecurrentDecoder(features, decoder_hidden, cfg)
        self.fc = nn.Linear(decoder_hidden, cfg.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise ValueError(f"VideoTwin input must be (B, C, T, H, W), got shape {tuple(x.shape)}")
        if self.is_snn:
            features = self.encoder.forward_features(x)
        else:
            batch, channels, steps, height, width = x.shape
            frames = x.permute(2, 0, 1, 3, 4).reshape(steps * batch, channels, height, width)
            features = self.encoder.forward_features(frames).view(steps, batch, -1)
        return self.fc(self.decoder(features).mean(0))
