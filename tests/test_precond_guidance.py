"""Classifier-free guidance in the Gaussian preconditioner: x0 and eps are combined with the same
weights, consistent with each other where alpha > 0 and finite where alpha = 0 (x0-prediction at
the end of a schedule with alpha_bar(1) = 0)."""

import pytest
import torch

from discodiff.gaussian.precond import GaussianDenoiser
from discodiff.gaussian.process import VPProcess, eps_to_x0
from discodiff.schedules import SqrtSchedule


def labelled_net(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
    """An x0 prediction that depends on the label (-1 = null)."""
    return torch.tanh(x) + 0.5 * (cond.float()[:, None] + 1)


@pytest.mark.parametrize("prediction", ["x0", "v"])
def test_guided_x0_and_eps_agree_and_stay_finite(prediction) -> None:
    denoiser = GaussianDenoiser(labelled_net, VPProcess(SqrtSchedule()), prediction=prediction)
    x = torch.randn(4, 3, dtype=torch.float64)
    cond = torch.tensor([0, 1, 2, 1])
    t = torch.tensor([0.2, 0.5, 0.9, 1.0], dtype=torch.float64)  # alpha(1) = 0
    d = denoiser(x, t, cond, guidance_scale=3.0)
    assert torch.isfinite(d.x0).all() and torch.isfinite(d.eps).all()
    alpha, sigma = (c[:, None] for c in denoiser.process.alpha_sigma(t))
    torch.testing.assert_close(d.x0[:3], eps_to_x0(d.eps, x, alpha, sigma)[:3])
    plain_c, plain_u = denoiser(x, t, cond), denoiser(x, t, torch.full_like(cond, -1))
    torch.testing.assert_close(d.x0, plain_u.x0 + 3.0 * (plain_c.x0 - plain_u.x0))
