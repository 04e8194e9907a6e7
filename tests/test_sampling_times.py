"""The sampling grid shared by masked token diffusion and the graph methods (utils.sampling_times)."""

from __future__ import annotations

from discodiff.utils import sampling_times


def test_discrete_time_grid_is_respaced_onto_i_over_T():
    """With T > 0 every time is a grid point i / T, from 1 to 0. Fails if the T grid is ignored
    (uniform times 1 - k / steps are not multiples of 1 / T for steps = 3, T = 10)."""
    times = sampling_times(3, 10)
    assert times == [1.0, 0.7, 0.3, 0.0]  # round(10 * (1, 2/3, 1/3, 0)) / 10
    assert all(abs(t * 10 - round(t * 10)) < 1e-12 for t in times)


def test_continuous_time_grid_is_uniform():
    assert sampling_times(4) == [1.0, 0.75, 0.5, 0.25, 0.0]
