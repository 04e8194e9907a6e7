"""The training step reads nothing back from the device (issue 16, Deliver 6): no ``item``,
``float``, ``bool`` or ``tolist`` of a device tensor in ``Trainer.train_step`` outside logging
steps, counted with ``benchmarks/host_syncs.py``'s wrapper of the ``Tensor`` conversions."""

import importlib.util
import math

import pytest
import torch

from discodiff.errors import TrainingError

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host_syncs():
    import sys

    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        spec = importlib.util.spec_from_file_location("host_syncs", ROOT / "benchmarks" / "host_syncs.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module, module.SyncPlaces()
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


CONFIGS = [
    "shakespeare/d3pm_uniform",
    "shakespeare/mdlm",
    "shakespeare/sedd_absorb",
    "shakespeare/ar",
    "shakespeare/cdcd",
    "shakespeare/discrete_flow",
    "toy2d/ddpm",
    "toy2d/sde_vp",
    "digits/ddpm",  # the hybrid loss: its decoder term
    "graphs/planar",
]


@pytest.mark.parametrize("name", CONFIGS)
def test_training_step_makes_no_device_synchronization(name, host_syncs, tmp_path):
    """Mutations: read the loss back in ``Trainer.train_step`` (``float(loss)``, the old
    finiteness check), or the metric in ``MaskedDiffusion.loss`` / ``D3PM.loss`` (the old
    ``float(bound.mean())`` / ``.tolist()``), or drop ``deferred_checks()`` around the step (the
    id-range check of the batch then reads the device): each makes a device place appear."""
    module, places = host_syncs
    counts = module.count(name, places, tmp_path / "run")
    assert counts["device"] == {}
    assert counts["host"], "the trainer checks the host batch (finite values, ids) every step"


def test_a_nan_loss_between_logging_steps_stops_at_its_own_step(tmp_path, host_syncs):
    """The finiteness of the loss is read at the next logging step or checkpoint, and the stop
    names the step where it first went non-finite. Mutation: report the step of the check."""
    module, _ = host_syncs
    trainer = module.build_trainer("toy2d/ddpm", tmp_path / "run")
    trainer.train_step()
    with torch.no_grad():
        next(trainer.method.parameters()).fill_(math.nan)
    for _ in range(3):
        trainer.train_step()  # no error yet: nothing is read back
    with pytest.raises(TrainingError, match=r"loss became nan at step 2; training stopped"):
        trainer.check_finite()


def test_out_of_vocabulary_ids_in_a_training_batch_are_refused_on_the_host(tmp_path, host_syncs):
    """Inside the step the device-side id checks are skipped, so the trainer checks the host batch:
    an id equal to the vocabulary size (MDLM's [MASK] id, which the network would accept) is a
    DataError naming the step. Mutation: drop ``check_ids`` in ``Trainer._micro_batches`` (the
    step then trains on the id as if it were a mask)."""
    from discodiff.errors import DataError

    module, _ = host_syncs
    trainer = module.build_trainer("shakespeare/mdlm", tmp_path / "run")
    vocab = trainer.data.info.vocab_size
    real_next = trainer.stream.next

    def corrupted(n):
        x, cond = real_next(n)
        x = x.clone()
        x[0, 0] = vocab
        return x, cond

    trainer.stream.next = corrupted
    with pytest.raises(DataError, match=rf"training batch of step 1 has category ids in \[\d+, {vocab}\]"):
        trainer.train_step()
