"""ImageNet-style ImageFolder data (train/<wnid>/*, val/<wnid>/*) as uint8 tensors.

Items are (uint8 (3, size, size), label): the float conversion and the ImageNet
normalisation run on the device (pipeline/data/device_transforms.py), so the
workers skip them and send 4x fewer bytes. Classes, labels and samples are
torchvision's ImageFolder's.

Decoding: JPEG files (recognised by their bytes, not their names) with
torchvision's libjpeg-turbo decoder; any other format with PIL, as
ImageFolder's own loader does (torchvision reads neither BMP nor TIFF); both
decoders give the same pixels. Crops, resizes and flips are torchvision v2
kernels on uint8 tensors: the val recipe and the plain resize give PIL's pixels
but for rare rounding differences (at most one uint8 level per separable
resize pass); the train crop and flip draw the random numbers
v2.RandomResizedCrop and v2.RandomHorizontalFlip draw.

Reduced-size decoding: a train crop at least 2 (4, 8) times the output size on
both sides is decoded at 1/2 (1/4, 1/8) scale in the DCT domain (PIL's JPEG
draft mode), as the resize would throw those pixels away anyway. It never
applies to ImageNet's typical 500 x 375 images; on larger ones it saves CPU
time (benchmarks/bench_loaders.py measures both). Val is never reduced.

GPU decoding: with `gpu_decode` and CUDA present, workers leave JPEGs encoded
(only their crop is drawn) and prepare_batch decodes them on the GPU.

The SNN uses direct input: the model repeats each image over its T steps, so the
same loader feeds the ANN and the SNN.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from PIL import Image
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from pipeline.data.batching import Skipped
from pipeline.data.device_transforms import EncodedJpeg, InputSpec

JPEG_MAGIC = (0xFF, 0xD8, 0xFF)
# only make_params is used, which depends on scale and ratio (the defaults), not on the output size
_CROP_SAMPLER = v2.RandomResizedCrop(size=1)
DECODE_ERRORS = (OSError, RuntimeError, ValueError, SyntaxError, EOFError)


@dataclass(frozen=True)
class Crop:
    """A region of the image (pixels) and whether to mirror the result."""

    top: int
    left: int
    height: int
    width: int
    flip: bool

    def shrunk(self, shrink: int, bound_h: int, bound_w: int) -> Crop:
        """The same region on the image shrunk `shrink` times, kept inside bound_h x bound_w
        (rounded to whole pixels there: off by at most shrink / 2 pixels of the full image)."""
        top, left = min(round(self.top / shrink), bound_h - 1), min(round(self.left / shrink), bound_w - 1)
        height = max(1, min(round(self.height / shrink), bound_h - top))
        width = max(1, min(round(self.width / shrink), bound_w - left))
        return Crop(top, left, height, width, self.flip)


@dataclass(frozen=True)
class ImageTransform:
    """uint8 (3, H, W) -> uint8 (3, size, size).

    train: random-resized crop + horizontal flip; val: resize the shorter side to
    size * 256 / 224, centre crop; resize: plain resize to size x size (small
    embedded images, where crops and flips change the class)."""

    size: int
    mode: Literal["train", "val", "resize"]
    reduced_decode: bool = True

    def draw(self, height: int, width: int) -> Crop | None:
        """The random part for an image of height x width (train only): v2's RNG draws, in v2's order."""
        if self.mode != "train":
            return None
        box = _CROP_SAMPLER.make_params([torch.empty(0, height, width)])  # make_params reads only the size
        flip = bool(torch.rand(1) < 0.5)  # v2.RandomHorizontalFlip flips unless rand >= p
        return Crop(box["top"], box["left"], box["height"], box["width"], flip)

    def apply(self, image: torch.Tensor, crop: Crop | None) -> torch.Tensor:
        if self.mode == "train":
            out = TF.resized_crop(image, crop.top, crop.left, crop.height, crop.width, [self.size, self.size],
                                  antialias=True)
            return TF.horizontal_flip(out) if crop.flip else out
        if self.mode == "val":
            resized = TF.resize(image, [int(round(self.size * 256 / 224))], antialias=True)
            return TF.center_crop(resized, [self.size, self.size])
        return TF.resize(image, [self.size, self.size], antialias=True)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        return self.apply(image, self.draw(*image.shape[-2:]))

    def reduction(self, crop: Crop | None) -> int:
        """1, 2, 4 or 8: how much smaller a JPEG can be decoded without losing pixels the crop keeps."""
        if crop is None or not self.reduced_decode:
            return 1
        fits = min(crop.height, crop.width) // self.size
        return next((k for k in (8, 4, 2) if fits >= k), 1)


def image_transform(image_size: int, train: bool, augment: bool) -> ImageTransform:
    """The ImageNet recipe when `augment` (train / val), else a plain resize."""
    return ImageTransform(image_size, ("train" if train else "val") if augment else "resize")


def read_bytes(path: str | Path) -> torch.Tensor:
    """A file's bytes as a uint8 1-D tensor (what the decoders take)."""
    return torch.from_numpy(np.fromfile(path, dtype=np.uint8))


def is_jpeg(data: torch.Tensor) -> bool:
    return len(data) >= 3 and tuple(data[:3].tolist()) == JPEG_MAGIC


def _pil(data: torch.Tensor) -> Image.Image:
    return Image.open(io.BytesIO(data.numpy()))


def decode_with_pil(data: torch.Tensor, reduce: int = 1) -> torch.Tensor:
    """uint8 RGB (3, H, W) as ImageFolder's loader reads the file; a JPEG at 1/`reduce` scale when reduce > 1
    (exactly, for sides of at least reduce**2 pixels: PIL's draft takes the largest scale that fits)."""
    with _pil(data) as img:
        if reduce > 1:
            img.draft("RGB", (img.width // reduce, img.height // reduce))
        return TF.pil_to_tensor(img.convert("RGB"))


def jpeg_size(data: torch.Tensor) -> tuple[int, int]:
    """(height, width) from the JPEG header, without decoding."""
    with _pil(data) as img:
        return img.height, img.width


def jpeg_decode_on_gpu(requested: bool) -> bool:
    """GPU JPEG decoding when asked for and CUDA is present; otherwise the workers decode on the CPU."""
    return requested and torch.cuda.is_available()


class UInt8ImageFolder(datasets.ImageFolder):
    """torchvision's ImageFolder (same classes, class_to_idx, samples, targets) with items
    (uint8 (3, size, size), label), or Skipped(path, reason) for a file that cannot be decoded.

    With `defer_jpeg_decode`, a JPEG item is an EncodedJpeg instead, for prepare_batch to
    decode on the device (GPU decoding; other formats are still decoded here)."""

    def __init__(self, root: str | Path, transform: ImageTransform, normalize: bool,
                 defer_jpeg_decode: bool = False) -> None:
        super().__init__(str(root))
        self.image_transform = transform
        self.defer_jpeg_decode = defer_jpeg_decode
        self.input_spec = InputSpec("image", normalize=normalize)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        try:
            return self.load(path), label
        except DECODE_ERRORS as err:  # torchvision raises RuntimeError on damaged JPEG data, PIL OSError
            return Skipped(path, f"{type(err).__name__}: {err}")

    def load(self, path: str) -> torch.Tensor | EncodedJpeg:
        transform = self.image_transform
        data = read_bytes(path)
        if transform.mode == "resize":  # small datasets: PIL's resize, as torchvision's Resize did on PIL images,
            with _pil(data) as img:     # so uint8 / 255 on the device equals the old ToTensor output bit for bit
                size = (transform.size, transform.size)
                return TF.pil_to_tensor(img.convert("RGB").resize(size, Image.BILINEAR))
        if not is_jpeg(data):
            return transform(decode_with_pil(data))
        # a train crop is drawn from the header's size before decoding: it decides how small to decode
        crop = transform.draw(*jpeg_size(data)) if transform.mode == "train" else None
        if self.defer_jpeg_decode:
            return EncodedJpeg(data, path, partial(transform.apply, crop=crop))
        reduce = transform.reduction(crop)
        if reduce == 1:
            return transform.apply(decode_jpeg(data, mode=ImageReadMode.RGB), crop)
        image = decode_with_pil(data, reduce)
        return transform.apply(image, crop.shrunk(reduce, *image.shape[-2:]))


def imagefolder_split(root: Path, split: str, image_size: int, augment: bool, normalize: bool,
                      gpu_decode: bool = False) -> UInt8ImageFolder:
    """The split's ImageFolder; `gpu_decode` (on-disk datasets only: cached ones need decoded items)
    leaves JPEGs for prepare_batch to decode on the GPU, when there is one."""
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected an ImageFolder split directory ({split}/<class>/<image>)")
    return UInt8ImageFolder(folder, image_transform(image_size, split == "train", augment), normalize,
                            defer_jpeg_decode=jpeg_decode_on_gpu(gpu_decode))
