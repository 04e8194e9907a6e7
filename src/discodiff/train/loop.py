"""The training loop. It talks to the model only through ``Method.loss`` (and, for evaluation,
``nll`` / ``sample``), whatever the method is.

Per step: draw the global batch and check it on the host, keep this rank's rows, compute the loss
and its gradient (bf16 autocast if asked) over ``grad_accum`` micro-batches, clip, AdamW step, EMA
update. The step reads nothing back from the device (no host synchronization, which on CUDA would
stall the queue): the loss, gradient norm and metrics stay tensors, and whether they were finite
is read at logging steps and before every checkpoint, evaluation and sample, where a non-finite
value stops the run naming the first step it appeared at (the last good checkpoint stays).
Checkpoints hold everything needed to continue exactly: weights, EMA, optimizer, torch RNG states,
the data stream's position and the step.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..base import Batch, Method
from ..data.base import DataSource
from ..errors import CheckpointError, ConfigError, TrainingError
from ..progress import Bar, LossWindow, train_line
from ..runconfig import TrainConfig
from ..state import check_finite, check_ids, deferred_checks, index, to_device
from ..utils import native_bf16
from .checkpoint import (
    Checkpoint,
    latest_checkpoint,
    load_newest,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_latest,
    save_checkpoint,
    set_latest,
    step_name,
)
from .distributed import DistInfo
from .ema import EMA
from .lr import lr_at
from .optim import param_groups
from .rundir import MetricsLog

__all__ = ["Trainer", "TrainingError", "native_bf16"]


class _LossModule(nn.Module):
    """``forward(batch) = method.loss(batch)`` as a tuple, so DDP can wrap the loss."""

    def __init__(self, method: Method) -> None:
        super().__init__()
        self.method = method

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor, dict[str, Tensor | float]]:
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
        if config.precision == "bf16" and not native_bf16(device) and self.dist.is_main:
            print(
                "train: precision bf16 on a CPU without bf16 instructions: torch emulates it, far "
                "slower than fp32 (70x in a matmul on an AVX2 EPYC); train.precision: fp32 is faster",
                file=sys.stderr,
                flush=True,
            )
        groups = param_groups(method, config.weight_decay)
        if not any(g["params"] for g in groups):
            raise ValueError("the model has no trainable parameters")
        self.opt = torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2))
        self.ema = EMA(method, config.ema_decay) if config.ema_decay > 0 else None
        self.stream = data.train_stream(seed)
        self.step = 0
        self.loss_window = LossWindow()  # the loss since the last log line, summed on the device
        self.train_seconds = 0.0  # wall-clock seconds in fit(), over every call and resume
        self.stopped_by = "steps"  # why the last fit() ended: steps | time_budget
        self.ckpt_root = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.metrics = MetricsLog(self.metrics_path)
        self._saved_step: int | None = None  # the step of the checkpoint on disk, when known
        self._unchecked: list[tuple[int, Tensor, Tensor]] = []  # (step, loss, grad norm) not yet read
        module = _LossModule(method)
        self.loss_module = DistributedDataParallel(module) if self.dist.world_size > 1 else module

    # ---- checkpoints -------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only; skipped when this step's is already on disk); returns
        its directory."""
        self.check_finite()  # never save weights a non-finite step has touched
        if not self.dist.is_main:
            return None
        if self._saved_step == self.step:
            return self.ckpt_root / step_name(self.step)
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
        state = {
            "optimizer": opt_meta,
            "time": time.time(),
            "train_seconds": self.train_seconds,
            "loss_window": self.loss_window.state(),
        }
        path = save_checkpoint(
            self.ckpt_root, Checkpoint(self.step, tensors, state), keep=self.config.keep_checkpoints
        )
        self._saved_step = self.step
        return path

    def resume(self) -> int:
        """Continue from the newest intact checkpoint (``latest``, or an older one with a warning
        when it is damaged; ``latest`` is then pointed at it); returns its step."""
        path, ckpt = load_newest(self.ckpt_root)
        if self.dist.is_main and read_latest(self.ckpt_root) != path.name:
            set_latest(self.ckpt_root, path)
        try:
            self.method.load_state_dict(ckpt.group("model"))
        except RuntimeError as err:
            raise CheckpointError(
                f"checkpoint {path} does not fit this model: {' '.join(str(err).split())[:400]}"
            ) from None
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
        self.step = self._saved_step = ckpt.step
        self.train_seconds = float(ckpt.state.get("train_seconds", 0.0))
        self.loss_window.load(ckpt.state.get("loss_window", [0.0, 0.0]))
        return self.step

    def last_checkpoint(self) -> str:
        try:
            path = latest_checkpoint(self.ckpt_root) if self.ckpt_root.exists() else None
        except CheckpointError:
            path = None
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
        self.check_finite()
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
            self.metrics.append(record)

    def budget_message(self, seconds: float) -> str:
        """The one line said when the time budget ends training early."""
        cfg = self.config
        lr = lr_at(
            self.step, peak=cfg.lr, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio
        )
        return (
            f"train: time budget of {cfg.time_budget_s:g} s reached after {seconds:.1f} s at step "
            f"{self.step} of {cfg.steps} planned (learning rate {lr:.2g}, its schedule planned for "
            f"{cfg.steps} steps); --resume continues the run"
        )

    # ---- the loop ----------------------------------------------------------------------------

    def _micro_batches(self) -> list[Batch]:
        """This rank's rows of the step's global batch as ``grad_accum`` micro-batches: micro-batch
        k holds global rows [k m, (k + 1) m) with m = batch_size / grad_accum, each rank its share
        of them; ``rows`` places them in the global batch (see :meth:`_forward_backward`)."""
        size, n = self.config.batch_size, self.config.grad_accum
        x, cond = self.stream.next(size)
        check_finite(x, f"the training batch of step {self.step + 1}")
        check_ids(x, self.data.info, f"the training batch of step {self.step + 1}")
        micro = size // n
        if micro % self.dist.world_size:
            raise ConfigError(
                f"train.batch_size / train.grad_accum = {micro} must be divisible by the number of "
                f"processes ({self.dist.world_size})"
            )
        batches = []
        for start in range(0, size, micro):
            offset, count = self.dist.rows(micro)
            rows = slice(start + offset, start + offset + count)
            xb = to_device(index(x, rows), self.device, non_blocking=True)
            cb = None if cond is None else cond[rows].to(self.device)
            batches.append(Batch(xb, cb, rows=(rows.start, size)))
        return batches

    def _forward_backward(self, batches: list[Batch]) -> tuple[Tensor, dict[str, float]]:
        """Loss and gradients of the step's batch, accumulated over its micro-batches.

        A micro-batch's loss is the mean over its rows, so the mean of the N losses is the loss of
        the whole batch and the gradients of loss / N add up to its gradient. Before each
        micro-batch after the first, torch's RNG goes back to its state at the start of the step:
        every micro-batch draws the noise of the whole global batch and keeps its rows
        (``Batch.rows``), so N micro-batches draw exactly the noise of one big batch and leave the
        RNG where one big batch leaves it (exact resume). Randomness drawn inside the network
        (dropout) repeats in every micro-batch, as it repeats on every data-parallel rank. Under
        DDP the first N - 1 backward passes run in ``no_sync``: gradients are all-reduced once.
        """
        n = len(batches)
        ddp = isinstance(self.loss_module, DistributedDataParallel)
        cuda = self.device.type == "cuda"
        rng = (
            (torch.get_rng_state(), torch.cuda.get_rng_state(self.device) if cuda else None)
            if n > 1
            else None
        )
        precision = torch.autocast(
            self.device.type, dtype=torch.bfloat16, enabled=self.config.precision == "bf16"
        )
        total, sums = None, {}
        for k, batch in enumerate(batches):
            if k > 0:
                torch.set_rng_state(rng[0])
                if cuda:
                    torch.cuda.set_rng_state(rng[1], self.device)
            with self.loss_module.no_sync() if ddp and k < n - 1 else nullcontext():
                with precision:
                    loss, _, metrics = self.loss_module(batch)
                (loss / n).backward()
            total = loss.detach() / n if total is None else total + loss.detach() / n
            for key, value in metrics.items():
                sums[key] = sums.get(key, 0.0) + value / n
        return total, sums

    def train_step(self) -> dict[str, Tensor | float]:
        """One optimizer step; returns what it logs, as tensors left on the device (:meth:`fit`
        reads them at logging steps; :meth:`check_finite` says whether they were finite)."""
        cfg = self.config
        lr = lr_at(
            self.step, peak=cfg.lr, warmup=cfg.warmup_steps, total=cfg.steps, min_ratio=cfg.min_lr_ratio
        )
        for group in self.opt.param_groups:
            group["lr"] = lr
        batches = self._micro_batches()
        with self.stop_on_nonfinite(self.step + 1), deferred_checks():  # see the module docstring
            self.opt.zero_grad(set_to_none=True)
            loss, metrics = self._forward_backward(batches)
        self.loss_window.add(loss)
        params = [p for g in self.opt.param_groups for p in g["params"]]
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self._unchecked.append((self.step + 1, loss.detach(), grad_norm.detach()))
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.method)
        self.step += 1
        return {"loss": loss.detach(), "lr": lr, "grad_norm": grad_norm.detach(), **metrics}

    def check_finite(self) -> None:
        """Read the losses and gradient norms of the steps since the last check (one host
        synchronization) and stop the run at the first non-finite one: a :class:`TrainingError`
        naming its step and the last good checkpoint."""
        if not self._unchecked:
            return
        steps, pending = [s for s, _, _ in self._unchecked], self._unchecked
        self._unchecked = []
        values = torch.stack([torch.stack([loss.float(), norm.float()]) for _, loss, norm in pending])
        values = values.cpu()
        bad = (~torch.isfinite(values)).any(dim=1)
        if bool(bad.any()):
            i = int(bad.nonzero()[0])
            loss, norm = values[i].tolist()
            with self.stop_on_nonfinite(steps[i]):
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss became {loss}")
                raise FloatingPointError(f"gradient norm became {norm}")

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
        if self.dist.is_main:
            self.metrics.truncate(self.step)  # records past this step belong to an abandoned run
        seconds_before = self.train_seconds
        bar = Bar(
            stop,
            desc="train",
            unit="step",
            enabled=progress and self.dist.is_main,
            initial=self.step,
            own_lines=True,
            leave=True,
        )
        window_start, window_steps = time.perf_counter(), 0
        self.stopped_by = "steps"
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
                self.check_finite()
                rate = window_steps * cfg.batch_size / (time.perf_counter() - window_start)
                rec = {k: float(v) for k, v in rec.items()}  # host reads only at logging steps
                rec["loss"] = self.loss_window.pop_mean()  # the mean over the window, not one batch
                elapsed = time.perf_counter() - start_time
                bar.set_postfix(loss=f"{rec['loss']:.4g}", ex_s=f"{rate:.0f}")
                record = {"kind": "train", "step": self.step, "examples_per_s": rate, "elapsed_s": elapsed}
                record.update(rec)
                self.log(record)
                if bar.plain:
                    bar.write(train_line(self.step, cfg.steps, record))
                window_start, window_steps = time.perf_counter(), 0
            if last:
                break
            if cfg.eval_every and self.step % cfg.eval_every == 0 and on_eval:
                self.check_finite()
                with self.stop_on_nonfinite(self.step, " (periodic evaluation)"):
                    on_eval(self)
            if cfg.sample_every and self.step % cfg.sample_every == 0 and on_sample:
                self.check_finite()
                with self.stop_on_nonfinite(self.step, " (periodic samples)"):
                    on_sample(self)
            if self.step % cfg.ckpt_every == 0:
                self.train_seconds = seconds_before + time.perf_counter() - start_time
                self.save()
        self.train_seconds = seconds_before + time.perf_counter() - start_time
        bar.close()
        if self.step < stop:
            self.stopped_by = "time_budget"
            if self.dist.is_main:
                print(self.budget_message(time.perf_counter() - start_time), file=sys.stderr, flush=True)
        self.save()
        self.dist.barrier()
        return self.step
