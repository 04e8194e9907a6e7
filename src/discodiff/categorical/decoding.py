r"""Samplers of masked diffusion: ancestral (with or without caching), argmax and confidence-ordered
decoding, infilling, and semi-autoregressive windows for sequences longer than training.

Every sampler walks the times :meth:`MaskedDiffusion.time_grid` from 1 to 0 (``steps`` steps) and
updates only [MASK] positions; a token, once unmasked, never changes (SUBS carry-over), so known
tokens, written into the start state, are kept exactly. Draws use
:func:`~discodiff.categorical.sampling.sample_categorical` (Gumbel-max in float64) on the masked
positions only, after :func:`~discodiff.categorical.sampling.sharpen` (temperature, top-p).

- ``ancestral``: an exact draw of :math:`p_\theta(x_s|x_t)` per step: a masked token unmasks with
  probability :math:`(\alpha_s-\alpha_t)/(1-\alpha_t)` to :math:`x_0 \sim \hat p(x_0|x_t)`
  (:func:`~discodiff.categorical.masked.unmask_log_probs`; one categorical over the K + 1 states).
- ``caching``: the same draws; the network runs only on the rows (sequences) whose tokens changed
  since its last evaluation, and the others reuse that output (Sahoo et al. 2024, Sec. 4.2, per
  sequence instead of per batch). Exact when the network ignores t (``time_conditioning: false``):
  then the samples equal ``ancestral``'s for the same generator.
- ``argmax``: ``ancestral`` with temperature 0: the same random unmasking times, each token the
  most likely one. (The mode of the whole reverse step is degenerate for masked diffusion:
  "stay masked" wins every step but the last.)
- ``confidence``: MaskGIT-style (Chang et al. 2022, Sec. 3.2): after the step to s, a row keeps
  :math:`\mathrm{round}(n\,(1-\alpha_s)/(1-\alpha_1))` of its n generated positions masked. Every
  masked position draws a candidate :math:`\hat x \sim` sharpened :math:`\hat p`; the positions with
  the highest confidence :math:`\hat p(\hat x|x_t)` (the unsharpened probability of the drawn token;
  ties: the lower position first; no added noise) take their candidates.

``SampleOutput.nfe`` is the number of network evaluations per sequence: with caching, the mean over
the batch, rounded up (a guided evaluation counts as two).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..base import SampleOutput
from .masked_process import masked_reverse_logits, relative_noise, unmask_log_probs
from .sampling import sample_categorical, sample_inverse_cdf, sharpen, uniform

if TYPE_CHECKING:
    from .masked import MaskedDiffusion

TRAJECTORY_POINTS = 9
"""How many times of each window a recorded trajectory keeps (evenly spaced, ends included)."""


@dataclass(frozen=True)
class DecodeOptions:
    """One ``sample`` call's choices (see the module docstring)."""

    sampler: str  # ancestral | caching | argmax | confidence
    steps: int  # steps per window
    temperature: float  # applied to p(x0|x_t); 0: argmax tokens
    top_p: float  # nucleus mass
    guidance_scale: float  # classifier-free guidance; 1: none
    block_size: int  # new tokens per window after the first (semi-autoregressive generation)


class Denoiser:
    r"""Calls ``method.denoise``; with ``cache``, only on rows whose tokens changed since their last call.

    Counts network evaluations per row in :attr:`evaluations` (two for a guided evaluation).
    """

    def __init__(
        self, method: MaskedDiffusion, cond: Tensor | None, guidance_scale: float, *, cache: bool
    ) -> None:
        self.method, self.cond, self.guidance_scale, self.cache = method, cond, guidance_scale, cache
        self.last_x: Tensor | None = None
        self.last_out: Tensor | None = None
        self.evaluations = 0

    def _run(self, x: Tensor, t: Tensor, rows: Tensor | None) -> Tensor:
        cond = self.cond if self.cond is None or rows is None else self.cond[rows]
        self.evaluations += x.shape[0] * (1 if self.guidance_scale == 1.0 else 2)
        return self.method.denoise(x, t, cond, guidance_scale=self.guidance_scale)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        r""":math:`\log\hat p(x_0|x_t)` ``(B, L, K)`` for ``x`` ``(B, L)`` at times ``t`` ``(B,)``."""
        if not self.cache:
            return self._run(x, t, None)
        if self.last_x is None:
            self.last_out = self._run(x, t, None)
        else:
            rows = (x != self.last_x).any(dim=1).nonzero().squeeze(1)
            if len(rows) > 0:
                self.last_out[rows] = self._run(x[rows], t[rows], rows)
        self.last_x = x.clone()
        return self.last_out


def unmask_step(
    method: MaskedDiffusion, x: Tensor, log_p0: Tensor, s: Tensor, t: Tensor, opts: DecodeOptions, generator
) -> Tensor:
    r"""One ancestral step t -> s: a draw of :math:`p_\theta(x_s|x_t)` on the masked positions of ``x``."""
    masked = x == method.mask_id
    if not bool(masked.any()):
        return x
    rows = masked.nonzero()[:, 0]
    log_move, log_stay = unmask_log_probs(method.schedule, s, t)  # (B,) float64
    log_p0 = sharpen(log_p0[masked].double(), temperature=opts.temperature, top_p=opts.top_p)  # (M, K)
    logits = masked_reverse_logits(log_p0, log_move[rows, None], log_stay[rows, None])  # (M, K + 1)
    out = x.clone()
    out[masked] = sample_categorical(logits, generator=generator)
    return out


def confidence_step(
    method: MaskedDiffusion, x: Tensor, log_p0: Tensor, keep_masked: Tensor, opts: DecodeOptions, generator
) -> Tensor:
    """Unmask all but ``keep_masked`` ``(B,)`` masked positions per row, the most confident first."""
    masked = x == method.mask_id
    unmask = (masked.sum(dim=1) - keep_masked).clamp(min=0)  # (B,)
    if not bool((unmask > 0).any()):
        return x
    log_p0 = log_p0[masked].double()  # (M, K)
    draw = sample_categorical(
        sharpen(log_p0, temperature=opts.temperature, top_p=opts.top_p), generator=generator
    )
    score = torch.full(x.shape, -math.inf, dtype=torch.float64, device=x.device)
    score[masked] = log_p0.gather(-1, draw[:, None]).squeeze(-1)
    order = torch.sort(score, dim=1, descending=True, stable=True).indices  # ties: lower position first
    positions = torch.arange(x.shape[1], device=x.device).expand_as(order)
    rank = torch.empty_like(order).scatter_(1, order, positions)
    candidates = x.clone()
    candidates[masked] = draw
    return torch.where(masked & (rank < unmask[:, None]), candidates, x)


def sample_window(
    method: MaskedDiffusion,
    x: Tensor,
    opts: DecodeOptions,
    denoiser: Denoiser,
    generator: torch.Generator | None,
    trajectory: list[tuple[float, Tensor]] | None,
    progress: bool,
) -> Tensor:
    """Run the sampler over one window ``x`` ``(B, L)`` (masked positions are generated) to t = 0."""
    times = method.time_grid(opts.steps)
    generated = (x == method.mask_id).sum(dim=1)  # (B,)
    all_mask_noise = relative_noise(method.schedule, torch.ones(1, dtype=torch.float64, device=x.device))
    keep = set(torch.linspace(0, opts.steps, min(TRAJECTORY_POINTS, opts.steps + 1)).round().long().tolist())
    pairs = list(itertools.pairwise(times))
    for k, (t_now, s_next) in enumerate(tqdm(pairs, desc=opts.sampler, disable=not progress, leave=False)):
        t = torch.full((x.shape[0],), t_now, dtype=torch.float64, device=x.device)
        s = torch.full_like(t, s_next)
        log_p0 = denoiser(x, t)
        if opts.sampler == "confidence":
            fraction = torch.expm1(-relative_noise(method.schedule, s)) / torch.expm1(-all_mask_noise)
            x = confidence_step(method, x, log_p0, torch.round(generated * fraction).long(), opts, generator)
        else:
            x = unmask_step(method, x, log_p0, s, t, opts, generator)
        if trajectory is not None and k + 1 in keep:
            trajectory.append((s_next, x.clone()))
    return x


def generate(
    method: MaskedDiffusion,
    shape: tuple[int, ...],
    opts: DecodeOptions,
    cond: Tensor | None,
    known: tuple[Tensor, Tensor] | None,
    generator: torch.Generator | None,
    *,
    trajectory: bool,
    progress: bool,
) -> SampleOutput:
    """``shape = (N, L')`` sequences, window by window (module docstring of :mod:`.masked`)."""
    N, length = shape
    L = method.event_shape[0]
    device = method.device
    canvas = torch.full((N, max(length, L)), method.mask_id, dtype=torch.long, device=device)
    if known is not None:
        canvas[:, :length] = torch.where(known[1], known[0], canvas[:, :length])
    prior = method.transition.log_prior().to(device)  # (K + 1,), shared by every token
    record: list[tuple[float, Tensor]] | None = [] if trajectory else None
    evaluations = 0
    for start, end in window_bounds(length, L, opts.block_size):
        window = canvas[:, start:end]
        draw = sample_inverse_cdf(prior, uniform((N, L), generator=generator, device=device))
        x = torch.where(window == method.mask_id, draw, window)  # x_1 ~ p(x_1): all [MASK] if alpha_1 = 0
        frames: list[tuple[float, Tensor]] | None = [(1.0, x)] if record is not None else None
        denoiser = Denoiser(method, cond, opts.guidance_scale, cache=opts.sampler == "caching")
        canvas[:, start:end] = sample_window(method, x, opts, denoiser, generator, frames, progress)
        evaluations += denoiser.evaluations
        if record is not None:
            record.extend((t, _place(canvas, frame, start)) for t, frame in frames)
    return SampleOutput(canvas[:, :length].clone(), record or [], math.ceil(evaluations / N))


def window_bounds(length: int, L: int, block_size: int) -> list[tuple[int, int]]:
    """Windows ``[start, end)`` of L tokens covering ``max(length, L)`` positions: ``[0, L)``, then
    each next window ends ``block_size`` tokens later (the last one at ``length``), so it holds
    ``L - block_size`` already generated tokens as context and generates the rest."""
    bounds = [(0, L)]
    while bounds[-1][1] < length:
        end = min(bounds[-1][1] + block_size, length)
        bounds.append((end - L, end))
    return bounds


def _place(canvas: Tensor, window: Tensor, start: int) -> Tensor:
    """A copy of ``canvas`` with ``window`` written at ``start`` (a trajectory frame)."""
    frame = canvas.clone()
    frame[:, start : start + window.shape[1]] = window
    return frame
