"""Paper A's uint8 loaders against the former float32 ones (benchmarks/legacy_loaders.py).

Tolerance for images: decoding is bit-identical (PIL and torchvision both use
libjpeg-turbo's default decoder) and the resize filters are the same, but
torchvision's uint8 kernel keeps other fixed-point precision than PIL's in each
of its two separable passes, each rounded to uint8: a pixel may land one level
away per pass, two at most (2/255 in [0, 1], 2/255/std after the ImageNet
normalisation). The tests also require such rounding differences to be rare.
"""

import io

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import datasets
from torchvision.io import ImageReadMode, decode_jpeg
from torchvision.transforms import v2

from benchmarks.legacy_loaders import (
    LegacyESImageNet,
    legacy_events_to_frames,
    legacy_image_transform,
    legacy_imagefolder_split,
)
from pipeline.data import images
from pipeline.data.batching import CachedDataset, Skipped, collate_skipping, materialize
from pipeline.data.device_transforms import (
    IMAGENET_STD,
    EncodedJpeg,
    InputSpec,
    input_spec_of,
    pack_bits,
    prepare_batch,
    to_model_input,
    unpack_bits,
)
from pipeline.data.es_imagenet import ESImageNet, Geometry, events_to_frames
from pipeline.data.images import Crop, ImageTransform, UInt8ImageFolder, imagefolder_split, read_bytes

# torchvision 0.29 deprecates its image decoders in favour of TorchCodec; they are what this project pins
pytestmark = pytest.mark.filterwarnings(
    "ignore:The image decoding and encoding capabilities:DeprecationWarning"
)

TWO_LEVELS = 2 / 255 + 1e-6
TWO_LEVELS_NORMALISED = 2 / 255 / min(IMAGENET_STD) + 1e-6


def _smooth_rgb(rng, height, width):
    """Smooth random content with some edges: compresses and resizes like a photo."""
    small = rng.integers(0, 256, (max(2, height // 24), max(2, width // 24), 3), dtype=np.uint8)
    img = np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC), np.int16)
    img = img + rng.integers(-8, 9, img.shape)
    img[height // 3 : height // 2, width // 4 : width // 2] = rng.integers(0, 256, 3)
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """train/ and val/ of two classes: JPEGs of several shapes (one greyscale), a PNG, a non-image file."""
    root = tmp_path_factory.mktemp("imagenet")
    rng = np.random.default_rng(0)
    shapes = [(300, 260), (240, 320), (190, 150), (257, 400)]
    for split in ("train", "val"):
        for cls in ("n01", "n02"):
            folder = root / split / cls
            folder.mkdir(parents=True)
            for i, (h, w) in enumerate(shapes):
                Image.fromarray(_smooth_rgb(rng, h, w)).save(folder / f"{cls}_{i}.JPEG", quality=90)
            Image.fromarray(_smooth_rgb(rng, 120, 90)[..., 0]).save(folder / f"{cls}_grey.JPEG", quality=85)
            Image.fromarray(_smooth_rgb(rng, 100, 130)).save(folder / f"{cls}_png.png")
            (folder / "notes.txt").write_text("not an image")
    return root


def _legacy_batch(root, split, size, augment, normalize):
    ds = legacy_imagefolder_split(root, split, size, augment, normalize)
    return torch.stack([ds[i][0] for i in range(len(ds))])


def _new_batch(ds):
    x, y, skipped = collate_skipping([ds[i] for i in range(len(ds))])
    assert skipped == []
    return x, y


def test_classes_targets_and_samples_are_imagefolders(tree):
    new = imagefolder_split(tree, "train", 224, augment=True, normalize=True)
    old = datasets.ImageFolder(str(tree / "train"))
    assert (new.classes, new.class_to_idx, new.targets, new.samples) == (
        old.classes,
        old.class_to_idx,
        old.targets,
        old.samples,
    )


def test_val_batch_is_uint8_and_equals_the_old_float_batch_on_the_device(tree):
    ds = imagefolder_split(tree, "val", 224, augment=True, normalize=True)
    x, y = _new_batch(ds)
    assert x.dtype == torch.uint8 and x.shape == (len(ds), 3, 224, 224)
    model_input, labels, bad = prepare_batch(x, y, input_spec_of(ds), "cpu")
    old = _legacy_batch(tree, "val", 224, augment=True, normalize=True)
    diff = (model_input - old).abs()
    assert bad == [] and torch.equal(labels, torch.as_tensor(ds.targets))
    assert diff.max() <= TWO_LEVELS_NORMALISED
    assert (diff > 1e-6).float().mean() < 0.01


def test_plain_resize_path_equals_the_old_one(tree, tmp_path):
    # the embedded digits: 8x8 greyscale PNGs resized to 16x16, no normalisation
    rng = np.random.default_rng(1)
    for c in ("0", "1"):
        (tmp_path / "train" / c).mkdir(parents=True)
        for i in range(5):
            digit = (rng.integers(0, 17, (8, 8)) * 255 / 16).round().astype(np.uint8)
            Image.fromarray(digit).save(tmp_path / "train" / c / f"digit_{i}.png")
    for root in (tmp_path, tree):
        ds = imagefolder_split(root, "train", 16, augment=False, normalize=False)
        x, y = _new_batch(ds)
        model_input, _, _ = prepare_batch(x, y, ds.input_spec, "cpu")
        old = _legacy_batch(root, "train", 16, augment=False, normalize=False)
        assert (model_input - old).abs().max() <= TWO_LEVELS


def test_uint8_to_float_is_bit_identical_to_totensor_and_normalize():
    pixels = np.random.default_rng(6).integers(0, 256, (2, 7, 7, 3), dtype=np.uint8)
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2)
    for normalize in (False, True):
        old = legacy_image_transform(7, False, False, normalize)  # resizing 7x7 to 7x7 is PIL's identity
        expected = torch.stack([old(Image.fromarray(p)) for p in pixels])
        assert torch.equal(to_model_input(x, InputSpec("image", normalize=normalize)), expected)
    with pytest.raises(TypeError, match="uint8"):
        to_model_input(x.float(), InputSpec("image"))


def test_train_crop_and_flip_follow_torchvision_v2_rng(tree):
    ds = imagefolder_split(tree, "train", 224, augment=True, normalize=False)
    path = ds.samples[0][0]
    decoded = decode_jpeg(read_bytes(path), mode=ImageReadMode.RGB)
    reference = v2.Compose([v2.RandomResizedCrop(224), v2.RandomHorizontalFlip()])
    old = legacy_image_transform(224, True, True, False)
    flips = set()
    for seed in range(6):
        torch.manual_seed(seed)
        expected = reference(decoded)
        torch.manual_seed(seed)
        x, _ = ds[0]
        assert torch.equal(x, expected)
        torch.manual_seed(seed)
        flips.add(ImageTransform(224, "train").draw(*decoded.shape[-2:]).flip)
        # the former v1 transforms draw the same numbers: same crops and flips
        torch.manual_seed(seed)
        with Image.open(path) as img:
            assert (x.float().div(255) - old(img.convert("RGB"))).abs().max() <= TWO_LEVELS
    assert flips == {True, False}


def test_reduced_jpeg_decoding_only_where_the_crop_allows(tmp_path):
    t = ImageTransform(224, "train")
    assert [t.reduction(Crop(0, 0, side, side + 100, False)) for side in (447, 448, 895, 896, 1792)] == [
        1,
        2,
        2,
        4,
        8,
    ]
    assert ImageTransform(224, "val").reduction(None) == 1
    assert ImageTransform(224, "train", reduced_decode=False).reduction(Crop(0, 0, 900, 900, False)) == 1
    (tmp_path / "train" / "a").mkdir(parents=True)
    path = tmp_path / "train" / "a" / "big.jpg"
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    Image.fromarray(small).resize((1600, 1200), Image.BICUBIC).save(path, quality=90)
    ds = imagefolder_split(tmp_path, "train", 224, augment=True, normalize=False)
    full = decode_jpeg(read_bytes(path), mode=ImageReadMode.RGB)
    reduced_seen = 0
    for seed in range(10):
        torch.manual_seed(seed)
        crop = t.draw(1200, 1600)
        torch.manual_seed(seed)
        x, _ = ds[0]
        assert x.shape == (3, 224, 224) and x.dtype == torch.uint8
        # decoded at 1/k scale, the crop lands within k/2 pixels: smooth content barely changes
        # (about 1.5 levels on average; a crop misplaced by a tenth of the image: 40 and more)
        mean_diff = (x.float() - t.apply(full, crop).float()).abs().mean()
        assert mean_diff < 3, (seed, crop, mean_diff)
        reduced_seen += t.reduction(crop) > 1
    assert reduced_seen > 0


def test_damaged_files_are_skipped_and_pngs_decode(tmp_path):
    rng = np.random.default_rng(3)
    folder = tmp_path / "val" / "a"
    folder.mkdir(parents=True)
    buf = io.BytesIO()
    Image.fromarray(_smooth_rgb(rng, 64, 80)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    (folder / "0_good.jpg").write_bytes(jpeg)
    (folder / "1_truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (folder / "2_garbage_inside.jpg").write_bytes(jpeg[:700] + bytes(range(256)) * 4 + jpeg[1724:])
    (folder / "3_text.jpg").write_bytes(b"not an image at all")
    (folder / "4_empty.jpg").write_bytes(b"")
    Image.fromarray(_smooth_rgb(rng, 40, 50)).convert("P").save(folder / "5_palette.png")
    ds = imagefolder_split(tmp_path, "val", 32, augment=True, normalize=True)
    items = [ds[i] for i in range(len(ds))]
    assert [isinstance(item, Skipped) for item in items] == [False, True, True, True, True, False]
    assert "1_truncated.jpg" in items[1].path
    assert items[2].reason.startswith("RuntimeError")  # torchvision's decoder on damaged data
    x, y, skipped = collate_skipping(items)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.uint8 and len(skipped) == 4


def test_gpu_decoding_falls_back_to_the_workers_without_cuda(tree, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert images.jpeg_decode_on_gpu(True) is False
    ds = imagefolder_split(tree, "train", 224, augment=True, normalize=True, gpu_decode=True)
    assert not ds.defer_jpeg_decode and isinstance(ds[0][0], torch.Tensor)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert images.jpeg_decode_on_gpu(True) is True and images.jpeg_decode_on_gpu(False) is False


def test_jpegs_left_encoded_decode_on_the_device_like_in_the_workers(tree, tmp_path):
    # the GPU path, run on the CPU: workers draw the crop, prepare_batch decodes and finishes
    folder = tmp_path / "train" / "n01"
    folder.mkdir(parents=True)
    for p in sorted((tree / "train" / "n01").iterdir()):
        (folder / p.name).write_bytes(p.read_bytes())
    good = (folder / "n01_0.JPEG").read_bytes()
    (folder / "n01_9_truncated.JPEG").write_bytes(good[: len(good) // 2])
    transform = ImageTransform(224, "train")
    deferred = UInt8ImageFolder(folder.parent, transform, normalize=True, defer_jpeg_decode=True)
    in_workers = UInt8ImageFolder(folder.parent, transform, normalize=True)
    torch.manual_seed(0)
    x_list, y, skipped = collate_skipping([deferred[i] for i in range(len(deferred))])
    assert isinstance(x_list, list) and skipped == []
    assert {type(item) for item in x_list} == {EncodedJpeg, torch.Tensor}  # the PNG is decoded in the worker
    x, labels, bad = prepare_batch(x_list, y, deferred.input_spec, "cpu")
    assert len(bad) == 1 and "n01_9_truncated.JPEG" in bad[0] and len(labels) == len(x) == len(x_list) - 1
    torch.manual_seed(0)
    items = [in_workers[i] for i in range(len(in_workers))]
    x_ref, y_ref, skipped_ref = collate_skipping(items)
    expected, _, _ = prepare_batch(x_ref, y_ref, in_workers.input_spec, "cpu")
    assert len(skipped_ref) == 1 and torch.equal(x, expected)
    broken = [
        EncodedJpeg(torch.frombuffer(bytearray(good[:100]), dtype=torch.uint8), "broken.jpg", lambda i: i)
    ]
    assert prepare_batch(broken, torch.tensor([0]), deferred.input_spec, "cpu")[:2] == (None, None)


def test_cached_images_stay_uint8_and_keep_their_input_spec(tree):
    ds = imagefolder_split(tree, "val", 16, augment=False, normalize=True)
    cached, bad = materialize(ds)
    assert isinstance(cached, CachedDataset) and bad == []
    assert cached.tensors[0].dtype == torch.uint8 and input_spec_of(cached) == InputSpec(
        "image", normalize=True
    )


def _es_imagenet(root, geom, n, rng):
    """ES-ImageNet layout with random events, some in the margins (outside the crop)."""
    lines = []
    for i in range(n):
        a, b = geom.long_side - 2 * (i % 3), geom.long_side
        r, c = geom.offset(a, b)
        events = [
            np.stack([rng.integers(0, a + 2, 300), rng.integers(0, b + 2, 300), rng.integers(1, 9, 300)], 1)
            for _ in range(2)
        ]
        assert (events[0][:, 0] + r < geom.canvas).all() and (events[0][:, 1] + c < geom.canvas).all()
        rel = f"class{i % 2}/class{i % 2}_{i + 1}.npz"
        (root / "train" / rel).parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            root / "train" / rel, pos=events[0].astype(np.uint8), neg=events[1].astype(np.uint8)
        )
        lines.append(f"{rel} {i % 2} {a} {b}\n")
    (root / "trainlabel.txt").write_text("".join(lines))


def test_event_frames_are_packed_and_unpack_to_the_old_float_frames(tmp_path):
    geom = Geometry(long_side=46, canvas=48, margin=5)  # crop 38: not a multiple of 8
    _es_imagenet(tmp_path, geom, 6, np.random.default_rng(4))
    new, old = ESImageNet(tmp_path, "train", geom), LegacyESImageNet(tmp_path, "train", geom)
    x, y, _ = collate_skipping([new[i] for i in range(len(new))])
    x_old, y_old, _ = collate_skipping([old[i] for i in range(len(old))])
    assert x.dtype == torch.uint8 and x.shape == (6, 2, 8, 38, 5)
    assert x.nbytes * 4 <= x_old.nbytes
    model_input, labels, _ = prepare_batch(x, y, new.input_spec, "cpu")
    assert (
        model_input.dtype == torch.float32 and torch.equal(model_input, x_old) and torch.equal(labels, y_old)
    )
    # the real geometry, ES-ImageNet's event count, a portrait sample (a = 254, b = 190)
    rng = np.random.default_rng(5)
    pos, neg = (
        np.stack(
            [rng.integers(0, 256, 11000), rng.integers(0, 192, 11000), rng.integers(1, 9, 11000)], 1
        ).astype(np.uint8)
        for _ in range(2)
    )
    real = Geometry()
    assert torch.equal(
        events_to_frames(pos, neg, 254, 190, real).float(), legacy_events_to_frames(pos, neg, 254, 190, real)
    )


def test_events_outside_the_canvas_or_the_steps_are_skipped(tmp_path):
    geom = Geometry(long_side=10, canvas=12, margin=1)
    (tmp_path / "train").mkdir()
    ok = np.array([[3, 3, 1]], np.uint8)
    cases = {
        "ok": ok,
        "t0": np.array([[3, 3, 0]], np.uint8),
        "t9": np.array([[3, 3, 9]], np.uint8),
        "row": np.array([[12, 3, 1]], np.uint8),
    }
    for name, pos in cases.items():
        np.savez_compressed(tmp_path / "train" / f"{name}.npz", pos=pos, neg=ok)
    (tmp_path / "trainlabel.txt").write_text("".join(f"{name}.npz 0 10 10\n" for name in cases))
    ds = ESImageNet(tmp_path, "train", geom)
    assert [isinstance(ds[i], Skipped) for i in range(4)] == [False, True, True, True]
    assert "canvas" in ds[1].reason


def test_unpack_bits_inverts_numpy_packbits():
    bits = torch.randint(0, 2, (3, 4, 13), dtype=torch.uint8)
    packed = pack_bits(bits)
    assert packed.shape == (3, 4, 2)
    assert torch.equal(unpack_bits(packed, 13), bits)
    assert torch.equal(to_model_input(packed, InputSpec("packed_bits", width=13)), bits.float())
