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

from .base import Batch, Method, SampleOutput
from .data.base import DataSource
from .errors import ConfigError
from .metrics.stats import ratio_stderr
from .metrics.text import generative_perplexity
from .precision import network_precision
from .progress import Bar, counting_calls
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
    :meth:`~discodiff.data.DataSource.unit_log_jacobian` added to each example's NLL); for a Monte
    Carlo estimator also the standard error of the bits (``<unit>_stderr``, over examples:
    :func:`ratio_stderr`).

    Progress (``progress``) ticks at every network call, i.e. per time step of a bound."""
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
        nats, dims = [], []
        starts = range(0, n, cfg.batch_size)
        bar = Bar(None, desc=f"nll ({estimator})", unit="network call", enabled=progress)
        with seeded(cfg.seed, device), bar, counting_calls(method.networks().values(), bar):
            for i in starts:
                xb = to_device(index(x, slice(i, i + cfg.batch_size)), device)
                cb = None if cond is None else cond[i : i + cfg.batch_size].to(device)
                res = method.nll(Batch(xb, cb), estimator=estimator)
                nats.append(res.nll.detach().double().cpu() + jacobian)
                dims.append(res.num_dims.detach().double().cpu())
                if i == 0:  # every batch makes about as many calls as the first
                    bar.set_total(bar.count * len(starts))
        total_nats, total_dims = torch.cat(nats), torch.cat(dims)
        suffix = "" if estimator == "bound" else f"_{estimator}"
        out[f"{unit}{suffix}"] = float(total_nats.sum() / total_dims.sum()) / LN2
        if method.estimator_info(estimator).monte_carlo:
            out[f"{unit}{suffix}_stderr"] = ratio_stderr(total_nats, total_dims) / LN2
        out[f"nll_nats{suffix}"] = float(total_nats.sum()) / n
        out.update(
            {f"{k}{suffix}": v for k, v in data.likelihood_metrics(float(total_nats.sum()), x).items()}
        )
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
    """Likelihood and sample metrics; also returns the samples and their labels. The networks run
    in ``cfg.precision`` (bf16 autocast or fp32; ``None``: fp32, see
    :func:`~discodiff.precision.resolved_eval`)."""
    was_training = method.training
    method.eval()
    try:
        with network_precision(method, cfg.precision):
            metrics = likelihood(method, data, cfg, progress=progress)
        samples, cond = None, None
        if cfg.num_samples:
            with network_precision(method, cfg.precision):
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
