"""ImageNet-style ImageFolder data (train/<wnid>/*, val/<wnid>/*) with torchvision transforms.

The SNN uses direct input: the model repeats each image over its T steps, so the
same loader feeds the ANN and the SNN.
"""
from __future__ import annotations

from pathlib import Path

from torchvision import datasets, transforms

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def image_transform(image_size: int, train: bool, augment: bool, normalize: bool) -> transforms.Compose:
    """ImageNet recipe when `augment` (random-resized crop + flip / resize + centre crop),
    else a plain resize (small embedded images, where crops and flips change the class)."""
    steps: list = []
    if augment and train:
        steps += [transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip()]
    elif augment:
        steps += [transforms.Resize(int(round(image_size * 256 / 224))), transforms.CenterCrop(image_size)]
    else:
        steps += [transforms.Resize((image_size, image_size))]
    steps.append(transforms.ToTensor())
    if normalize:
        steps.append(transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD))
    return transforms.Compose(steps)


def imagefolder_split(root: Path, split: str, image_size: int, augment: bool, normalize: bool) -> datasets.ImageFolder:
    folder = Path(root) / split
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected an ImageFolder split directory ({split}/<class>/<image>)")
    return datasets.ImageFolder(str(folder), transform=image_transform(image_size, split == "train", augment, normalize))
