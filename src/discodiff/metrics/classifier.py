r"""Sample quality of image models without Inception: a small CNN trained on the same data set.

From the classifier's penultimate features (``feature_dim`` ReLU units) we report

- ``classifier_fd``: the Frechet distance between Gaussians fitted to the features of samples and
  of test images,

  .. math:: d^2 = \|\mu_s - \mu_r\|^2 + \mathrm{Tr}\big(\Sigma_s + \Sigma_r
            - 2(\Sigma_r^{1/2}\Sigma_s\Sigma_r^{1/2})^{1/2}\big)

  (Heusel et al. 2017, Eq. 6, the formula of FID, here in the features of *this* classifier:
  **not comparable with Inception FID** nor across data sets or classifier checkpoints; it also
  depends on the number of samples, so compare runs at equal sample counts);
- ``classifier_accuracy``: the fraction of class-conditional samples that the classifier assigns
  to the class they were asked for (rows with label -1 are skipped).

The classifier is trained by :func:`train_classifier` (deterministic given its seed), saved as
safetensors weights plus a JSON description (:func:`save_classifier`), loaded without unpickling
(:func:`load_classifier`), and cached by :func:`load_or_train`, which an image data set calls with
its ``classifier`` path the first time it scores samples.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn import functional as F

from ..base import NULL_LABEL
from ..errors import ConfigError, DataError

if TYPE_CHECKING:
    from ..data.images import ImageData

POOLED_SIZE = 4
"""Spatial size the convolutional features are average-pooled to before the dense layers."""

FEATURE_BATCH = 512
"""Images per forward pass when extracting features."""


@dataclass(frozen=True)
class ClassifierArch:
    """Architecture of :class:`ImageClassifier` (saved in its JSON file)."""

    image_shape: tuple[int, int, int]  # (C, H, W)
    num_classes: int = 10
    width: int = 32  # channels of the first conv stage (the second has 2 * width)
    feature_dim: int = 64  # penultimate features used for the Frechet distance


@dataclass(frozen=True)
class TrainSettings:
    """How :func:`train_classifier` trains (saved in the JSON file with the result)."""

    steps: int = 1500  # Adam steps (digits: about 75 epochs; MNIST 5k: about 20)
    batch_size: int = 64
    lr: float = 3e-3  # peak learning rate, cosine-decayed to 0 over the steps
    max_shift: int = 1  # random translations of up to this many pixels (augmentation)
    seed: int = 0


class ImageClassifier(nn.Module):
    """conv-conv-pool, conv-conv, average pool to 4x4, dense ``feature_dim`` (ReLU), dense logits."""

    def __init__(self, arch: ClassifierArch) -> None:
        super().__init__()
        c, w = arch.image_shape[0], arch.width
        self.arch = arch
        self.convs = nn.Sequential(
            nn.Conv2d(c, w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(w, w, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * w, 2 * w, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(POOLED_SIZE),
        )
        self.features = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * POOLED_SIZE**2, arch.feature_dim), nn.ReLU()
        )
        self.head = nn.Linear(arch.feature_dim, arch.num_classes)

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)`` of images ``(B, C, H, W)`` in [-1, 1]."""
        if tuple(x.shape[1:]) != self.arch.image_shape:
            raise ValueError(f"classifier expects images (B, {self.arch.image_shape}), got {tuple(x.shape)}")
        return self.features(self.convs(x))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits ``(B, num_classes)``."""
        return self.head(self.embed(x))


def _shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by up to ``max_shift`` pixels, filling with the background value -1."""
    if max_shift == 0:
        return x
    _, _, h, w = x.shape
    padded = F.pad(x, (max_shift,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * max_shift + 1, (2, len(x)), generator=generator).tolist()
    return torch.stack([padded[i, :, a : a + h, b : b + w] for i, (a, b) in enumerate(zip(dy, dx))])


@torch.no_grad()
def accuracy(model: ImageClassifier, images: Tensor, labels: Tensor) -> float:
    """Fraction of ``images`` (N, C, H, W) classified as ``labels`` (N,)."""
    model.eval()
    device = next(model.parameters()).device
    hits = sum(
        int((model(x.to(device)).argmax(1).cpu() == y).sum())
        for x, y in zip(images.split(FEATURE_BATCH), labels.split(FEATURE_BATCH))
    )
    return hits / len(labels)


def train_classifier(
    data: ImageData, *, arch: ClassifierArch | None = None, settings: TrainSettings | None = None
) -> tuple[ImageClassifier, dict]:
    """Train on ``data``'s train split with Adam and cross-entropy, on the CPU, deterministically;
    batches are drawn epoch by epoch without replacement (an incomplete last batch is skipped).

    Weights are initialized under ``torch.manual_seed(settings.seed)`` (without touching the
    caller's global random state), and the batch order and shifts come from a generator with the
    same seed. Returns the model (eval mode) and a record with the settings and the val and test
    accuracies.
    """
    arch = arch or ClassifierArch(image_shape=data.image_shape)
    settings = settings or TrainSettings()
    x, y = data.labelled_images("train")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        model = ImageClassifier(arch)
    g = torch.Generator().manual_seed(settings.seed)
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=settings.steps)
    model.train()
    order, pos = torch.randperm(len(x), generator=g), 0
    for _ in range(settings.steps):
        if pos + settings.batch_size > len(x):
            order, pos = torch.randperm(len(x), generator=g), 0
        idx = order[pos : pos + settings.batch_size]
        pos += settings.batch_size
        loss = F.cross_entropy(model(_shift(x[idx], settings.max_shift, g)), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
    record = {
        "dataset": data.name,
        "levels": data.levels,
        "settings": asdict(settings),
        "val_accuracy": accuracy(model, *data.labelled_images("val")),
        "test_accuracy": accuracy(model, *data.labelled_images("test")),
    }
    return model.eval(), record


def save_classifier(model: ImageClassifier, record: dict, path: str | Path) -> tuple[Path, Path]:
    """Write ``path`` (safetensors weights) and ``path`` with suffix ``.json`` (architecture + record)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(path))
    meta = path.with_suffix(".json")
    meta.write_text(json.dumps({"arch": asdict(model.arch), **record}, indent=2) + "\n")
    return path, meta


def load_classifier(path: str | Path) -> tuple[ImageClassifier, dict]:
    """Load a classifier written by :func:`save_classifier` (safetensors + JSON; nothing unpickled)."""
    path = Path(path)
    meta = path.with_suffix(".json")
    if not path.is_file() or not meta.is_file():
        raise FileNotFoundError(f"classifier checkpoint needs both {path} and {meta}")
    record = json.loads(meta.read_text())
    try:
        fields = dict(record["arch"])
        arch = ClassifierArch(**{**fields, "image_shape": tuple(fields["image_shape"])})
    except (KeyError, TypeError) as err:
        raise DataError(f"{meta}: not a classifier description ({err})") from None
    model = ImageClassifier(arch)
    model.load_state_dict(load_file(str(path)), strict=True)
    return model.eval(), record


def load_or_train(path: str | Path, data: ImageData) -> ImageClassifier:
    """The classifier cached at ``path`` for ``data``; trained and saved there when absent.

    A checkpoint for another data set, image size or number of levels raises an error rather
    than silently scoring with the wrong classifier.
    """
    path = Path(path)
    if path.is_file():
        model, record = load_classifier(path)
        found = (record.get("dataset"), record.get("levels"), model.arch.image_shape)
        wanted = (data.name, data.levels, data.image_shape)
        if found != wanted:
            raise ConfigError(
                f"classifier {path} was trained for (data set, levels, image shape) = {found}, but this data "
                f"is {wanted}; point data.classifier to another file or delete it to retrain"
            )
        return model
    model, record = train_classifier(data)
    save_classifier(model, record, path)
    return model


@torch.no_grad()
def classifier_features(model: ImageClassifier, images: Tensor) -> Tensor:
    """Penultimate features ``(N, feature_dim)`` float64 of images ``(N, C, H, W)``."""
    model.eval()
    device = next(model.parameters()).device
    return torch.cat([model.embed(x.to(device).float()).cpu() for x in images.split(FEATURE_BATCH)]).double()


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""Frechet distance between Gaussians fitted to feature sets ``a`` (N, F) and ``b`` (M, F)
    (see the module docstring); the matrix square root via symmetric eigendecompositions."""
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"need two (N >= 2, F) feature sets of the same F, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    a, b = a.double().numpy(), b.double().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    evals, evecs = np.linalg.eigh(cov_b)
    sqrt_b = (evecs * np.sqrt(np.clip(evals, 0, None))) @ evecs.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(sqrt_b @ cov_a @ sqrt_b), 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def classifier_sample_metrics(
    model: ImageClassifier, samples: Tensor, reference: Tensor, cond: Tensor | None = None
) -> dict[str, float]:
    """``classifier_fd`` of ``samples`` against ``reference`` images, plus ``classifier_accuracy``
    of the samples whose label in ``cond`` (N,) is a class (not -1)."""
    if not torch.isfinite(samples).all():
        raise FloatingPointError("samples contain NaN or infinite values")
    out = {
        "classifier_fd": frechet_distance(
            classifier_features(model, samples), classifier_features(model, reference)
        )
    }
    if cond is not None:
        keep = cond.cpu() != NULL_LABEL
        if keep.any():
            out["classifier_accuracy"] = accuracy(model, samples[keep], cond.cpu()[keep])
    return out
