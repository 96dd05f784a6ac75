"""The last step of every paper-A loader: a compact batch becomes the model's float input on the device.

Datasets keep samples compact until they reach the device: ImageNet images as
uint8 (3, H, W) (4x fewer bytes than float32), ES-ImageNet event frames as bits
packed along their last axis (32x fewer), ES-UCF101 event frames as uint8 0/1.
The conversion to float (and the ImageNet normalisation) runs after the
transfer (on a GPU, at next to no cost) instead of in every DataLoader worker,
and no float32 batch goes through shared memory or over the bus. A dataset says how its samples are
stored in its `input_spec` attribute (`float` when it has none).

The training loop calls, for every batch it reads (x: tensor, or a list when
JPEGs are decoded on the GPU; y: labels):

    x, y, bad = prepare_batch(x, y, input_spec_of(loader.dataset), device)

which moves the batch (non-blocking) and converts it. `bad` names images that
could not be decoded on the device; they are dropped from x and y, and x, y are
None when none is left.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms.v2 import functional as TF

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """How a dataset stores its samples.

    float: values as they are (float clips, uint8 0/1 event frames), cast to float32;
    image: uint8 0..255, scaled to [0, 1] as ToTensor does, then ImageNet mean/std if `normalize`;
    packed_bits: 0/1 frames packed by np.packbits along the last axis, of length `width` unpacked.
    """

    kind: Literal["float", "image", "packed_bits"] = "float"
    normalize: bool = False
    width: int = 0


FLOAT_INPUT = InputSpec()


def input_spec_of(dataset: Any) -> InputSpec:
    return getattr(dataset, "input_spec", FLOAT_INPUT)


def pack_bits(frames: torch.Tensor) -> torch.Tensor:
    """0/1 uint8 frames -> bits packed along the last axis (np.packbits order), on the CPU."""
    return torch.from_numpy(np.packbits(frames.numpy(), axis=-1))


def unpack_bits(packed: torch.Tensor, width: int) -> torch.Tensor:
    """The inverse of pack_bits, on any device: uint8 (..., ceil(width / 8)) -> uint8 0/1 (..., width)."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=packed.device)
    return ((packed.unsqueeze(-1) >> shifts) & 1).flatten(-2)[..., :width]


def to_model_input(x: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Float32 model input from a batch stored as `spec` says (already on its device)."""
    if spec.kind != "float" and x.dtype != torch.uint8:
        raise TypeError(f"a '{spec.kind}' batch must be uint8, got {x.dtype}")
    if spec.kind == "packed_bits":
        return unpack_bits(x, spec.width).float()
    if spec.kind == "image":
        x = x.float().div_(255)  # the float32 division ToTensor does: bit-identical results
        return TF.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD), inplace=True) if spec.normalize else x
    return x.float()


@dataclass(frozen=True)
class EncodedJpeg:
    """A JPEG file left encoded by the worker, to be decoded on the device.

    `finish` turns the decoded uint8 (3, H, W) image into the sample (the crop and
    resize, with parameters the worker drew)."""

    data: torch.Tensor  # the file's bytes, uint8 1-D
    path: str
    finish: Callable[[torch.Tensor], torch.Tensor]


def decode_jpegs(items: Sequence[EncodedJpeg], device: torch.device | str) -> list[torch.Tensor | str]:
    """Each file decoded to uint8 RGB on `device`, or the reason it could not be."""
    data = [item.data for item in items]
    try:
        return list(decode_jpeg(data, mode=ImageReadMode.RGB, device=device)) if data else []
    except RuntimeError:  # one damaged file fails the batched call: decode one by one to find it
        decoded: list[torch.Tensor | str] = []
        for d in data:
            try:
                decoded.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=device))
            except RuntimeError as err:
                decoded.append(f"RuntimeError: {err}")
        return decoded


def _decode_on_device(items: list, y: torch.Tensor, device: torch.device | str
                      ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """A batch of encoded JPEGs (and ready tensors, for other formats) as a uint8 batch on `device`."""
    decoded = iter(decode_jpegs([item for item in items if isinstance(item, EncodedJpeg)], device))
    images, keep, bad = [], [], []
    for i, item in enumerate(items):
        if isinstance(item, EncodedJpeg):
            image = next(decoded)
            if isinstance(image, str):
                bad.append(f"{item.path}: {image}")
                continue
            images.append(item.finish(image))
        else:
            images.append(item.to(device, non_blocking=True))
        keep.append(i)
    if not images:
        return None, None, bad
    return torch.stack(images), y[keep].to(device, non_blocking=True), bad


def prepare_batch(x: torch.Tensor | list, y: torch.Tensor, spec: InputSpec, device: torch.device | str
                  ) -> tuple[torch.Tensor | None, torch.Tensor | None, list[str]]:
    """(model input, labels, undecodable paths) on `device` from a batch as the loader gives it."""
    if isinstance(x, list):
        x, y, bad = _decode_on_device(x, y, device)
        if x is None:
            return None, None, bad
    else:
        x, y, bad = x.to(device, non_blocking=True), y.to(device, non_blocking=True), []
    return to_model_input(x, spec), y, bad
