"""Host-device synchronizations in one training step, for every method (issue 16, Deliver 6).

A synchronization is any point where the host reads a tensor's value: ``Tensor.item`` and the
conversions that call it (``float``, ``int``, ``bool`` of a tensor, ``tolist``). On CUDA each one
stalls the host until the device has finished the queued work; on CPU they cost little, but the
same code runs on both, so they are counted on CPU. Two counts per config, for one
``Trainer.train_step()`` (data, loss, backward, clipping, AdamW, EMA; a step that is not a logging
step) on a small network:

- the profiler's: calls of ``aten::_local_scalar_dense`` (the op behind every ``item``) and
  ``aten::is_nonzero`` (``bool`` of a tensor) in a ``torch.profiler`` trace of the step
  (``tolist`` reads its values without a traced op, so it shows only in the next count);
- the places, which count every synchronization: the source line in ``discodiff`` of each
  conversion of a tensor that lives on the device, found by wrapping the ``Tensor`` conversion
  methods for the duration of the step. Host tensors (the batch before it moves to the device,
  checked there on purpose) are not synchronizations and are not counted.

Run:

    python benchmarks/host_syncs.py [--configs shakespeare/mdlm,toy2d/ddpm,...]

Writes ``host_syncs.json`` and ``host_syncs.md`` under ``benchmarks/results`` (or ``--json``).
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
import traceback
from pathlib import Path

import torch
from torch.profiler import profile

from discodiff import build as _build  # noqa: F401  (registers every component)
from discodiff.build import build_run
from discodiff.runconfig import load_config
from discodiff.train import Trainer
from timing import ROOT, machine, meta, meta_lines, write

TEXT = ["data.seq_len=64", "net.width=32", "net.depth=1", "net.heads=2", "train.batch_size=4"]
DEFAULT_CONFIGS = ",".join(
    [
        # every text config: each token and embedding method has one
        *(f"shakespeare/{p.stem}" for p in sorted((ROOT / "configs" / "shakespeare").glob("*.yaml"))),
        "toy2d/ddpm",
        "toy2d/sde_vp",
        "digits/ddpm",
        "graphs/planar",
    ]
)
OVERRIDES = {
    "shakespeare": TEXT,
    "toy2d": ["train.batch_size=64"],
    "digits": [
        "train.batch_size=8",
        "net.channels=8",
        "net.channel_mult=[1]",
        "net.num_res_blocks=1",
        "net.attention_resolutions=[]",
    ],
    "graphs": ["train.batch_size=4", "net.depth=1"],
}
CONVERSIONS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__")
PROFILED = ("aten::_local_scalar_dense", "aten::is_nonzero")
HOST_FRAMES = ("_micro_batches", "host_uniform")  # the batch before it moves; a CPU-generator draw


class SyncPlaces:
    """Counts the discodiff source lines that convert a tensor to a Python value while active,
    apart: ``device`` (synchronizations) and ``host`` (the trainer's host batch checks, and
    AdamW's reads of its step counters, which torch keeps on the CPU whatever the device)."""

    def __init__(self) -> None:
        self.device: collections.Counter[str] = collections.Counter()
        self.host: collections.Counter[str] = collections.Counter()
        self.active = False
        for name in CONVERSIONS:
            self._wrap(name)

    def _wrap(self, name: str) -> None:
        original = getattr(torch.Tensor, name)

        def converted(tensor, *args, **kwargs):
            if self.active:
                stack = traceback.extract_stack()[:-1]
                frames = [f for f in stack if "discodiff" in f.filename]
                if frames:
                    f = frames[-1]
                    place = f"{f.filename.split('src/')[-1]}:{f.lineno} `{f.line}`"
                    # torch.optim's step counters are CPU tensors on every device (not capturable)
                    host = any(g.name in HOST_FRAMES for g in frames) or "torch/optim" in stack[-1].filename
                    (self.host if host else self.device)[place] += 1
            return original(tensor, *args, **kwargs)

        setattr(torch.Tensor, name, converted)

    def clear(self) -> None:
        self.device.clear()
        self.host.clear()


def build_trainer(name: str, work: Path) -> Trainer:
    """A trainer of ``configs/NAME.yaml`` on a small network, whose steps are never logging steps."""
    overrides = [*OVERRIDES.get(name.split("/")[0], []), "train.precision=fp32", "train.log_every=1000000"]
    config = load_config(ROOT / "configs" / f"{name}.yaml", [*overrides, "train.steps=1000000"])
    torch.manual_seed(0)
    data, method = build_run(config)
    return Trainer(method, data, config.train, work, seed=0, device=torch.device("cpu"))


def count(name: str, places: SyncPlaces, work: Path) -> dict:
    """Profiler op counts and conversion places of one training step (after two warm-up steps:
    lazily built tables, first-call checks)."""
    trainer = build_trainer(name, work)
    trainer.method.train()
    for _ in range(2):
        trainer.train_step()
    with profile() as prof:
        trainer.train_step()
    ops = {e.key: e.count for e in prof.key_averages() if e.key in PROFILED}
    places.clear()
    places.active = True
    try:
        trainer.train_step()
    finally:
        places.active = False
    return {
        "profiler": {k: ops.get(k, 0) for k in PROFILED},
        "device": dict(places.device),
        "host": dict(places.host),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="config names under configs/")
    parser.add_argument("--json", type=Path, default=None, help="output JSON (markdown beside it)")
    args = parser.parse_args()
    started, start_machine = time.perf_counter(), machine()
    places = SyncPlaces()
    rows = {}
    with tempfile.TemporaryDirectory() as work:
        for name in args.configs.split(","):
            rows[name] = count(name, places, Path(work) / name.replace("/", "_"))
            print(name, sum(rows[name]["device"].values()), "device synchronizations", flush=True)
    info = meta(started) | {"machine": start_machine}
    results = {"configs": rows, "meta": info}
    lines = [
        "# Host synchronizations in one training step (`Trainer.train_step`, not a logging step)",
        "",
        *meta_lines(info),
        "",
        "Device: conversions of a tensor on the device (each a synchronization on CUDA). Host: the "
        "trainer's checks of the batch before it moves to the device (finite values, category ids) "
        "and AdamW's reads of its step counters (CPU tensors on every device), which read host "
        "memory; the profiler's counts include them.",
        "",
        "| config | device syncs | _local_scalar_dense | is_nonzero | device places | host places |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        device = "<br>".join(f"{place} ({n})" for place, n in r["device"].items()) or "none"
        host = "<br>".join(f"{place} ({n})" for place, n in r["host"].items()) or "none"
        lines.append(
            f"| {name} | {sum(r['device'].values())} | {r['profiler'][PROFILED[0]]} | "
            f"{r['profiler'][PROFILED[1]]} | {device} | {host} |"
        )
    write("host_syncs", results, "\n".join(lines) + "\n", json_path=args.json)


if __name__ == "__main__":
    main()
