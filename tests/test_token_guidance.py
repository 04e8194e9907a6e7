"""Classifier-free guidance of every token method against its formula, with a network whose
conditional and unconditional outputs differ: w = 1 is the conditional model, w = 0 the
unconditional one, w = 2 the exact combination :math:`2 f_c - f_\\emptyset` in log space
(renormalized where the model's output is a distribution).

Mutation for every test here: flip the guidance direction in ``discodiff.guidance.guide``
(``u + w (c - u)`` -> ``c + w (u - c)``); each test then fails at w = 0 and at w = 2.
"""

import pytest
import scipy.stats
import torch
from torch import nn

from discodiff.base import NULL_LABEL
from discodiff.build import build_data, build_method
from discodiff.runconfig import parse_config

TEXT = {
    "data": {"name": "text", "seq_len": 6},
    "net": {"name": "transformer", "width": 8, "depth": 1, "heads": 1, "cond_dim": 8},
}
LABELS = torch.tensor([0, 2, 1])


class LabelNet(nn.Module):
    """``(x, t, cond) -> (B, L, out)``: a fixed random vector per label (the null label -1 has its
    own) plus a term in the input (tokens: a random row per id; vectors: their first coordinate),
    so the conditional and null halves differ and both must see the same x."""

    def __init__(self, out: int, input_ids: int, num_classes: int = 3) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("labels", 2 * torch.randn(num_classes + 1, out, generator=g))
        self.register_buffer("ids", 0.5 * torch.randn(input_ids, out, generator=g))
        self.anchor = nn.Parameter(torch.zeros(()))  # gives the method a device

    def forward(self, x, t, cond=None, cache=None):
        row = torch.where(cond == NULL_LABEL, self.labels.shape[0] - 1, cond)
        inp = self.ids[x] if x.dim() == 2 else x[..., :1]
        return self.labels[row][:, None, :] + inp

    def init_cache(self, capacity):
        return None  # decode by recomputing the prefix


DATA = {}


def _method(name: str, **options):
    cfg = parse_config({**TEXT, "method": {"name": name, **options}})
    data = DATA.get("text") or DATA.setdefault("text", build_data(cfg))
    return build_method(cfg, data)


def _check(f, *, renormalize: bool) -> None:
    """``f(cond, w)``: the method's guided output for labels ``cond`` at scale w."""
    null = torch.full_like(LABELS, NULL_LABEL)
    cond_out, null_out = f(LABELS, 1.0), f(null, 1.0)
    assert (cond_out - null_out).abs().max() > 0.5  # the network tells the label from null
    torch.testing.assert_close(f(LABELS, 0.0), null_out, rtol=0, atol=1e-5)
    want = 2 * cond_out - null_out
    if renormalize:
        want = torch.log_softmax(want, dim=-1)
    torch.testing.assert_close(f(LABELS, 2.0), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    "name,options",
    [
        ("d3pm", {"timesteps": 10}),
        ("mdlm", {}),
        ("ctmc", {}),
        ("udlm", {}),
    ],
)
def test_x0_distribution_of_d3pm_mdlm_ctmc_udlm(name, options):
    """:math:`\\log\\hat p(x_0|x_t)` (``denoise``) of the x0-parameterized token methods; MDLM at an
    all-[MASK] x_t (where nothing is carried over)."""
    method = _method(name, **options)
    states = method.transition.num_states
    method.net = LabelNet(method.transition.vocab_size, states)
    g = torch.Generator().manual_seed(1)
    x_t = torch.randint(0, states, (3, 6), generator=g)
    if name == "mdlm":
        x_t = torch.full_like(x_t, method.mask_id)
    t = torch.full((3,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        _check(lambda c, w: method.denoise(x_t, t, c, guidance_scale=w), renormalize=True)


@pytest.mark.parametrize("transition", ["absorbing", "uniform"])
def test_sedd_log_ratios(transition):
    """SEDD's network outputs log-ratios directly: guidance combines them (no renormalization)."""
    method = _method("sedd", transition={"name": transition})
    states = method.transition.num_states
    method.net = LabelNet(method.transition.vocab_size, states)
    x_t = torch.randint(0, states, (3, 6), generator=torch.Generator().manual_seed(2))
    t = torch.full((3,), 0.4, dtype=torch.float64)
    with torch.no_grad():
        _check(lambda c, w: method.log_ratios(x_t, t, c, guidance_scale=w), renormalize=False)


def test_cdcd_token_distribution():
    """CDCD's :math:`p_\\theta(w|x_t)` over the vocabulary at a noisy embedding x_t."""
    method = _method("cdcd")
    vocab = method.encoder.vocab_size
    method.denoiser.net = LabelNet(method.layout.group * vocab, 1)
    x_t = torch.randn(3, *method.layout.event_shape, generator=torch.Generator().manual_seed(3))
    t = torch.full((3,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        _check(lambda c, w: method.predict(x_t, t, c, guidance_scale=w).log_probs, renormalize=True)


def test_autoregressive_samples_follow_the_guided_next_token_distribution():
    """The AR baseline decodes from :math:`\\mathrm{softmax}(\\log p_\\emptyset + w(\\log p_c -
    \\log p_\\emptyset))`. The network's next-token logits depend on the label only, so all 6 tokens
    of a sequence are i.i.d. draws; 600 sequences per scale are compared with the exact guided
    distribution of label 0 by a chi-square test on the 4 likeliest tokens and the rest (p > 1e-3
    for the right one; the flipped formula gives p < 1e-30)."""
    method = _method("ar", kv_cache=False)
    vocab = method.vocab_size
    method.net = LabelNet(vocab, vocab + 1)
    method.net.ids.zero_()  # the same distribution at every position, whatever the prefix
    method.num_classes = 3
    log_c = torch.log_softmax(method.net.labels[0].double(), -1)
    log_u = torch.log_softmax(method.net.labels[-1].double(), -1)
    for w in (1.0, 0.0, 2.0):
        probs = torch.softmax(log_u + w * (log_c - log_u), -1)
        top = probs.argsort(descending=True)[:4]
        expected = torch.cat([probs[top], 1 - probs[top].sum(0, keepdim=True)]) * 3600
        out = method.sample(
            600,
            cond=torch.zeros(600, dtype=torch.long),
            guidance_scale=w,
            generator=torch.Generator().manual_seed(4),
        )
        tokens = out.x.flatten()
        counts = torch.stack([(tokens == k).sum() for k in top])
        observed = torch.cat([counts, torch.tensor([len(tokens) - counts.sum()])]).double()
        p = scipy.stats.chisquare(observed.numpy(), expected.numpy()).pvalue
        assert p > 1e-3, f"w = {w}: chi-square p = {p:.3g}"
