"""Paper-B loaders on tiny files written in the official formats (SHD/SSC HDF5, GSC folders)."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import torch

from pipeline.data import gsc, prepared, shd
from pipeline.data.synth_shd import DEFAULTS, write_synth
from tests.tiny_data import write_h5, write_tiny_gsc


def load_frames(path, time_step_ms, n_units=700, pool=1, samples_per_read=None):
    """A whole file binned through the streaming reader: (frames, lengths, labels)."""
    with shd.SpikeFile(path) as f:
        chunks = list(
            f.binned_chunks(time_step_ms, n_units=n_units, pool=pool, samples_per_read=samples_per_read)
        )
        labels = f.labels
    n_out = shd.pooled_channels(n_units, pool)
    frames = np.concatenate([c[0] for c in chunks]) if chunks else np.zeros((0, n_out), np.int16)
    lengths = np.concatenate([c[1] for c in chunks]) if chunks else np.zeros(0, np.int64)
    return frames, lengths, labels


def naive_frames(times, units, dt_ms, pool, n_units=700):
    """Reference binning, one event at a time."""
    out = []
    for t, u in zip(times, units):
        bins = [int(np.floor(x / (dt_ms / 1000) + 1e-9)) for x in t]
        length = max(bins, default=0) + 1
        f = np.zeros((length, -(-n_units // pool)), np.int64)
        for b, c in zip(bins, u):
            f[b, c // pool] += 1
        out.append(f)
    return out


def test_shd_binning_exact(tmp_path):
    times = [[0.0, 0.005, 0.012, 0.031, 0.0311], [], [0.999]]
    units = [[0, 4, 5, 699, 697], [], [10]]
    path = write_h5(tmp_path / "shd_train.h5", times, units, [1, 0, 1])
    frames, lengths, labels = load_frames(path, time_step_ms=10, pool=5)
    assert frames.shape == (4 + 1 + 100, 140) and frames.dtype == np.int16
    assert lengths.tolist() == [4, 1, 100] and labels.tolist() == [1, 0, 1]
    s0 = frames[:4]
    assert (
        s0[0, 0] == 2 and s0[1, 1] == 1 and s0[3, 139] == 2 and s0.sum() == 5
    )  # t -> floor(t/dt), c -> c//5
    assert frames[4].sum() == 0  # a sample without spikes is one empty frame
    assert frames[5 + 99, 2] == 1 and frames[5:].sum() == 1


def test_shd_binning_matches_naive_on_random_file(tmp_path):
    rng = np.random.default_rng(1)
    times = [np.sort(rng.uniform(0, 0.5, n)) for n in rng.integers(0, 300, 20)]
    units = [rng.integers(0, 700, len(t)) for t in times]
    path = write_h5(tmp_path / "x.h5", times, units, rng.integers(0, 2, 20))
    for dt, pool in ((10, 5), (4, 1), (25, 7)):
        frames, lengths, _ = load_frames(path, time_step_ms=dt, pool=pool, samples_per_read=3)  # across reads
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        for i, ref in enumerate(naive_frames([t.astype(np.float32) for t in times], units, dt, pool)):
            np.testing.assert_array_equal(frames[offsets[i] : offsets[i + 1]], ref)


def test_shd_errors_name_the_file(tmp_path):
    with pytest.raises(shd.DataFormatError, match="dataset root not found"):
        shd.split_path(tmp_path / "nope", "shd", "train")
    with pytest.raises(shd.DataFormatError, match="shd_test.h5: file not found"):
        shd.split_path(tmp_path, "shd", "test")
    (tmp_path / "shd_test.h5.gz").write_bytes(b"x")
    with pytest.raises(shd.DataFormatError, match="gunzip"):
        shd.split_path(tmp_path, "shd", "test")
    good = write_h5(tmp_path / "good.h5", [[0.1, 0.2]], [[1, 2]], [0])
    trunc = tmp_path / "trunc.h5"
    trunc.write_bytes(good.read_bytes()[:700])
    with pytest.raises(shd.DataFormatError, match="trunc.h5: not a readable HDF5 file"):
        load_frames(trunc, 10)
    with h5py.File(tmp_path / "nolabels.h5", "w") as f:
        f.create_dataset("spikes/times", data=np.zeros(1))
    with pytest.raises(shd.DataFormatError, match="nolabels.h5: missing dataset 'spikes/units'"):
        load_frames(tmp_path / "nolabels.h5", 10)
    bad = write_h5(tmp_path / "mismatch.h5", [[0.1, 0.2], [0.1, 0.2, 0.3]], [[1, 2], [1, 2]], [0, 1])
    for samples_per_read in (1, 2):  # samples are numbered in the file, not in the chunk read
        with pytest.raises(shd.DataFormatError, match=r"mismatch.h5: sample 1 has 3 spike times but 2 units"):
            load_frames(bad, 10, samples_per_read=samples_per_read)
    bad = write_h5(tmp_path / "range.h5", [[0.1], [0.1, 0.2]], [[1], [3, 700]], [0, 1])
    with pytest.raises(
        shd.DataFormatError, match=r"range.h5: sample 1 has channel id 700 out of range 0..699"
    ):
        load_frames(bad, 10)
    with pytest.raises(shd.DataFormatError, match="missing.h5: file not found"):
        load_frames(tmp_path / "missing.h5", 10)


def test_ssc_split_files(tmp_path):
    for split in ("train", "valid", "test"):
        write_h5(tmp_path / f"ssc_{split}.h5", [[0.01]], [[5]], [1])
    assert shd.split_path(tmp_path, "ssc", "valid").name == "ssc_valid.h5"
    with pytest.raises(ValueError, match="shd has no 'valid' split"):
        shd.split_path(tmp_path, "shd", "valid")


def test_synth_is_deterministic_and_in_shd_layout(tmp_path):
    cfg = {"n_units": 50, "n_train": 40, "n_test": 10, "n_classes": 4, "n_groups": 3}
    write_synth(tmp_path / "a", cfg)
    write_synth(tmp_path / "b", cfg)
    for name in ("shd_train.h5", "shd_test.h5"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    with h5py.File(tmp_path / "a" / "shd_train.h5") as f:
        assert set(f) == {"spikes", "labels", "extra"} and set(f["spikes"]) == {"times", "units"}
        assert h5py.check_vlen_dtype(f["spikes/times"].dtype) == np.float32
        assert h5py.check_vlen_dtype(f["spikes/units"].dtype) == np.uint16
        assert f["labels"].shape == (40,) and sorted(set(f["labels"][:].tolist())) == [0, 1, 2, 3]
        assert all(np.all(np.diff(t) >= 0) for t in f["spikes/times"][:])  # time-ordered like SHD
    frames, lengths, labels = load_frames(tmp_path / "a" / "shd_train.h5", 10, n_units=50, pool=5)
    assert frames.shape[1] == 10 and len(lengths) == 40
    other = write_synth(tmp_path / "c", {**cfg, "seed": 1})
    assert (tmp_path / "c" / "shd_train.h5").read_bytes() != (tmp_path / "a" / "shd_train.h5").read_bytes()
    assert set(other) >= set(DEFAULTS)


def test_synth_classes_differ_only_in_timing(tmp_path):
    """Per-channel spike counts are the same in every class; class pairs are reversed orderings."""
    cfg = {
        "n_units": 20,
        "n_train": 400,
        "n_test": 2,
        "n_classes": 4,
        "n_groups": 4,
        "noise_rate_hz": 0.0,
        "spikes_per_unit": 2.0,
    }
    used = write_synth(tmp_path, cfg)
    lags = np.asarray(used["class_lags_ms"])
    np.testing.assert_array_equal(np.sort(lags, axis=1), np.tile(np.arange(4) * 25.0, (4, 1)))
    np.testing.assert_array_equal(lags[1], lags[0].max() - lags[0])  # reverse ordering
    with h5py.File(tmp_path / "shd_train.h5") as f:
        units, labels = f["spikes/units"][:], f["labels"][:]
    counts = np.stack(
        [
            np.bincount(np.concatenate([u for u, lab in zip(units, labels) if lab == c]), minlength=20)
            / np.sum(labels == c)
            for c in range(4)
        ]
    )
    assert np.abs(counts - 2.0).max() < 0.6  # Poisson(2) per unit in every class


def test_prepared_batches_and_holdout():
    frames = np.arange(10 * 3, dtype=np.int16).reshape(10, 3)
    split = prepared.make_split(frames, np.array([2, 5, 3]), np.array([0, 1, 0]))
    x, y = split.batch(torch.tensor([2, 0]))
    assert x.shape == (3, 2, 3) and y.tolist() == [0, 0]  # padded to the longest in the batch
    np.testing.assert_array_equal(x[:, 0].numpy(), frames[7:10])
    np.testing.assert_array_equal(x[:2, 1].numpy(), frames[0:2])
    assert x[2, 1].abs().sum() == 0
    sub = split.subset(np.array([1]))
    np.testing.assert_array_equal(sub.frames, frames[2:7])
    labels = np.repeat(np.arange(4), 10)
    tr, va = prepared.holdout(labels, 0.2, seed=3)
    assert len(va) == 8 and np.bincount(labels[va]).tolist() == [2, 2, 2, 2]
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(40))
    assert prepared.holdout(labels, 0.2, seed=3)[1].tolist() == va.tolist()
    gen_a, gen_b = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a = [yb.tolist() for _, yb in prepared.iterate_batches(split, 2, shuffle=True, generator=gen_a)]
    b = [yb.tolist() for _, yb in prepared.iterate_batches(split, 2, shuffle=True, generator=gen_b)]
    assert a == b and sum(len(v) for v in a) == 3


def test_gsc_layout_and_features(tmp_path):
    splits = write_tiny_gsc(tmp_path, ["no", "yes"], per_word=4)
    files, classes = gsc.split_files(tmp_path)
    assert classes == ["no", "yes"]  # _background_noise_ is not a class
    for split in ("train", "valid", "test"):
        assert sorted(r for r, _ in files[split]) == sorted(splits[split])
    assert dict(files["valid"]) == {"no/00000000_nohash_0.wav": 0, "yes/00000000_nohash_0.wav": 1}
    short, long_ = (
        tmp_path / "no/00000001_nohash_0.wav",
        tmp_path / "no/00000002_nohash_0.wav",
    )  # 0.6 s, 1.2 s
    w_short, w_long = gsc.read_wav(short), gsc.read_wav(long_)
    assert w_short.shape == w_long.shape == (16000,)
    assert np.all(w_short[int(0.6 * 16000) :] == 0) and np.abs(w_short[:9000]).max() > 0.1
    import soundfile as sf

    raw_long, _ = sf.read(str(long_), dtype="float32")
    np.testing.assert_array_equal(w_long, raw_long[:16000])
    with gsc.FeatureWorkers(1) as workers:
        chunks = list(workers.chunks(tmp_path, files["train"]))
    assert len(chunks) == 1 and chunks[0].features.shape == (4, 101, 140)
    assert chunks[0].features.dtype == np.float32
    assert chunks[0].readable.tolist() == [True] * 4 and chunks[0].unreadable == []
    frames = chunks[0].features.reshape(-1, 140)
    feat = gsc.LogMel()(torch.from_numpy(w_long)[None])[0]
    np.testing.assert_allclose(
        frames[:101], feat.numpy(), rtol=1e-4, atol=1e-2
    )  # train order: no/2 (1.2 s), no/3, ...
    assert np.isfinite(frames).all()


def test_gsc_features_are_the_reference_transform():
    """LogMel equals the reference's chain (datasets.py build_transform without augmentation), applied one
    waveform at a time as its dataset does, including f_max 14 kHz at 8 kHz: the bands above 4 kHz are
    empty, so constant at the dB floor, and the others carry the signal."""
    from torchaudio.transforms import AmplitudeToDB, MelScale, Resample, Spectrogram

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchaudio warns about the empty bands
        reference = torch.nn.Sequential(
            Resample(16000, 16000 // 2),
            Spectrogram(n_fft=256, hop_length=80, power=2),
            MelScale(n_mels=140, sample_rate=16000 // 2, f_min=50, f_max=14000, n_stft=256 // 2 + 1),
            AmplitudeToDB(),
        )
    gen = torch.Generator().manual_seed(0)
    wavs = torch.randn(4, 16000, generator=gen) * (0.05 + torch.rand(4, 1, generator=gen))
    wavs[1, 9000:] = 0  # a short clip padded to 1 s
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # LogMel handles the empty-band warning itself
        feats = gsc.LogMel()(wavs)
    with torch.no_grad():
        expected = torch.stack([reference(w[None]).squeeze().t() for w in wavs])
    assert feats.shape == expected.shape == (4, 101, 140)
    torch.testing.assert_close(feats, expected, rtol=0, atol=1e-3)  # batch sums differ in the last bits
    constant = (feats.amax(1) == feats.amin(1)).all(0)
    assert constant.nonzero().flatten().tolist() == list(range(87, 140))
    assert (feats[:, :, 87:] == -100.0).all()  # AmplitudeToDB's floor (amin 1e-10)


def test_gsc_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="GSC root not found"):
        gsc.split_files(tmp_path / "none")
    write_tiny_gsc(tmp_path, ["a"], per_word=2)
    (tmp_path / "testing_list.txt").unlink()
    with pytest.raises(FileNotFoundError, match="testing_list.txt: split list not found"):
        gsc.split_files(tmp_path)
    (tmp_path / "testing_list.txt").write_text("a/missing.wav\n")
    with pytest.raises(FileNotFoundError, match="lists 1 missing file"):
        gsc.split_files(tmp_path)


def test_shd_binning_equals_the_per_sample_loop(monkeypatch):
    """The vectorised binning against the per-sample loop of benchmarks/bench_binning.py, across
    chunk boundaries, empty samples, input dtypes, both index widths and the int16 overflow guard."""
    from benchmarks.bench_binning import bin_per_sample

    rng = np.random.default_rng(2)
    counts = rng.integers(0, 400, 60)
    counts[[0, 5, 6, 7, 59]] = 0
    times = [np.sort(rng.uniform(0, 0.8, n)).astype(np.float32) for n in counts]
    units = [rng.integers(0, 700, n).astype(np.uint16) for n in counts]
    monkeypatch.setattr(shd, "EVENTS_PER_CHUNK", 1000)  # many chunks, some of a single sample
    for dt, pool in ((10, 5), (1, 1), (25, 7)):
        for limit in (np.iinfo(np.int32).max, 0):  # int32 and int64 flat indices
            monkeypatch.setattr(shd, "INT32_INDEX_LIMIT", limit)
            ours, loop = (
                shd.bin_events(times, units, dt, pool=pool),
                bin_per_sample(times, units, dt, pool=pool),
            )
            for a, b in zip(ours, loop):
                assert a.dtype == b.dtype
                np.testing.assert_array_equal(a, b)
    as_lists = ([t.astype(np.float64).tolist() for t in times], [u.astype(np.int64).tolist() for u in units])
    for a, b in zip(shd.bin_events(*as_lists, 10, pool=5), bin_per_sample(times, units, 10, pool=5)):
        np.testing.assert_array_equal(a, b)
    # Over 32767 events in a sample: counted in int64 and checked, exact while every count fits int16.
    busy = [np.repeat(np.float32([0.001, 0.015]), [32767, 10])], [np.repeat(np.uint16([3, 3]), [32767, 10])]
    for a, b in zip(shd.bin_events(*busy, 10), bin_per_sample(*busy, 10)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(shd.DataFormatError, match="more than 32767 spikes in one bin"):
        shd.bin_events([np.zeros(32768, np.float32)], [np.zeros(32768, np.uint16)], 10)


def test_spike_times_outside_the_recording_stop_before_any_frame(tmp_path):
    """A time past MAX_SPIKE_TIME_S (wrong units, garbage), negative or NaN stops with file, sample and value,
    before frames up to that time are allocated; the bound itself is a valid time."""
    past_the_end = shd.MAX_SPIKE_TIME_S + 0.01
    for value, shown in ((1e6, r"1e\+06"), (-0.5, "-0.5"), (np.nan, "nan"), (past_the_end, "5.01")):
        times = [np.float32([0.1]), np.float32([0.2, value, 0.3])]
        message = (
            rf"^x.h5: sample 1 has spike time {shown} s, outside the recording \(0 to 5.0 s; "
            rf"expected seconds from its start\)$"
        )
        with pytest.raises(shd.DataFormatError, match=message):
            shd.bin_events(times, [np.uint16([1]), np.uint16([1, 2, 3])], 10, source="x.h5")
    path = write_h5(tmp_path / "shd_test.h5", [[0.1], [0.2, 1e6]], [[1], [1, 2]], [0, 1])
    with pytest.raises(shd.DataFormatError, match=r"shd_test.h5: sample 1 has spike time 1e\+06 s"):
        load_frames(path, 10, samples_per_read=1)  # numbered in the file, not in the read
    frames, lengths = shd.bin_events([np.float32([0.0, shd.MAX_SPIKE_TIME_S])], [np.uint16([0, 1])], 10)
    assert lengths.tolist() == [501] and frames.sum() == 2


def test_class_count_is_the_training_files_and_bounds_every_label(tmp_path):
    opened: list[shd.SpikeFile] = []

    def files(train_labels, test_labels):
        root = tmp_path / str(len(opened))
        root.mkdir()
        for split, labels in (("train", train_labels), ("test", test_labels)):
            write_h5(root / f"shd_{split}.h5", [[0.1]] * len(labels), [[1]] * len(labels), labels)
        opened.extend(shd.SpikeFile(root / f"shd_{split}.h5") for split in ("train", "test"))
        return dict(zip(("train", "test"), opened[-2:]))

    assert shd.class_count(files(list(range(10)) * 2, [9, 0, 3])) == 10  # test may hold fewer classes
    message = (
        r"^\S*shd_test.h5: sample 3 has label 99, outside the classes 0..9 \(shd_train.h5 holds 10 "
        r"distinct labels, expected numbered from 0\)$"
    )
    with pytest.raises(shd.DataFormatError, match=message):
        shd.class_count(files(list(range(10)), [0, 1, 2, 99, 4]))
    gap = r"shd_train.h5: sample 2 has label 3, outside the classes 0..2"
    with pytest.raises(shd.DataFormatError, match=gap):
        shd.class_count(files([0, 1, 3, 0], [0, 1]))  # a gap: class 2 has no training sample
    for f in opened:
        f.close()


def test_unreadable_wavs_are_told_from_wrong_ones(tmp_path):
    """Empty, truncated and foreign files are UnreadableWav (skipped and counted by delays_prepare); a
    readable wav of another sample rate is a plain ValueError (it stops the stage)."""
    import soundfile as sf

    wav = (0.1 * np.sin(np.arange(12001) / 5)).astype(np.float32)
    sf.write(str(tmp_path / "good.wav"), wav, gsc.SAMPLE_RATE, subtype="PCM_16")
    data = (tmp_path / "good.wav").read_bytes()
    np.testing.assert_allclose(gsc.read_wav(tmp_path / "good.wav")[:12001], wav, atol=1e-4)
    damaged = {
        "empty": (b"", r"not a readable wav file \(Format not recognised.\)$"),
        "header": (data[:30], r"not a readable wav file \("),
        "half": (data[:-1000], r"truncated wav file \(1000 bytes of its audio data missing\)$"),
        "text": (b"not a wav\n", r"not a readable wav file \("),
    }
    for name, (content, message) in damaged.items():
        (tmp_path / f"{name}.wav").write_bytes(content)
        with pytest.raises(gsc.UnreadableWav, match=rf"^\S*{name}.wav: {message}"):
            gsc.read_wav(tmp_path / f"{name}.wav")
    # a chunk after the audio does not make a complete file look truncated
    (tmp_path / "list.wav").write_bytes(
        data[:4]
        + (len(data) + 12 - 8).to_bytes(4, "little")
        + data[8:]
        + b"LIST"
        + (4).to_bytes(4, "little")
        + b"INFO"
    )
    np.testing.assert_array_equal(gsc.read_wav(tmp_path / "list.wav"), gsc.read_wav(tmp_path / "good.wav"))
    sf.write(str(tmp_path / "8k.wav"), wav, 8000)
    with pytest.raises(ValueError, match="sample rate 8000 Hz, expected 16000 Hz") as err:
        gsc.read_wav(tmp_path / "8k.wav")
    assert not isinstance(err.value, gsc.UnreadableWav)
