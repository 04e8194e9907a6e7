"""MDLM and the CTMC with an absorbing transition are two forms of one ELBO.

For a masked token the CTMC's score-entropy integrand with ratios :math:`s_y = \\hat p(y)\\,
\\alpha_t/(1-\\alpha_t)` reduces to :math:`-\\frac{\\bar\\sigma'(t)\\,\\alpha_t}{1-\\alpha_t}
\\log\\hat p(x_0)`, MDLM's weighted cross-entropy (Sahoo et al. 2024, Eq. 10); an unmasked token has
no forward rate into it and contributes 0 in both. So at the same :math:`(x_t, t)` and the same
network, even one far from the true posterior, the per-example integrands agree, and so do the
prior terms.
"""

import pytest
import torch

from discodiff.categorical import AbsorbingTransition, MaskedConfig, MaskedDiffusion
from discodiff.categorical.continuous_time import ContinuousTimeOptions
from discodiff.categorical.ctmc import CTMC
from discodiff.schedules import CosineSchedule, GeometricSchedule, LogLinearSchedule

K, L, B = 5, 7, 64


def random_net(seed: int = 0):
    """A fixed, arbitrary network: logits depend on every token of x_t and on t."""
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(K + 1, L, K, generator=g, dtype=torch.float64)
    mix = torch.randn(L, L, generator=g, dtype=torch.float64)

    def net(x_t, t, cond=None):
        per_token = emb[x_t, torch.arange(L)]  # (B, L, K)
        return torch.einsum("ij,bjk->bik", mix, per_token) + 3 * t.double()[:, None, None]

    return net


@pytest.mark.parametrize(
    "schedule",
    [LogLinearSchedule(eps=0.0), CosineSchedule(), GeometricSchedule(0.05, 8.0)],
    ids=["loglinear", "cosine", "geometric"],
)
def test_same_bound_at_fixed_xt_and_t(schedule):
    """Per example, to float64 rounding. Mutations: ``expm1`` -> ``exp`` in MDLM's ``elbo_weight``
    (all schedules); ``relative_noise`` without its ``- sigma_bar(0)`` (the geometric schedule,
    the one with sigma_bar(0) > 0)."""
    transition = AbsorbingTransition(schedule, K)
    net = random_net()
    mdlm = MaskedDiffusion(
        net, transition, MaskedConfig(time_conditioning=True, sampler="ancestral"), event_shape=(L,)
    )
    ctmc = CTMC(net, transition, ContinuousTimeOptions(), event_shape=(L,))
    g = torch.Generator().manual_seed(1)
    x0 = torch.randint(0, K, (B, L), generator=g)
    t = torch.rand(B, generator=g, dtype=torch.float64) * 0.98 + 0.01
    u = torch.rand(B, L, 2, generator=g, dtype=torch.float64)
    x_t = transition.sample_marginal(x0, t, u)
    assert 0 < int((x_t == K).sum()) < B * L  # masked and unmasked tokens
    with torch.no_grad():
        masked = mdlm.diffusion_term(x0, t, u).double()
        score_entropy = ctmc.elbo_integrand(x0, x_t, t, dtype=torch.float64)
    torch.testing.assert_close(score_entropy, masked, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(ctmc.transition.prior_kl(x0, dtype=torch.float64), mdlm.prior_kl(x0))
