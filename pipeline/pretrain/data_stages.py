"""Data stages of paper A, the embedded stand-ins of the default run (no model code, so a model edit
never rewrites data): digits images, their ES-ImageNet events, moving-digit clips and their ES-UCF101
events."""

from __future__ import annotations

from pathlib import Path

from pipeline.io import atomic_dir, write_json
from pipeline.drivers.stage_table import DigitsConfig, EsConvertConfig, MotionConfig, UcfConvertConfig


def images_embedded(cfg: DigitsConfig, *, out: Path) -> None:
    """Write scikit-learn's digits (real 8x8 images) as an ImageFolder of PNG files."""
    from pipeline.data.digits import write_digits_imagefolder

    with atomic_dir(out) as tmp:
        counts = write_digits_imagefolder(tmp, cfg.digits.val_fraction, cfg.digits.seed)
    print(f"wrote {counts['train']} train / {counts['val']} val digit images to {out}")


def es_imagenet_convert(cfg: EsConvertConfig, *, images: Path, out: Path) -> None:
    """Convert an ImageFolder tree into ES-ImageNet's on-disk format (ES-ImageNet's own conversion)."""
    from pipeline.data.es_imagenet import Geometry, convert_imagefolder

    c = cfg.convert
    with atomic_dir(out) as tmp:
        report = convert_imagefolder(
            Path(images), tmp, Geometry(c.long_side, c.canvas, c.margin), c.threshold, c.min_events
        )
        write_json(tmp / "conversion.json", report)
    dropped = report["train"]["dropped_under_min_events"] + report["val"]["dropped_under_min_events"]
    print(
        f"converted {report['train']['written']} train / {report['val']['written']} val samples "
        f"(dropped {dropped}) to {out}"
    )


def motion_embedded(cfg: MotionConfig, *, out: Path) -> None:
    """Write moving-digit clips as UCF101-style RGB frame folders: class = digit and direction."""
    from pipeline.data.moving_digits import write_moving_digits

    m = cfg.motion
    with atomic_dir(out) as tmp:
        report = write_moving_digits(
            tmp,
            n_classes=m.n_classes,
            clips_per_class_train=m.clips_per_class_train,
            clips_per_class_val=m.clips_per_class_val,
            n_frames=m.n_frames,
            height=m.height,
            width=m.width,
            seed=m.seed,
        )
        write_json(tmp / "clips.json", report)
    print(
        f"wrote {report['train']} train / {report['val']} val clips of {len(report['classes'])} actions "
        f"to {out}"
    )


def es_ucf101_convert(cfg: UcfConvertConfig, *, frames: Path, out: Path) -> None:
    """Convert UCF101-style frame folders into ES-UCF101's format with ES-UCF101's own conversion."""
    from pipeline.data.es_ucf101 import convert_frames_tree

    c = cfg.convert
    with atomic_dir(out) as tmp:
        report = convert_frames_tree(
            Path(frames), tmp, size=(c.height, c.width), n_frames=c.n_frames, rate=c.rate
        )
        write_json(tmp / "conversion.json", report)
    print(f"converted {report} to {out}")
