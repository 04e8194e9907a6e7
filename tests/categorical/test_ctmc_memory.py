"""K = 50,257 (GPT-2's vocabulary): the continuous-time losses with their backward pass and a
sampling step run matrix-free, with peak memory a small multiple of the (B, L, K) float32 logits.

Each case runs in a fresh interpreter and reports the growth of its peak resident set size over
the state after a one-example warm-up, divided by the size of the logits (B = 4, L = 128: 103 MB).
Measured on the development machine: two sampling steps (a tau-leaping, Euler or PC step, then
the analytic step) 3.3-5.0x; loss + backward 4.5-8.6x (the loss is measured after sampling in the
same process, so it reads at least the sampling peak). A K x K float32 matrix alone would be 10 GB
(98x). Two of the five cases are marked slow (about 6 s each on an idle machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

LOSS_LIMIT = 10.0  # allowed peak / logits for loss + backward
SAMPLE_LIMIT = 8.0  # allowed peak / logits for a sampling step

PROBE = """
import resource, sys
import torch
from torch import nn
from discodiff.base import Batch
from discodiff.categorical import CTMC, SEDD, AbsorbingTransition, ContinuousTimeOptions, UniformTransition
from discodiff.schedules import GeometricSchedule, LogLinearSchedule

torch.set_num_threads(1)
name, sampler = sys.argv[1], sys.argv[2]
K, B, L = 50257, 4, 128
absorbing = "absorbing" in name
if absorbing:
    transition = AbsorbingTransition(LogLinearSchedule(), K)
else:
    transition = UniformTransition(GeometricSchedule(), K)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(transition.num_states, 8)
        self.out = nn.Linear(8, K)

    def forward(self, x, t, cond=None):
        return self.out(self.embed(x) + t[:, None, None])


options = ContinuousTimeOptions()
if name.startswith("sedd"):
    method = SEDD(Net(), transition, options, scale_by_sigma=absorbing, event_shape=(L,))
else:
    reverse = "d3pm" if name == "udlm" else "average"
    method = CTMC(Net(), transition, options, reverse=reverse, event_shape=(L,))
x0 = torch.randint(0, K, (B, L), generator=torch.Generator().manual_seed(0))
torch.manual_seed(0)
method.loss(Batch(x0[:1])).loss.backward()
method.sample(1, steps=2, sampler=sampler)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
x = method.sample(B, steps=2, sampler=sampler, generator=torch.Generator().manual_seed(0)).x
assert x.shape == (B, L) and int(x.max()) < K
sample_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = method.loss(Batch(x0))
out.loss.backward()
assert torch.isfinite(out.loss)
loss_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # a high-water mark: >= sample_peak
logits = B * L * K * 4
print((sample_peak - base) * 1024 / logits, (loss_peak - base) * 1024 / logits)
"""


def _peak_ratios(name: str, sampler: str) -> tuple[float, float]:
    """(sampling, loss + backward) peak growth over the logits size, in one fresh interpreter."""
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    result = subprocess.run(
        [sys.executable, "-c", PROBE, name, sampler], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    sample, loss = result.stdout.strip().splitlines()[-1].split()
    return float(sample), float(loss)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
@pytest.mark.parametrize(
    ("name", "sampler"),
    [
        ("ctmc-uniform", "tau_leaping"),
        pytest.param("ctmc-absorbing", "euler", marks=pytest.mark.slow),
        ("udlm", "pc"),
        ("sedd-absorbing", "analytic"),
        pytest.param("sedd-uniform", "tau_leaping", marks=pytest.mark.slow),
    ],
)
def test_large_vocabulary_runs_in_a_small_multiple_of_the_logits(name, sampler):
    sample, loss = _peak_ratios(name, sampler)
    assert 0 < sample <= SAMPLE_LIMIT, f"{name} {sampler}: sampling peak {sample:.2f}x the logits"
    assert 0 < loss <= LOSS_LIMIT, f"{name}: loss + backward peak {loss:.2f}x the logits"
