"""``discodiff bench SUITE``: every method of a suite on one network, one data set, one budget.

A *suite* is a YAML file (``configs/bench/NAME.yaml``; see :mod:`.suite`) with one ``data:``, one
``net:`` and one ``train:`` section shared by every method, the training budget, the fixed
validation set for the likelihood and the sampling grid. For each method the bench

1. times a short calibration of the first training steps and sizes ``train.steps`` (hence the
   learning-rate schedule) to the budget, the budget staying a hard stop (:mod:`.runner`);
2. trains, measuring the likelihood on a documented subset of the validation split at a few
   points of the run (the likelihood-vs-training-time curve) and on the whole validation set at
   the end, with every estimator the suite asks for (:mod:`.measure`);
3. samples with each listed sampler at each step count its :class:`~discodiff.base.SamplerInfo`
   allows, scoring the samples with the data source's own ``sample_metrics`` (and, where the
   suite names a reference method, generative perplexity under it), as mean +- sd over draws,
   with the sampling time per example (:mod:`.measure`);
4. writes ``results.json`` (a list of rows, each with commit, config hash, machine, seed and
   budget), ``leaderboard.md`` and plots into a new directory (:mod:`.report`).

The bench never asks which method it holds: method names appear only in the suite files.
"""


def __getattr__(name: str):
    if name == "run_bench":  # imported lazily: ``discodiff --help`` need not load the bench
        from .command import run_bench

        return run_bench
    raise AttributeError(name)
