"""What the bench measures, through what methods and data sources declare.

- Likelihood: every requested estimator on a fixed set, ``examples`` evenly spaced examples of the
  data source's ``split`` (index ``round(i (n - 1) / (examples - 1))``; 0: the whole split), in the
  data's unit (bits per dim, char, ...) and nats per example, with the standard error of the mean
  over examples; estimator noise is drawn from the suite's seed.
- Sampling: for each listed sampler, each step count of the grid that its ``SamplerInfo`` allows
  (a sampler with one allowed count, e.g. left-to-right decoding, runs at that count; an adaptive
  solver once, at its default), each guidance scale (labelled data only): ``draws`` draws of
  ``samples`` examples (generator seeds 0, 1, ...), each scored by the data source's
  ``sample_metrics`` and, where the suite names a reference model, by generative perplexity
  under it; each figure as mean and sd over draws; the sampling time per example (mean over
  draws) and the network calls.
"""

from __future__ import annotations

import math
import time

import torch

from ..base import Batch, Method
from ..data.base import DataSource
from ..evaluate import sample_labels, seeded
from ..metrics.text import generative_perplexity
from ..state import batch_size, cat, index, to_device
from ..utils import LN2
from .suite import MethodEntry, Suite


def evenly_spaced(n: int, k: int) -> torch.Tensor:
    """``k`` evenly spaced indices of ``range(n)`` (all of them when ``k`` is 0 or >= n)."""
    if k == 0 or k >= n:
        return torch.arange(n)
    return torch.linspace(0, n - 1, k, dtype=torch.float64).round().long()


def validation_set(data: DataSource, split: str, examples: int):
    """The fixed validation examples and labels (see the module docstring)."""
    x, cond = data.split(split)
    idx = evenly_spaced(batch_size(x), examples)
    return index(x, idx), None if cond is None else cond[idx]


@torch.no_grad()
def likelihood(method: Method, x, cond, estimator: str, *, batch: int, seed: int, unit: str) -> dict:
    """Mean NLL of ``x`` under ``estimator``: ``{unit: ..., unit_stderr, nll_nats, exact, ...}``."""
    n = batch_size(x)
    nats, dims = [], []
    with seeded(seed, method.device):
        for i in range(0, n, batch):
            xb = to_device(index(x, slice(i, i + batch)), method.device)
            cb = None if cond is None else cond[i : i + batch].to(method.device)
            out = method.nll(Batch(xb, cb), estimator=estimator)
            nats.append(out.nll.double().cpu())
            dims.append(out.num_dims.double().cpu())
    nats_t, dims_t = torch.cat(nats), torch.cat(dims)
    per_example = nats_t / dims_t / LN2
    stderr = float(per_example.std() / math.sqrt(n)) if n > 1 else float("nan")
    info = method.estimator_info(estimator)
    return {
        "estimator": estimator,
        "exact": info.exact,
        "monte_carlo": info.monte_carlo,
        "unit": unit,
        "value": float(nats_t.sum() / dims_t.sum() / LN2),
        "stderr": stderr,
        "nll_nats": float(nats_t.mean()),
        "examples": n,
    }


def estimators_of(method: Method, entry: MethodEntry) -> list[str]:
    """The estimators to measure: the entry's list, else every one the method declares."""
    names = entry.estimators or list(method.nll_estimators)
    for name in names:
        method.check_estimator(name)
    return names


def samplers_of(method: Method, entry: MethodEntry) -> list[str]:
    """The samplers to measure: the entry's list (``[all]``: every one), else the default."""
    if entry.samplers is None:
        return [method.default_sampler]
    if entry.samplers == ["all"]:
        return list(method.samplers)
    for name in entry.samplers:
        method.check_sampler(name)
    return list(entry.samplers)


def step_grid(method: Method, sampler: str, grid: list[int]) -> list[int]:
    """The grid's step counts that ``sampler`` allows (see the module docstring)."""
    info = method.sampler_info(sampler)
    if info.nfe_per_step is None:
        return [info.default_steps]
    if info.min_steps == info.max_steps:
        return [info.min_steps]
    ok = [s for s in grid if s >= info.min_steps and (info.max_steps is None or s <= info.max_steps)]
    return ok or [info.default_steps]


def guidance_grid(data: DataSource, suite: Suite) -> list[float]:
    return suite.quality.guidance if data.info.num_classes > 0 else [1.0]


def _score(data: DataSource, samples, cond, reference: Method | None, batch: int) -> dict[str, float]:
    metrics = dict(data.sample_metrics(samples, cond))
    if reference is not None:
        metrics.update(generative_perplexity(reference, samples, batch_size=batch))
    return metrics


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (nan for one value; non-finite values propagate)."""
    mean = math.fsum(values) / len(values)
    if len(values) < 2 or not math.isfinite(mean):
        return mean, float("nan")
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def _summarize(draws: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    keys = [k for k in draws[0] if all(k in d for d in draws)]
    out = {}
    for k in keys:
        mean, sd = mean_sd([float(d[k]) for d in draws])
        out[k] = {"mean": mean, "sd": sd}
    return out


@torch.no_grad()
def draw(
    method: Method, data: DataSource, sampler: str, steps: int, guidance: float, n: int, batch: int, seed: int
):
    """``n`` samples (balanced labels for labelled data); returns (samples, labels, seconds, nfe)."""
    cond = sample_labels(data, n)
    gen = torch.Generator().manual_seed(seed)
    xs, nfe = [], 0
    start = time.perf_counter()
    for i in range(0, n, batch):
        m = min(batch, n - i)
        out = method.sample(
            m,
            steps=steps,
            sampler=sampler,
            cond=None if cond is None else cond[i : i + m].to(method.device),
            guidance_scale=guidance,
            generator=gen,
        )
        xs.append(to_device(out.x, "cpu"))
        nfe = max(nfe, out.nfe)
    return cat(xs), cond, time.perf_counter() - start, nfe


def sampling_rows(
    method: Method, data: DataSource, entry: MethodEntry, suite: Suite, reference: Method | None
) -> list[dict]:
    """One row per (sampler, steps, guidance): metrics as mean/sd over draws, time per example."""
    q = suite.quality
    rows = []
    for sampler in samplers_of(method, entry):
        info = method.sampler_info(sampler)
        for steps in step_grid(method, sampler, q.steps):
            for guidance in guidance_grid(data, suite):
                scores, seconds, nfe = [], [], 0
                for d in range(q.draws):
                    x, cond, sec, nfe = draw(
                        method, data, sampler, steps, guidance, q.samples, q.batch_size, d
                    )
                    seconds.append(sec / q.samples)
                    scores.append(_score(data, x, cond, reference, q.batch_size))
                rows.append(
                    {
                        "kind": "sampling",
                        "sampler": sampler,
                        "steps": steps,
                        "guidance": guidance,
                        "deterministic": info.deterministic,
                        "nfe": nfe,
                        "samples": q.samples,
                        "draws": q.draws,
                        "seconds_per_example": mean_sd(seconds)[0],
                        "seconds_per_example_sd": mean_sd(seconds)[1],
                        "metrics": _summarize(scores),
                    }
                )
    return rows


def data_row(data: DataSource, suite: Suite, reference: Method | None) -> dict:
    """The suite's ``likelihood.split`` scored as if it were samples: the floor of each metric
    at this sample size (e.g. W2 between two fixed sets of data points)."""
    q = suite.quality
    x, cond = validation_set(data, suite.likelihood.split, q.samples)
    n = batch_size(x)
    return {
        "kind": "data",
        "split": suite.likelihood.split,
        "samples": n,
        "metrics": _summarize([_score(data, x, cond, reference, q.batch_size)]),
    }
