"""Image data: IDX and CSV readers (real files and small synthetic ones, corrupted ones included),
the digits / MNIST / Fashion-MNIST data sources, pixel scaling, token mode, figures."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from discodiff.config import ConfigError, from_dict, to_dict
from discodiff.data import DATASETS
from discodiff.data.image_files import read_csv_images, read_idx, read_idx_images
from discodiff.data.images import FASHION_MNIST_DIR, inpainting_mask, levels_to_unit, unit_to_levels
from discodiff.plots_images import inpainting_figure

SHARED = Path(__file__).parents[1] / ".." / "shared" / "data" / "images"
MNIST_TEST = SHARED / "mnist_test"
MNIST_5K = SHARED / "mnist_5k" / "mnist_5k.csv.gz"


def build(name: str, **options):
    entry = DATASETS.entry(name)
    return entry.obj(from_dict(entry.config, options, "data"))


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    header = bytes([0, 0, type_byte, array.ndim]) + np.array(array.shape, dtype=">i4").tobytes()
    big = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_byte]
    return header + array.astype(big).tobytes()


def write(path: Path, data: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def fake_mnist(n: int, seed: int, size: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, size, size), dtype=np.uint8), rng.integers(0, 10, n).astype(np.uint8)


def write_mnist_dir(folder: Path, n_train: int = 60, n_test: int = 20, gz: bool = True) -> Path:
    folder.mkdir(exist_ok=True)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = fake_mnist(n, seed=n)
        write(folder / f"{prefix}-images-idx3-ubyte{suffix}", idx_bytes(images), gz)
        write(folder / f"{prefix}-labels-idx1-ubyte{suffix}", idx_bytes(labels), gz)
    return folder


# ---- readers --------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(("type_byte", "dtype"), [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32)])
def test_read_idx_round_trip(tmp_path, gz, type_byte, dtype):
    array = (
        (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
        if dtype != np.uint8
        else np.arange(24).reshape(2, 3, 4).astype(dtype)
    )
    out = read_idx(write(tmp_path / "x.idx", idx_bytes(array, type_byte), gz))
    assert out.shape == array.shape and out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, array)


def test_read_idx_errors(tmp_path):
    good = idx_bytes(np.zeros((2, 3, 3), np.uint8))
    cases = {
        "not an IDX file": b"\x01\x00\x08\x03" + good[4:],
        "type byte": b"\x00\x00\x07\x03" + good[4:],
        "file has 33 bytes": good[:-1],
        "file has 35 bytes": good + b"\x00",
        "declares 3 dimensions": good[:8],
        "corrupt gzip": gzip.compress(good)[:-6],
    }
    for message, data in cases.items():
        with pytest.raises(ValueError, match=message):
            read_idx(write(tmp_path / "bad", data))
    with pytest.raises(ValueError, match="NaN"):
        read_idx(write(tmp_path / "nan", idx_bytes(np.array([1.0, np.nan]), 0x0D)))
    with pytest.raises(FileNotFoundError, match="not found"):
        read_idx(tmp_path / "missing")


def test_read_idx_images_checks_pairs(tmp_path):
    images, labels = fake_mnist(5, seed=0)
    img = write(tmp_path / "img", idx_bytes(images))
    assert read_idx_images(img, write(tmp_path / "lab", idx_bytes(labels))).labels.tolist() == labels.tolist()
    with pytest.raises(ValueError, match="4 labels for the 5 images"):
        read_idx_images(img, write(tmp_path / "short", idx_bytes(labels[:4])))
    with pytest.raises(ValueError, match=r"labels must be in 0..9, found 0..12"):
        read_idx_images(img, write(tmp_path / "big", idx_bytes(np.array([0, 1, 2, 3, 12], np.uint8))))
    with pytest.raises(ValueError, match="unsigned bytes"):
        read_idx_images(write(tmp_path / "flat", idx_bytes(labels)), None)
    with pytest.raises(ValueError, match="unsigned bytes"):
        read_idx_images(write(tmp_path / "float", idx_bytes(images.astype(np.float32), 0x0D)), None)


def csv_text(images: np.ndarray, labels: np.ndarray, label_first: bool) -> str:
    rows = []
    for img, lab in zip(images.reshape(len(images), -1), labels):
        values = [lab, *img] if label_first else [*img, lab]
        rows.append(",".join(str(int(v)) for v in values))
    return "\n".join(rows) + "\n"


@pytest.mark.parametrize("label_first", [False, True])
def test_read_csv_round_trip(tmp_path, label_first):
    images, labels = fake_mnist(7, seed=1, size=4)
    path = write(tmp_path / "x.csv.gz", csv_text(images, labels, label_first).encode(), gz=True)
    out = read_csv_images(path, label_column="first" if label_first else "last")
    np.testing.assert_array_equal(out.images, images)
    np.testing.assert_array_equal(out.labels, labels)


def test_read_csv_errors(tmp_path):
    images, labels = fake_mnist(3, seed=2, size=4)
    good = csv_text(images, labels, label_first=False).splitlines()
    cases = {
        "NaN, infinite or non-integer": [
            good[0],
            good[1].replace(",", ",nan,", 1)[: len(good[1]) + 1],
            good[2],
        ],
        "row 2 has a NaN": [good[0], "1.5" + good[1][good[1].index(",") :], good[2]],
        "not a label plus a square image": [",".join(row.split(",")[:-1]) for row in good],
        "not a numeric CSV": [good[0], good[1] + ",3", good[2]],
        r"pixels must be in 0..255, found \d+..300": [
            good[0],
            "300" + good[1][good[1].index(",") :],
            good[2],
        ],
        r"labels must be in 0..9": [good[0], good[1][: good[1].rindex(",")] + ",11", good[2]],
        "no rows": [],
    }
    for message, rows in cases.items():
        path = write(tmp_path / "bad.csv", ("\n".join(rows) + "\n").encode())
        with pytest.raises(ValueError, match=message):
            read_csv_images(path)


# ---- scaling, digits ------------------------------------------------------------------------


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_pixel_scaling_round_trip(levels):
    k = torch.arange(levels)
    x = levels_to_unit(k, levels)
    assert x[0] == -1 and x[-1] == 1
    assert torch.allclose(x.diff(), torch.full((levels - 1,), 2 / (levels - 1)), atol=1e-6)
    assert torch.equal(unit_to_levels(x, levels), k)
    # anything within half a bin maps back to its level
    assert torch.equal(unit_to_levels(x + 0.49 * (2 / (levels - 1)), levels), k)


def test_digits_splits_and_info():
    data = build("digits", labels=True)
    assert data.info.event_shape == (1, 8, 8) and data.info.levels == 17 and data.info.num_classes == 10
    assert data.info.value_range == 1.0 and data.info.kind == "continuous"
    sizes = {name: len(part.images) for name, part in data.splits.items()}
    assert sizes == {"train": 1250, "val": 183, "test": 364}
    x, cond = data.split("test")
    assert x.dtype == torch.float32 and x.shape == (364, 1, 8, 8)
    levels = (x + 1) * 8
    assert torch.equal(levels, levels.round()) and x.min() == -1 and x.max() == 1
    assert torch.bincount(cond).min() >= 35  # stratified: every class in the test split
    xb, cb = data.train_stream(0).next(10)
    assert xb.shape == (10, 1, 8, 8) and cb.shape == (10,)
    assert build("digits").split("val")[1] is None  # unlabelled by default


def test_digits_tokens():
    data = build("digits", tokens=True, labels=True)
    info = data.info
    assert info.kind == "tokens" and info.event_shape == (64,) and info.vocab_size == 17
    assert info.unit == "bits_per_dim" and info.num_classes == 10
    x, _ = data.split("test")
    assert x.dtype == torch.long and x.shape == (364, 64) and int(x.min()) == 0 and int(x.max()) == 16
    images, _ = build("digits").split("test")
    assert torch.equal(data.to_images(x), images)  # same pixels, row-major


# ---- MNIST-style files ----------------------------------------------------------------------


def test_mnist_from_directory(tmp_path):
    folder = write_mnist_dir(tmp_path / "mnist")
    data = build("mnist", train=str(folder), val_size=10, labels=True)
    assert {k: len(v.images) for k, v in data.splits.items()} == {"train": 50, "val": 10, "test": 20}
    assert data.info.levels == 256 and data.info.event_shape == (1, 6, 6)
    images, labels = fake_mnist(20, seed=20)
    x, cond = data.split("test")
    assert np.array_equal(unit_to_levels(x[:, 0], 256).numpy(), images)
    assert cond.tolist() == labels.tolist()
    # the same seed gives the same split; train + val is a partition of the training file
    again = build("mnist", train=str(folder), val_size=10, labels=True)
    assert np.array_equal(again.splits["val"].images, data.splits["val"].images)
    all_train, _ = fake_mnist(60, seed=60)
    both = np.concatenate([data.splits["train"].images, data.splits["val"].images])
    assert sorted(map(bytes, both)) == sorted(map(bytes, all_train))


def test_mnist_from_files_and_held_out_test(tmp_path):
    folder = write_mnist_dir(tmp_path / "raw", gz=False)
    images_file = folder / "train-images-idx3-ubyte"
    data = build("mnist", train=str(images_file), val_size=5, test_size=15, train_size=30, labels=True)
    assert {k: len(v.images) for k, v in data.splits.items()} == {"train": 30, "val": 5, "test": 15}
    with pytest.raises(ValueError, match="leave nothing to train on"):
        build("mnist", train=str(images_file), val_size=30, test_size=30)
    (folder / "train-labels-idx1-ubyte").unlink()
    assert build("mnist", train=str(images_file), val_size=5, test_size=15).splits["train"].labels is None
    with pytest.raises(ValueError, match="no label file"):
        build("mnist", train=str(images_file), val_size=5, test_size=15, labels=True)
    with pytest.raises(FileNotFoundError, match="no train-images-idx3-ubyte"):
        build("mnist", train=str(tmp_path))


def test_mnist_from_csv(tmp_path):
    images, labels = fake_mnist(40, seed=3, size=5)
    path = write(tmp_path / "m.csv", csv_text(images, labels, label_first=True).encode())
    data = build(
        "mnist",
        train=str(path),
        csv_label_column="first",
        csv_image_side=5,
        val_size=4,
        test_size=6,
        tokens=True,
    )
    assert data.info.vocab_size == 256 and data.info.event_shape == (25,)
    x, cond = data.split("val")
    assert x.shape == (4, 25) and x.dtype == torch.long and cond is None


def test_config_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match=r"missing required key 'data\.train'"):
        build("mnist")
    with pytest.raises(ConfigError, match="did you mean 'labels'"):
        build("digits", label=True)
    with pytest.raises(ConfigError, match="val_size and test_size must be >= 1"):
        build("mnist", train=str(tmp_path), val_size=0)
    with pytest.raises(
        ConfigError, match=r"'data\.csv_label_column': got 'middle'; allowed: 'first', 'last'"
    ):
        build("mnist", train=str(tmp_path), csv_label_column="middle")
    config = from_dict(DATASETS.entry("fashion_mnist").config, {"labels": True}, "data")
    assert to_dict(config)["train"] == FASHION_MNIST_DIR and to_dict(config)["labels"] is True


@pytest.mark.skipif(not MNIST_TEST.is_dir(), reason="shared MNIST test files absent")
def test_real_mnist_idx_files():
    part = read_idx_images(MNIST_TEST / "t10k-images-idx3-ubyte.gz", MNIST_TEST / "t10k-labels-idx1-ubyte.gz")
    assert part.images.shape == (10000, 28, 28) and part.images.dtype == np.uint8
    assert part.labels[:5].tolist() == [7, 2, 1, 0, 4]  # the well-known first test labels
    assert np.bincount(part.labels).tolist()[:3] == [980, 1135, 1032]


@pytest.mark.skipif(not MNIST_5K.is_file() or not MNIST_TEST.is_dir(), reason="shared MNIST files absent")
def test_real_mnist_5k_csv():
    data = build("mnist", train=str(MNIST_5K), test=str(MNIST_TEST), labels=True)
    sizes = {k: len(v.images) for k, v in data.splits.items()}
    assert sizes == {"train": 4500, "val": 500, "test": 10000}
    all_labels = np.concatenate([data.splits["train"].labels, data.splits["val"].labels])
    assert np.bincount(all_labels).tolist() == [500] * 10  # label column last: 500 per class
    assert data.info.levels == 256 and data.info.event_shape == (1, 28, 28)


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR).is_dir(), reason="apt package dataset-fashion-mnist absent")
def test_real_fashion_mnist():
    data = build("fashion_mnist", labels=True, val_size=1000)
    sizes = {k: len(v.images) for k, v in data.splits.items()}
    assert sizes == {"train": 59000, "val": 1000, "test": 10000}
    assert np.bincount(data.splits["test"].labels).tolist() == [1000] * 10


# ---- samples and figures --------------------------------------------------------------------


def test_save_samples_and_figures(tmp_path):
    data = build("digits", labels=True)
    x, cond = data.split("test")
    paths = data.save_samples(x[:30], tmp_path / "samples", cond[:30])
    assert [p.name for p in paths] == ["samples.npy", "samples_labels.npy", "samples.png"]
    assert np.array_equal(np.load(paths[0]), x[:30].numpy())
    unlabelled = data.save_samples(x[:7] * 1.5, tmp_path / "w2.0")  # out-of-range values are clipped
    assert [p.name for p in unlabelled] == ["w2.0.npy", "w2.0.png"]
    trajectory = [(t, x[:4] * (1 - t) + t * torch.randn(4, 1, 8, 8)) for t in (1.0, 0.5, 0.0)]
    assert data.plot_trajectory(trajectory, tmp_path / "strip.png").stat().st_size > 0
    mask = inpainting_mask(4, (1, 8, 8), "right")
    assert mask[..., :4].all() and not mask[..., 4:].any()
    assert inpainting_mask(1, (1, 8, 8), "center").sum() == 64 - 16
    with pytest.raises(ValueError, match="allowed: left, right"):
        inpainting_mask(1, (1, 8, 8), "middle")
    fig = inpainting_figure(x[:4], mask, [x[4:8], x[8:12]], tmp_path / "inpaint.png")
    assert fig.stat().st_size > 0
    known, known_mask = data.infilling_example(5)
    assert known.shape == (5, 1, 8, 8) and known_mask.shape == known.shape and known_mask.dtype == torch.bool
    assert known_mask[..., :4].all() and not known_mask[..., 4:].any()
    written = data.save_infilling(known, known_mask, torch.where(known_mask, known, 0.0), tmp_path / "fill")
    assert [p.name for p in written] == ["fill.npy", "fill.png"]
    tokens = build("digits", tokens=True)
    known, known_mask = tokens.infilling_example(3)
    assert known.shape == known_mask.shape == (3, 64) and known_mask.reshape(3, 8, 8)[:, :, :4].all()
    assert tokens.save_infilling(known, known_mask, known, tmp_path / "tokfill")[-1].stat().st_size > 0
    ids = tokens.split("test")[0][:9].clone()
    ids[:, :10] = 17  # a [MASK] id outside the vocabulary: drawn as missing
    assert torch.isnan(tokens.to_images(ids)).sum() == 90
    assert tokens.save_samples(ids, tmp_path / "tok")[-1].stat().st_size > 0
    with pytest.raises(ValueError, match=r"expected token samples \(N, 64\)"):
        tokens.to_images(torch.zeros(2, 1, 8, 8))
