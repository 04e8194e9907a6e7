"""Progress that reads well on a terminal and in a log file.

On a terminal, progress is a tqdm bar redrawn in place. Without one (stderr redirected to a file,
a batch job, CI), redraws only fill the log, so progress becomes plain lines instead: training
writes one line per ``log_every`` steps (nanoGPT style, :func:`train_line`), and other loops one
line when they end plus one every :data:`PLAIN_INTERVAL_S` seconds while they run.

:class:`LossWindow` keeps the training loss of a logging window on the device, so that the mean
over the window is read (one host sync) only at logging steps.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TextIO, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

T = TypeVar("T")

PLAIN_INTERVAL_S = 30.0
"""Without a terminal, a running loop writes a progress line at most this often."""


def on_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (default: stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class Bar:
    """A progress display over ``total`` units: tqdm on a terminal, plain lines otherwise.

    Args:
        total: number of units (``None``: unknown, the count is shown).
        desc: what is counted, e.g. ``"sample (ancestral)"``.
        unit: the unit's name, e.g. ``"step"``.
        enabled: ``False`` shows nothing.
        initial: units already done (a resumed run).
        own_lines: without a terminal, the caller writes its own lines (training's log lines) and
            the bar none; otherwise it writes one every :data:`PLAIN_INTERVAL_S` seconds and one
            at the end.
        leave: keep the finished bar on the terminal.
    """

    def __init__(
        self,
        total: int | None,
        *,
        desc: str,
        unit: str = "it",
        enabled: bool = True,
        initial: int = 0,
        own_lines: bool = False,
        leave: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        self.count, self.own_lines = initial, own_lines
        self.stream = sys.stderr if stream is None else stream
        self.start = self._last_line = time.perf_counter()
        self._initial = initial
        self._tqdm = None
        if enabled and on_terminal(self.stream):
            self._tqdm = tqdm(
                total=total, initial=initial, desc=desc, unit=unit, leave=leave, dynamic_ncols=True
            )

    @property
    def plain(self) -> bool:
        """Whether this bar writes plain lines (enabled, no terminal)."""
        return self.enabled and self._tqdm is None

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._tqdm is not None:
            self._tqdm.update(n)
        elif self.plain and not self.own_lines:
            now = time.perf_counter()
            if now - self._last_line >= PLAIN_INTERVAL_S:
                self.write(self._status())
                self._last_line = now

    def set_total(self, total: int) -> None:
        """Set (or correct) the number of units once it is known."""
        self.total = total
        if self._tqdm is not None:
            self._tqdm.total = total
            self._tqdm.refresh()

    def set_postfix(self, **values: str) -> None:
        """Extra fields on the terminal bar (plain output writes its own lines)."""
        if self._tqdm is not None:
            self._tqdm.set_postfix(values, refresh=False)

    def write(self, line: str) -> None:
        """One line of text, above the bar on a terminal."""
        if not self.enabled:
            return
        if self._tqdm is not None:
            self._tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def _status(self) -> str:
        seconds = time.perf_counter() - self.start
        done = self.count - self._initial
        of = f"/{self.total}" if self.total is not None else ""
        rate = f", {done / seconds:.3g}/s" if seconds > 0 and done else ""
        return f"{self.desc}: {self.count}{of} {self.unit}s in {seconds:.1f} s{rate}"

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
        elif self.plain and not self.own_lines:
            self.write(self._status())

    def __enter__(self) -> Bar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def track(
    iterable: Iterable[T], *, desc: str, enabled: bool, total: int | None = None, unit: str = "step"
) -> Iterator[T]:
    """``iterable`` with a :class:`Bar` (tqdm on a terminal, plain lines otherwise); a drop-in for
    ``tqdm(iterable, desc=..., disable=not enabled, leave=False)`` in sampler loops."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not enabled:
        yield from iterable
        return
    with Bar(total, desc=desc, unit=unit) as bar:
        for item in iterable:
            yield item
            bar.update(1)


@contextmanager
def counting_calls(modules: Iterable[nn.Module], bar: Bar) -> Iterator[None]:
    """Advance ``bar`` by one at every forward call of ``modules`` inside the block: progress per
    network call, which for a likelihood bound is one tick per time step."""
    handles = [m.register_forward_hook(lambda *_: bar.update(1)) for m in modules] if bar.enabled else []
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def train_line(step: int, planned: int, record: dict) -> str:
    """One nanoGPT-style line for a training log step, e.g.
    ``step 100/900 | loss 2.4127 | lr 2.00e-03 | grad 0.412 | 812 ex/s | 12.3 s``."""
    parts = [f"step {step}/{planned}", f"loss {record['loss']:.5g}"]
    if "lr" in record:
        parts.append(f"lr {record['lr']:.2e}")
    if "grad_norm" in record:
        parts.append(f"grad {record['grad_norm']:.3g}")
    if "examples_per_s" in record:
        rate = record["examples_per_s"]
        parts.append(f"{rate:.0f} ex/s" if rate >= 10 else f"{rate:.2g} ex/s")
    if "elapsed_s" in record:
        parts.append(f"{record['elapsed_s']:.1f} s")
    return " | ".join(parts)


class LossWindow:
    """Sum and count of the training loss since the last logging step, kept on the device.

    ``add`` queues a detached scalar (no host sync); ``pop_mean`` returns the window's mean as a
    float (one sync) and starts a new window.
    """

    def __init__(self) -> None:
        self._sum: Tensor | None = None
        self._count = 0

    def add(self, loss: Tensor) -> None:
        value = loss.detach().to(torch.float64)
        self._sum = value if self._sum is None else self._sum + value
        self._count += 1

    def __len__(self) -> int:
        return self._count

    def state(self) -> list[float]:
        """``[sum, count]`` of the open window (saved in checkpoints, so a resumed run logs the
        same window means as an uninterrupted one)."""
        return [0.0 if self._sum is None else float(self._sum), float(self._count)]

    def load(self, state: list[float]) -> None:
        total, count = state
        self._sum = None if count == 0 else torch.tensor(total, dtype=torch.float64)
        self._count = int(count)

    def pop_mean(self) -> float:
        if self._sum is None:
            raise ValueError("no loss in this logging window")
        mean = float(self._sum) / self._count
        self._sum, self._count = None, 0
        return mean
