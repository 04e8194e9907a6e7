r"""Image data sets: scikit-learn's 8x8 digits, MNIST and Fashion-MNIST.

Pixels are quantized to ``L`` levels (17 for digits, 256 for MNIST) and scaled to [-1, 1] by

.. math:: x = \frac{2k}{L - 1} - 1, \qquad k \in \{0, \dots, L-1\},

so the levels are evenly spaced with bin half-width :math:`1/(L-1)`, exactly what the
discretized-Gaussian decoder (Ho et al. 2020, Eq. 13) and uniform dequantization assume:
likelihoods of these images are exact probabilities of the quantized data. ``DataInfo.levels``
records ``L`` and ``value_range`` is 1.

Options shared by every image data set (:class:`ImageOptions`):

- ``labels``: yield the class labels (``num_classes = 10``) for class-conditional models;
- ``tokens``: yield each image as ``H*W`` category ids ``k`` (``(N, H*W)`` long, vocabulary ``L``,
  row-major) for categorical models, so that categorical and Gaussian models of the same images
  report comparable bits per dimension;
- ``classifier``: where the sample-quality classifier's checkpoint lives (trained there on first
  use; see :mod:`discodiff.metrics.classifier`).

Splits. Digits: a fixed split, stratified by class: the ``j``-th image of each class in
scikit-learn's order is *test* when ``j % 5 == 0`` (364 images), *val* when ``j % 10 == 1``
(183), *train* otherwise (1,250). (scikit-learn's order cycles through the classes, so a split on
the global index would alias with the labels.) MNIST-style files: the
test file when one is found, else ``test_size`` images held out of the training file; ``val_size``
images are always held out of the training file; held-out images are chosen by a permutation
seeded with ``split_seed``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, DataError
from .base import DATASETS, DataInfo, DataSource, TensorStream, TrainStream
from .image_files import (
    DIGITS_LEVELS,
    NUM_CLASSES,
    LabelledImages,
    first_existing,
    load_digits_images,
    read_image_path,
)

MNIST_LEVELS = 256
"""MNIST and Fashion-MNIST pixels are bytes."""

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's ``dataset-fashion-mnist`` package installs the four IDX files."""

SPLITS = ("train", "val", "test")


def levels_to_unit(k: Tensor, levels: int) -> Tensor:
    r"""Integer levels :math:`k` -> :math:`2k/(L-1) - 1` in [-1, 1], float32."""
    return k.to(torch.float32) * (2.0 / (levels - 1)) - 1.0


def unit_to_levels(x: Tensor, levels: int) -> Tensor:
    r"""[-1, 1] -> nearest level :math:`\mathrm{round}((x+1)(L-1)/2)`, clamped to 0..L-1, long."""
    return torch.round((x.to(torch.float64) + 1) * (levels - 1) / 2).clamp(0, levels - 1).long()


MASK_REGIONS = ("left", "right", "top", "bottom", "center")

INFILLING_REGION = "right"
"""The unknown part of the inpainting example every run draws (:meth:`ImageData.infilling_example`)."""


def inpainting_mask(num: int, image_shape: tuple[int, int, int], region: str) -> Tensor:
    """A ``known_mask`` for inpainting: bool ``(num, C, H, W)``, True where pixels are *known*;
    ``region`` names the *unknown* part: the left, right, top or bottom half, or the center
    (the middle half of each side). Flatten it to ``(num, H*W)`` for token images (C = 1)."""
    if region not in MASK_REGIONS:
        raise ConfigError(f"unknown inpainting region {region!r}; allowed: {', '.join(MASK_REGIONS)}")
    _, height, width = image_shape
    unknown = torch.zeros(image_shape, dtype=torch.bool)
    h2, w2, h4, w4 = height // 2, width // 2, height // 4, width // 4
    area = {
        "left": (slice(None), slice(None, w2)),
        "right": (slice(None), slice(w2, None)),
        "top": (slice(None, h2), slice(None)),
        "bottom": (slice(h2, None), slice(None)),
        "center": (slice(h4, height - h4), slice(w4, width - w4)),
    }[region]
    unknown[:, area[0], area[1]] = True
    return (~unknown).expand(num, *image_shape).clone()


@dataclass(kw_only=True)
class ImageOptions:
    """Options of every image data set (see the module docstring)."""

    labels: bool = False  # yield class labels (10 classes) for class-conditional models
    tokens: bool = False  # yield images as (H*W,) long level ids for categorical models
    classifier: str | None = None  # classifier checkpoint (.safetensors; relative: in the run dir)


class ImageData(DataSource):
    """Quantized images with fixed train / val / test splits; see the module docstring."""

    def __init__(
        self, name: str, splits: dict[str, LabelledImages], levels: int, options: ImageOptions
    ) -> None:
        missing = [s for s in SPLITS if s not in splits or len(splits[s].images) == 0]
        if missing:
            raise DataError(f"{name}: empty or missing split(s) {', '.join(missing)}")
        if options.labels and any(splits[s].labels is None for s in SPLITS):
            raise DataError(f"{name}: labels: true, but the data has no label file")
        shapes = {splits[s].images.shape[1:] for s in SPLITS}
        if len(shapes) != 1:
            raise DataError(f"{name}: the splits have different image sizes {sorted(shapes)}")
        self.name, self.levels, self.options = name, levels, options
        self.splits = splits
        height, width = shapes.pop()
        self.image_shape = (1, height, width)
        num_classes = NUM_CLASSES if options.labels else 0
        if options.tokens:
            self.info = DataInfo(
                event_shape=(height * width,), kind="tokens", vocab_size=levels, num_classes=num_classes
            )
        else:
            self.info = DataInfo(
                event_shape=self.image_shape, levels=levels, num_classes=num_classes, value_range=1.0
            )
        self._classifier = None

    def _encode(self, part: LabelledImages) -> tuple[Tensor, Tensor | None]:
        k = torch.from_numpy(part.images.astype(np.int64))
        x = k.reshape(len(k), -1) if self.options.tokens else levels_to_unit(k, self.levels)[:, None]
        cond = torch.from_numpy(part.labels) if self.options.labels else None
        return x, cond

    def train_stream(self, seed: int) -> TrainStream:
        x, cond = self._encode(self.splits["train"])
        return TensorStream(x, cond, seed)

    def split(self, name: Literal["val", "test"]) -> tuple[Tensor, Tensor | None]:
        if name not in ("val", "test"):
            raise ValueError(f"unknown split {name!r}; allowed: val, test")
        return self._encode(self.splits[name])

    def labelled_images(self, name: Literal["train", "val", "test"]) -> tuple[Tensor, Tensor]:
        """Images ``(N, 1, H, W)`` in [-1, 1] and labels ``(N,)``, whatever the options (classifier)."""
        part = self.splits[name]
        if part.labels is None:
            raise DataError(f"{self.name}: the {name} split has no labels")
        k = torch.from_numpy(part.images.astype(np.int64))
        return levels_to_unit(k, self.levels)[:, None], torch.from_numpy(part.labels)

    def to_images(self, samples: Tensor) -> Tensor:
        """Samples as images ``(N, 1, H, W)`` in [-1, 1] (token ids decoded; any id outside
        0..L-1, such as a [MASK], becomes NaN)."""
        if self.options.tokens:
            if samples.dim() != 2 or samples.shape[1] != self.info.event_shape[0]:
                raise ValueError(
                    f"expected token samples (N, {self.info.event_shape[0]}), got {tuple(samples.shape)}"
                )
            k = samples.detach().cpu().long()
            x = levels_to_unit(k.clamp(0, self.levels - 1), self.levels)
            x = torch.where((k >= 0) & (k < self.levels), x, torch.nan)
            return x.reshape(len(k), *self.image_shape)
        if tuple(samples.shape[1:]) != self.image_shape:
            shape = ", ".join(map(str, self.image_shape))
            raise ValueError(f"expected image samples (N, {shape}), got {tuple(samples.shape)}")
        return samples.detach().cpu().float()

    def save_samples(self, samples: Tensor, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """``<stem>.npy`` (as given), ``<stem>_labels.npy`` (with ``cond``) and a ``<stem>.png`` grid,
        one row per class when labels are given."""
        from ..plots_images import image_grid

        stem = Path(stem)
        paths = [stem.parent / f"{stem.name}.npy"]  # appended: a stem may contain dots ("w2.0")
        np.save(paths[0], samples.detach().cpu().numpy())
        if cond is not None:
            paths.append(stem.parent / f"{stem.name}_labels.npy")
            np.save(paths[-1], cond.detach().cpu().numpy())
        labels = None if cond is None else cond.detach().cpu()
        paths.append(
            image_grid(
                self.to_images(samples), stem.parent / f"{stem.name}.png", labels=labels, title=self.name
            )
        )
        return paths

    def plot_trajectory(self, trajectory: list[tuple[float, Tensor]], path: Path) -> Path:
        from ..plots_images import denoising_strip

        return denoising_strip([(t, self.to_images(x)) for t, x in trajectory], path)

    def infilling_example(self, n: int) -> tuple[Tensor, Tensor]:
        """``n`` test images (evenly spaced through the split) with their right half unknown:
        ``(known, known_mask)`` in this data set's encoding (images, or flattened for tokens)."""
        x, _ = self.split("test")
        x = x[torch.linspace(0, len(x) - 1, n).round().long()]
        mask = inpainting_mask(n, self.image_shape, INFILLING_REGION)
        return x, mask.reshape(x.shape)

    def save_infilling(self, known: Tensor, known_mask: Tensor, samples: Tensor, stem: Path) -> list[Path]:
        """``<stem>.npy`` (the completed samples) and ``<stem>.png``: masked input, completion and
        original (``known`` holds the original everywhere) for each example."""
        from ..plots_images import inpainting_figure

        stem = Path(stem)
        npy = stem.parent / f"{stem.name}.npy"
        np.save(npy, samples.detach().cpu().numpy())
        shape = (len(known), *self.image_shape)
        png = inpainting_figure(
            self.to_images(known),
            known_mask.detach().cpu().reshape(shape),
            [self.to_images(samples)],
            stem.parent / f"{stem.name}.png",
            title=f"{self.name}: inpainting",
        )
        return [npy, png]

    def classifier_path(self) -> Path | None:
        """The configured classifier checkpoint; a relative path lives in the run directory."""
        if self.options.classifier is None:
            return None
        path = Path(self.options.classifier)
        return path if path.is_absolute() or self.artifact_dir is None else self.artifact_dir / path

    def prepare_metrics(self, *, force: bool = False) -> list[Path]:
        """Train (or load) the evaluation classifier at :meth:`classifier_path`."""
        from ..metrics.classifier import load_or_train

        path = self.classifier_path()
        if path is None:
            return []
        if force:
            path.unlink(missing_ok=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        self._classifier = load_or_train(path, self)
        return [path]

    def sample_metrics(self, samples: Tensor, cond: Tensor | None = None) -> dict[str, float]:
        """``classifier_fd`` (and ``classifier_accuracy`` given labels) from the data set's own
        classifier, when ``classifier`` is configured; see :mod:`discodiff.metrics.classifier`.
        Not comparable with Inception FID."""
        if self.options.classifier is None:
            return {}
        from ..metrics.classifier import classifier_sample_metrics

        if self._classifier is None:
            self.prepare_metrics()
        images = self.to_images(samples)
        if torch.isnan(images).any():
            raise ValueError("samples contain ids outside the vocabulary (e.g. [MASK]); cannot score them")
        reference, _ = self.labelled_images("test")
        return classifier_sample_metrics(self._classifier, images, reference, cond)


# ---- scikit-learn digits --------------------------------------------------------------------


def digits_splits() -> dict[str, LabelledImages]:
    """The fixed digits split of the module docstring: the j-th image of each class (in
    scikit-learn's order) is test when j % 5 == 0, val when j % 10 == 1, train otherwise."""
    data = load_digits_images()
    j = np.zeros(len(data.labels), dtype=np.int64)  # rank of each image within its class
    for c in range(NUM_CLASSES):
        members = data.labels == c
        j[members] = np.arange(members.sum())
    test, val = j % 5 == 0, j % 10 == 1
    return {"train": data.subset(~(test | val)), "val": data.subset(val), "test": data.subset(test)}


@dataclass(kw_only=True)
class DigitsConfig(ImageOptions):
    """``data: {name: digits, labels: true}``: scikit-learn's 8x8 digits, 17 levels."""


@DATASETS.register("digits", config=DigitsConfig)
def build_digits(config: DigitsConfig, state: dict | None = None) -> ImageData:
    return ImageData("digits", digits_splits(), DIGITS_LEVELS, config)


# ---- MNIST-style files ----------------------------------------------------------------------


@dataclass(kw_only=True)
class MNISTConfig(ImageOptions):
    """``data: {name: mnist, train: PATH, test: PATH}``; a path is a directory holding the IDX files
    (``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]``, or ``t10k-*`` for the
    test set), an IDX images file (labels found by replacing ``images-idx3`` with ``labels-idx1`` in
    its name), or a CSV file (``.csv`` or ``.csv.gz``: label + 784 pixels per row).
    The files are at http://yann.lecun.com/exdb/mnist/ (or any MNIST mirror)."""

    train: str  # training images: a directory, an IDX images file or a CSV file
    test: str | None = None  # test images; None: t10k files beside the training files, else held out
    csv_label_column: Literal["first", "last"] = "last"  # where a CSV row's label is
    val_size: int = 500  # validation images held out of the training file
    test_size: int = 1000  # test images held out of the training file when there is no test file
    train_size: int | None = None  # keep only this many training images (None: all)
    split_seed: int = 0  # seed of the held-out permutation

    def __post_init__(self) -> None:
        if self.val_size < 1 or self.test_size < 1:
            raise ValueError(f"val_size and test_size must be >= 1, got {self.val_size}, {self.test_size}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"train_size must be >= 1 or null, got {self.train_size}")


def mnist_splits(config: MNISTConfig) -> dict[str, LabelledImages]:
    """train / val / test images for an MNIST-style configuration (see the module docstring)."""
    train = read_image_path(
        config.train, prefix="train", csv_label_column=config.csv_label_column, levels=MNIST_LEVELS
    )
    test = None
    if config.test is not None:
        test = read_image_path(
            config.test, prefix="t10k", csv_label_column=config.csv_label_column, levels=MNIST_LEVELS
        )
    elif Path(config.train).is_dir() and first_existing(Path(config.train), "t10k-images-idx3-ubyte"):
        test = read_image_path(config.train, prefix="t10k")
    held = config.val_size + (config.test_size if test is None else 0)
    if held >= len(train.images):
        raise DataError(
            f"{config.train}: {len(train.images)} images leave nothing to train on after {held} held out"
        )
    g = torch.Generator().manual_seed(config.split_seed)
    order = torch.randperm(len(train.images), generator=g).numpy()
    val_idx, rest = order[: config.val_size], order[config.val_size :]
    if test is None:
        test, rest = train.subset(np.sort(rest[: config.test_size])), rest[config.test_size :]
    rest = np.sort(rest if config.train_size is None else rest[: config.train_size])
    return {"train": train.subset(rest), "val": train.subset(np.sort(val_idx)), "test": test}


@DATASETS.register("mnist", config=MNISTConfig)
def build_mnist(config: MNISTConfig, state: dict | None = None) -> ImageData:
    return ImageData("mnist", mnist_splits(config), MNIST_LEVELS, config)


@dataclass(kw_only=True)
class FashionMNISTConfig(MNISTConfig):
    """``data: {name: fashion_mnist}``: Fashion-MNIST (Xiao et al. 2017), 60,000 + 10,000 IDX images;
    by default the files Debian's ``dataset-fashion-mnist`` installs (``apt-get install
    dataset-fashion-mnist``)."""

    train: str = FASHION_MNIST_DIR


@DATASETS.register("fashion_mnist", config=FashionMNISTConfig)
def build_fashion_mnist(config: FashionMNISTConfig, state: dict | None = None) -> ImageData:
    return ImageData("fashion_mnist", mnist_splits(config), MNIST_LEVELS, config)
