"""Host-device synchronizations in one training step of every token method (issue 16, Deliver 6).

A synchronization is any point where the host reads a tensor's value: ``Tensor.item`` and the
conversions that call it (``float``, ``int``, ``bool`` of a tensor, ``tolist``). On CUDA each one
stalls the host until the device has finished the queued work; on CPU they cost little, but the
same code runs on both, so they are counted on CPU. Two counts per method, for one
``method.loss(batch).loss.backward()`` on a small transformer (the math, not the speed, matters):

- the profiler's: calls of ``aten::_local_scalar_dense`` (the op behind every ``item``) and
  ``aten::is_nonzero`` (``bool`` of a tensor) in a ``torch.profiler`` trace of the step
  (``tolist`` reads its values without a traced op, so it shows only in the next count);
- the places, which count every synchronization: the source line in ``discodiff`` of each
  conversion, found by wrapping the ``Tensor`` conversion methods for the duration of the step.

The trainer adds its own per step (``Trainer.train_step``: the finiteness check of the loss,
``float`` of the gradient norm and of the loss). Run:

    python benchmarks/host_syncs.py [--methods d3pm_uniform,...,ar]

Writes ``host_syncs.json`` and ``host_syncs.md`` under ``benchmarks/results`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import collections
import time
import traceback
from pathlib import Path

import torch
from torch.profiler import profile

from discodiff import build as _build  # noqa: F401  (registers every component)
from discodiff.base import METHODS, Batch
from discodiff.data import DataInfo
from discodiff.nets.transformer import Transformer, TransformerConfig
from discodiff.runconfig import load_config
from timing import ROOT, machine, meta, meta_lines, write

CONFIGS = ROOT / "configs" / "shakespeare"
DEFAULT_METHODS = "d3pm_uniform,d3pm_absorbing,mdlm,ctmc_uniform,udlm,sedd_absorb,sedd_uniform,ar"
CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
PROFILED = ("aten::_local_scalar_dense", "aten::is_nonzero")


class SyncPlaces:
    """Counts the discodiff source lines that convert a tensor to a Python value while active."""

    def __init__(self) -> None:
        self.places: collections.Counter[str] = collections.Counter()
        self.active = False
        for name in CONVERSIONS:
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        original = getattr(torch.Tensor, name)

        def converted(tensor, *args, **kwargs):
            if self.active:
                frames = [f for f in traceback.extract_stack()[:-1] if "discodiff" in f.filename]
                if frames:
                    f = frames[-1]
                    self.places[f"{f.filename.split('src/')[-1]}:{f.lineno} `{f.line}`"] += 1
            return original(tensor, *args, **kwargs)

        setattr(torch.Tensor, name, converted)


def build_method(name: str, vocab: int, length: int):
    config = load_config(CONFIGS / f"{name}.yaml").method
    info = DataInfo((length,), kind="tokens", vocab_size=vocab)
    net = TransformerConfig(width=32, depth=1, heads=2)
    return METHODS.get(config.name)(config.config, info, lambda spec: Transformer(spec, net))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=DEFAULT_METHODS, help="config names in configs/shakespeare")
    parser.add_argument("--vocab", type=int, default=66)
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    args = parser.parse_args()
    started, start_machine = time.perf_counter(), machine()
    torch.manual_seed(0)
    places = SyncPlaces()
    rows = {}
    for name in args.methods.split(","):
        method = build_method(name, args.vocab, 64).train()
        x0 = torch.randint(0, args.vocab, (4, 64))
        method.loss(Batch(x0)).loss.backward()  # warm-up: lazily built tables, first-call checks
        with profile() as prof:
            method.loss(Batch(x0)).loss.backward()
        counts = {e.key: e.count for e in prof.key_averages() if e.key in PROFILED}
        places.places.clear()
        places.active = True
        method.loss(Batch(x0)).loss.backward()
        places.active = False
        rows[name] = {"profiler": {k: counts.get(k, 0) for k in PROFILED}, "places": dict(places.places)}
    info = meta(started) | {"machine": start_machine}
    results = {"methods": rows, "meta": info}
    lines = [
        "# Host synchronizations in one training step (method.loss + backward)",
        "",
        *meta_lines(info),
        "",
        "The trainer adds three per step (finiteness of the loss, float of the gradient norm and of "
        "the loss).",
        "",
        "| method | _local_scalar_dense | is_nonzero | places (count) |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        where = "<br>".join(f"{place} ({n})" for place, n in r["places"].items())
        lines.append(f"| {name} | {r['profiler'][PROFILED[0]]} | {r['profiler'][PROFILED[1]]} | {where} |")
    write("host_syncs", results, "\n".join(lines) + "\n", json_path=args.json)


if __name__ == "__main__":
    main()
