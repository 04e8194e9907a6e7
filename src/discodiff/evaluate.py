"""Evaluation through the one interface: likelihood in bits (per dim or per char) and sample
metrics, for any method on any data set.

Evaluation draws its randomness from its own seed inside a forked RNG, so it neither depends on
nor disturbs the training stream.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .base import Batch, Method, SampleOutput
from .data.base import DataSource
from .errors import ConfigError
from .metrics.text import generative_perplexity
from .runconfig import EvalConfig
from .state import batch_size, cat, index, to_device
from .utils import LN2


@contextmanager
def seeded(seed: int, device: torch.device):
    """Run a block with torch's global RNG seeded, restoring the previous state afterwards."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def likelihood(
    method: Method, data: DataSource, cfg: EvalConfig, *, split: str = "test", progress: bool = False
) -> dict[str, float]:
    """Mean NLL over ``cfg.nll_examples`` examples of ``split``, per estimator, in bits per
    dimension (or character) and in nats per example, in the data's own units (the data set's
    :meth:`~discodiff.data.DataSource.unit_log_jacobian` added to each example's NLL)."""
    x, cond = data.split(split)
    if cfg.nll_examples:
        x, cond = index(x, slice(0, cfg.nll_examples)), None if cond is None else cond[: cfg.nll_examples]
    n = batch_size(x)
    unit = data.info.unit
    jacobian = data.unit_log_jacobian()
    out: dict[str, float] = {}
    device = method.device
    for estimator in cfg.estimators:
        method.check_estimator(estimator)
        total_nats, total_dims = 0.0, 0.0
        starts = range(0, n, cfg.batch_size)
        with seeded(cfg.seed, device):
            for i in tqdm(starts, desc=f"nll ({estimator})", disable=not progress, leave=False):
                xb = to_device(index(x, slice(i, i + cfg.batch_size)), device)
                cb = None if cond is None else cond[i : i + cfg.batch_size].to(device)
                res = method.nll(Batch(xb, cb), estimator=estimator)
                total_nats += float(res.nll.double().sum()) + jacobian * batch_size(xb)
                total_dims += float(res.num_dims.double().sum())
        suffix = "" if estimator == "bound" else f"_{estimator}"
        out[f"{unit}{suffix}"] = total_nats / total_dims / LN2
        out[f"nll_nats{suffix}"] = total_nats / n
    return out


def sample_labels(data: DataSource, n: int) -> Tensor | None:
    """Balanced class labels for conditional data (0, 1, ..., C-1, 0, ...), else ``None``."""
    classes = data.info.num_classes
    return torch.arange(n) % classes if classes > 0 else None


def draw_samples(
    method: Method,
    data: DataSource,
    cfg: EvalConfig,
    n: int,
    *,
    progress: bool = False,
    return_trajectory: bool = False,
) -> tuple[SampleOutput, Tensor | None, float]:
    """``n`` samples in batches of ``cfg.batch_size``; returns (samples, labels, seconds)."""
    cond = sample_labels(data, n)
    gen = torch.Generator().manual_seed(cfg.seed)
    xs, traj, nfe = [], [], 0
    start = time.perf_counter()
    for i in range(0, n, cfg.batch_size):
        m = min(cfg.batch_size, n - i)
        out = method.sample(
            m,
            steps=cfg.steps,
            sampler=cfg.sampler,
            cond=None if cond is None else cond[i : i + m].to(method.device),
            guidance_scale=cfg.guidance_scale,
            generator=gen,
            return_trajectory=return_trajectory and i == 0,
            progress=progress,
        )
        xs.append(to_device(out.x, "cpu"))
        traj = traj or [(t, to_device(v, "cpu")) for t, v in out.trajectory]
        nfe = max(nfe, out.nfe)
    seconds = time.perf_counter() - start
    return SampleOutput(cat(xs), traj, nfe), cond, seconds


def load_reference(run_dir: str, data: DataSource, device: torch.device) -> Method:
    """The model of another run on the same data (same encoding), to score samples with."""
    from .build import load_run

    ref = load_run(run_dir, device=device)
    if ref.data.state_dict() != data.state_dict() or ref.data.info.event_shape != data.info.event_shape:
        raise ConfigError(
            f"eval.reference_run {run_dir} was trained on differently encoded data "
            "(vocabulary or shape differ); train the reference on the same data set"
        )
    return ref.method


def evaluate(
    method: Method, data: DataSource, cfg: EvalConfig, *, progress: bool = False
) -> tuple[dict[str, float], SampleOutput | None, Tensor | None]:
    """Likelihood and sample metrics; also returns the samples and their labels."""
    was_training = method.training
    method.eval()
    try:
        metrics = likelihood(method, data, cfg, progress=progress)
        samples, cond = None, None
        if cfg.num_samples:
            samples, cond, seconds = draw_samples(
                method, data, cfg, cfg.num_samples, progress=progress, return_trajectory=True
            )
            metrics["sample_seconds_per_example"] = seconds / cfg.num_samples
            metrics["sample_nfe"] = float(samples.nfe)
            metrics.update(data.sample_metrics(samples.x, cond))
            if cfg.reference_run:
                reference = load_reference(cfg.reference_run, data, method.device)
                metrics.update(generative_perplexity(reference, samples.x, batch_size=cfg.batch_size))
    finally:
        method.train(was_training)
    return metrics, samples, cond
