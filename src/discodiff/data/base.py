"""Data sources: what a data set is (:class:`DataInfo`), how training batches stream from it, and
how its samples are saved, drawn and scored.

A data source yields states (:mod:`discodiff.state`) of documented shape and dtype: continuous
data as float ``(N, *event_shape)`` (quantized data scaled to [-1, 1] with its number of levels
recorded), token data as long ``(N, L)``, structured data (graphs) as a registered dataclass of
tensors described field by field in :attr:`DataInfo.fields`; labels as long ``(N,)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from ..errors import DataError
from ..registry import Registry
from ..state import State, batch_size, index
from ..state import check_finite as check_finite  # re-exported: data loaders import it from here

DATASETS: Registry[Callable[..., DataSource]] = Registry("data set")
"""Data set builders: ``build(config, state=None) -> DataSource``. ``state`` is what an earlier
:meth:`DataSource.state_dict` returned (e.g. a vocabulary saved with a run); given it, the data
set must rebuild the same encoding without re-deriving it."""


@dataclass(frozen=True)
class FieldInfo:
    """One field of a structured state.

    Attributes:
        shape: shape of the field for one example (padded to the largest example), e.g.
            ``(n_max,)`` for node categories or ``(n_max, n_max)`` for edge categories.
        kind: ``"continuous"`` (float values), ``"tokens"`` (long category ids) or ``"mask"``
            (bool: which entries exist, e.g. the nodes of a padded graph).
        vocab_size: number of categories of a ``"tokens"`` field.
        symmetric: the field is a symmetric matrix over its last two dimensions (undirected edges).
    """

    shape: tuple[int, ...]
    kind: Literal["continuous", "tokens", "mask"]
    vocab_size: int | None = None
    symmetric: bool = False


@dataclass(frozen=True)
class DataInfo:
    """What a method needs to know about its data.

    Attributes:
        event_shape: shape of one example, e.g. ``(2,)``, ``(1, 8, 8)`` or ``(L,)``; for
            structured data, the shape of its largest field (see ``fields``).
        kind: ``"continuous"`` (float values), ``"tokens"`` (long category ids) or ``"graph"``
            (a structured state, described by ``fields``).
        levels: quantized continuous data: number of evenly spaced values in [-1, 1].
        vocab_size: token data: number of categories.
        num_classes: number of class labels (0: unlabelled).
        value_range: continuous data bounded by ``|x| <= value_range`` (used to clip x0).
        unit: name of the likelihood unit reported by ``eval``.
        fields: structured data: each field's description, by name (empty for tensor data).
        node_counts: graphs: probability of each node count ``n = 0 .. n_max`` in the training
            split (the prior ``p(n)`` of the node count).
    """

    event_shape: tuple[int, ...]
    kind: Literal["continuous", "tokens", "graph"] = "continuous"
    levels: int | None = None
    vocab_size: int | None = None
    num_classes: int = 0
    value_range: float | None = None
    unit: str = "bits_per_dim"
    fields: dict[str, FieldInfo] = field(default_factory=dict)
    node_counts: tuple[float, ...] | None = None


class TrainStream(ABC):
    """An endless, resumable stream of training examples."""

    @abstractmethod
    def next(self, n: int) -> tuple[State, Tensor | None]:
        """The next ``n`` examples (a state) and their labels (or ``None``)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Tensor]:
        """Everything needed to continue the stream exactly."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Tensor]) -> None: ...


class TensorStream(TrainStream):
    """Epochs over a fixed state in a seeded random order (the order of epoch e depends only on
    the seed and e, so the position (epoch, offset) is the whole state)."""

    def __init__(self, x: State, cond: Tensor | None, seed: int) -> None:
        self.size = batch_size(x)
        if self.size == 0:
            raise DataError("the training split is empty")
        self.x, self.cond, self.seed = x, cond, seed
        self.epoch, self.offset = 0, 0
        self._order = self._permutation(0)

    def _permutation(self, epoch: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=g)

    def next(self, n: int) -> tuple[Tensor, Tensor | None]:
        idx = []
        while n > 0:
            take = min(n, self.size - self.offset)
            idx.append(self._order[self.offset : self.offset + take])
            self.offset += take
            n -= take
            if self.offset == self.size:
                self.epoch, self.offset = self.epoch + 1, 0
                self._order = self._permutation(self.epoch)
        rows = torch.cat(idx)
        return index(self.x, rows), None if self.cond is None else self.cond[rows]

    def state_dict(self) -> dict[str, Tensor]:
        return {"epoch": torch.tensor(self.epoch), "offset": torch.tensor(self.offset)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.epoch, self.offset = int(state["epoch"]), int(state["offset"])
        self._order = self._permutation(self.epoch)


class GeneratedStream(TrainStream):
    """Fresh samples from a sampler ``draw(n, generator)`` with its own seeded generator."""

    def __init__(self, draw: Callable[[int, torch.Generator], tuple[Tensor, Tensor | None]], seed: int):
        self.draw = draw
        self.generator = torch.Generator().manual_seed(seed)

    def next(self, n: int) -> tuple[Tensor, Tensor | None]:
        return self.draw(n, self.generator)

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


class DataSource(ABC):
    """A data set: its info, a training stream, fixed evaluation splits, and how to show samples."""

    info: DataInfo
    artifact_dir: Path | None = None  # where derived artifacts are cached (the run directory)

    def use_directory(self, path: Path) -> None:
        """Cache what the data set derives (e.g. its evaluation classifier) under ``path``."""
        self.artifact_dir = Path(path)

    def prepare_metrics(self, *, force: bool = False) -> list[Path]:
        """Train or load what :meth:`sample_metrics` needs (nothing by default); returns the files
        written or reused."""
        return []

    @abstractmethod
    def train_stream(self, seed: int) -> TrainStream:
        """A resumable stream over the training data."""

    @abstractmethod
    def split(self, name: Literal["val", "test"]) -> tuple[State, Tensor | None]:
        """A fixed evaluation split: examples and labels (or ``None``)."""

    @abstractmethod
    def save_samples(self, samples: State, stem: Path, cond: Tensor | None = None) -> list[Path]:
        """Write samples next to ``stem`` (arrays as .npy plus a picture, text as UTF-8)."""

    def state_dict(self) -> dict:
        """JSON-serializable state saved with a run (a vocabulary, say); empty by default."""
        return {}

    def unit_log_jacobian(self) -> float:
        r""":math:`\log|\det\,\partial x/\partial y|` of the map from the model's units y back to the
        data's own units x, in nats per example (0 by default: no transform). The evaluation adds it
        to every NLL, so likelihoods are densities of the data as the user gave it: for a
        standardization :math:`y = (x - m)/s` it is :math:`\sum_j \log s_j`."""
        return 0.0

    def sample_metrics(self, samples: State, cond: Tensor | None = None) -> dict[str, float]:
        """Sample-quality metrics against the test split (none by default)."""
        return {}

    def infilling_example(self, n: int) -> tuple[State, State] | None:
        """``(known, known_mask)`` for ``n`` test examples with a part hidden, used to show
        infilling / inpainting at the end of a run; ``None`` where it does not apply."""
        return None

    def save_infilling(self, known: State, known_mask: State, samples: State, stem: Path) -> list[Path]:
        """Write an infilling result (the default writes the completed samples only)."""
        return self.save_samples(samples, stem)

    def plot_trajectory(self, trajectory: list[tuple[float, State]], path: Path) -> Path | None:
        """Draw x_t at several t, where a picture fits (nothing by default)."""
        return None
