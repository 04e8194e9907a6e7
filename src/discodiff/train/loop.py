"""The training loop. It talks to the model only through ``Method.loss`` (and, for evaluation,
``nll`` / ``sample``), whatever the method is.

Per step: draw the global batch, keep this rank's rows, compute the loss (bf16 autocast if asked),
stop on a non-finite loss or gradient (the last good checkpoint stays), clip, AdamW step, EMA
update, log. Checkpoints hold everything needed to continue exactly: weights, EMA, optimizer,
torch RNG states, the data stream's position and the step.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from ..base import Batch, Method
from ..data.base import DataSource
from ..errors import TrainingError
from ..runconfig import TrainConfig
from ..state import check_finite, index, to_device
from .checkpoint import (
    Checkpoint,
    CheckpointError,
    latest_checkpoint,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    save_checkpoint,
)
from .distributed import DistInfo
from .ema import EMA
from .lr import lr_at
from .optim import param_groups


class _LossModule(nn.Module):
    """``forward(batch) = method.loss(batch)`` as a tuple, so DDP can wrap the loss."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, float]]:
        out = self.method.loss(batch)
        return out.loss, out.per_example, out.metrics


Hook = Callable[["Trainer"], None]


class Trainer:
    """Owns the optimizer, EMA, data stream and checkpoints of one run."""

    def __init__(
        self,
        method: Method,
        data: DataSource,
        config: TrainConfig,
        run_dir: Path,
        *,
        seed: int,
        device: torch.device,
        dist: DistInfo | None = None,
    ) -> None:
        self.method, self.data, self.config = method, data, config
        self.run_dir, self.device = Path(run_dir), device
        self.dist = dist or DistInfo()
        groups = param_groups(method, config.weight_decay)
        if not any(g["params"] for g in groups):
            raise ValueError("the model has no trainable parameters")
        self.opt = torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
        self.ema = EMA(method, config.ema_decay) if config.ema_decay > 0 else None
        self.stream = data.train_stream(seed)
        self.step = 0
        self.ckpt_root = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        module = _LossModule(method)
        self.loss_module = DistributedDataParallel(module) if self.dist.world_size > 1 else module

    # ---- checkpoints -------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only); returns its directory."""
        if not self.dist.is_main:
            return None
        opt_tensors, opt_meta = optimizer_to_tensors(self.opt)
        tensors = {
            "model": self.method.state_dict(),
            "optim": opt_tensors,
            "stream": self.stream.state_dict(),
            "rng": {"cpu": torch.get_rng_state()},
        }
        if self.device.type == "cuda":
            tensors["rng"]["cuda"] = torch.cuda.get_rng_state(self.device)
        if self.ema is not None:
            tensors["ema"] = self.ema.state_tensors()
        state = {"optimizer": opt_meta, "time": time.time()}
        return save_checkpoint(
            self.ckpt_root, Checkpoint(self.step, tensors, state), keep=self.config.keep_checkpoints
        )

    def resume(self) -> int:
        """Continue from the latest checkpoint; returns its step."""
        path = latest_checkpoint(self.ckpt_root)
        if path is None:
            raise CheckpointError(f"no checkpoint to resume from in {self.ckpt_root}")
        ckpt = load_checkpoint(path)
        try:
            self.method.load_state_dict(ckpt.group("model"))
        except RuntimeError as err:
            raise CheckpointError(f"checkpoint {path} does not fit this model: {err}") from None
        try:
            optimizer_from_tensors(self.opt, ckpt.group("optim"), ckpt.state["optimizer"])
        except ValueError as err:  # e.g. one parameter group, saved before weight decay had two
            raise CheckpointError(f"checkpoint {path}: its optimizer state does not fit: {err}") from None
        if self.ema is not None:
            self.ema.load_state_tensors(ckpt.group("ema"))
        self.stream.load_state_dict(ckpt.group("stream"))
        torch.set_rng_state(ckpt.group("rng")["cpu"])
        if self.device.type == "cuda" and "cuda" in ckpt.group("rng"):
            torch.cuda.set_rng_state(ckpt.group("rng")["cuda"], self.device)
        self.step = ckpt.step
        return self.step

    def last_checkpoint(self) -> str:
        path = latest_checkpoint(self.ckpt_root) if self.ckpt_root.exists() else None
        return f"{path} (step {path.name.split('_')[-1].lstrip('0') or 0})" if path else "none yet"

    @contextmanager
    def stop_on_nonfinite(self, step: int, during: str = "") -> Iterator[None]:
        """Turn a non-finite value a method detects (``FloatingPointError``: network output, loss,
        gradient, bound, samples) into the run's stop: a :class:`TrainingError` naming the step
        and the last good checkpoint."""
        try:
            yield
        except FloatingPointError as err:
            raise TrainingError(
                f"{err} at step {step}{during}; training stopped. The last good checkpoint is "
                f"{self.last_checkpoint()}; lower train.lr or check the data, then resume with --resume"
            ) from err

    @contextmanager
    def averaged(self) -> Iterator[Method]:
        """The model with its EMA weights (when kept) loaded, in eval mode, for evaluation."""
        with self.ema.applied(self.method) if self.ema else nullcontext():
            was_training = self.method.training
            self.method.eval()
            try:
                yield self.method
            finally:
                self.method.train(was_training)

    # ---- logging -----------------------------------------------------------------------------

    def log(self, record: dict) -> None:
        if self.dist.is_main:
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    # ---- the loop ----------------------------------------------------------------------------

    def _batch(self) -> Batch:
        x, cond = self.stream.next(self.config.batch_size)
        check_finite(x, f"the training batch of step {self.step + 1}")
        offset, count = self.dist.rows(self.config.batch_size)
        x = to_device(index(x, slice(offset, offset + count)), self.device, non_blocking=True)
        cond = None if cond is None else cond[offset : offset + count].to(self.device)
        return Batch(x, cond, rows=(offset, self.config.batch_size))

    def train_step(self) -> dict[str, float]:
        """One optimizer step; returns what it logs."""
        cfg = self.config
        lr = lr_at(
            self.step, peak=cfg.lr, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = self._batch()
        with self.stop_on_nonfinite(self.step + 1):
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                loss, _, metrics = self.loss_module(batch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {float(loss.detach())}")
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for g in self.opt.param_groups for p in g["params"]]
            max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
            if not math.isfinite(grad_norm):
                raise FloatingPointError(f"gradient norm became {grad_norm}")
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.method)
        self.step += 1
        return {"loss": float(loss.detach()), "lr": lr, "grad_norm": grad_norm, **metrics}

    def fit(
        self,
        *,
        max_steps: int | None = None,
        progress: bool = True,
        on_eval: Hook | None = None,
        on_sample: Hook | None = None,
    ) -> int:
        """Train until ``config.steps`` (or ``max_steps`` in this call, or the time budget);
        checkpoint at the end. Returns the final step."""
        cfg = self.config
        stop = cfg.steps if max_steps is None else min(cfg.steps, self.step + max_steps)
        start_time = time.perf_counter()
        bar = tqdm(
            total=stop,
            initial=self.step,
            desc="train",
            disable=not (progress and self.dist.is_main),
            dynamic_ncols=True,
        )
        window_start, window_steps = time.perf_counter(), 0
        self.method.train()
        while self.step < stop:
            rec = self.train_step()
            window_steps += 1
            bar.update(1)
            over_budget = self.dist.any(
                cfg.time_budget_s is not None and time.perf_counter() - start_time > cfg.time_budget_s
            )
            last = self.step == stop or over_budget
            if self.step % cfg.log_every == 0 or last:
                rate = window_steps * cfg.batch_size / (time.perf_counter() - window_start)
                bar.set_postfix(loss=f"{rec['loss']:.4g}", ex_s=f"{rate:.0f}")
                elapsed = time.perf_counter() - start_time
                self.log(
                    {"kind": "train", "step": self.step, "examples_per_s": rate, "elapsed_s": elapsed, **rec}
                )
                window_start, window_steps = time.perf_counter(), 0
            if last:
                break
            if cfg.eval_every and self.step % cfg.eval_every == 0 and on_eval:
                with self.stop_on_nonfinite(self.step, " (periodic evaluation)"):
                    on_eval(self)
            if cfg.sample_every and self.step % cfg.sample_every == 0 and on_sample:
                with self.stop_on_nonfinite(self.step, " (periodic samples)"):
                    on_sample(self)
            if self.step % cfg.ckpt_every == 0:
                self.save()
        bar.close()
        self.save()
        self.dist.barrier()
        return self.step
