"""Diffusion-LM, simplex and CDCD with a small transformer: network specs, losses and gradients,
data-parallel consistency, infilling, clamping, sampling options, validation and configuration."""

from __future__ import annotations

import pytest
import torch

from discodiff.base import METHODS, Batch
from discodiff.config import ConfigError, from_dict, to_dict
from discodiff.data import DataInfo
from discodiff.embedding import CDCD, DiffusionLM
from discodiff.embedding import diffusion_lm as diffusion_lm_module
from discodiff.nets import NETS, NetSpec
from discodiff.nets.transformer import TransformerConfig

NET = TransformerConfig(width=32, depth=2, heads=4, cond_dim=16, time_dim=16)
K, L = 7, 12
DEFAULTS = {
    "diffusion_lm": {"timesteps": 20, "sample_steps": 6},
    "simplex": {"timesteps": 20, "sample_steps": 6},
    "cdcd": {"sample_steps": 6, "bound_samples": 3},
}
METHOD_SAMPLERS = [(m, s) for m, s in [("diffusion_lm", "ancestral"), ("diffusion_lm", "ddim"),
                                        ("simplex", "ancestral"), ("simplex", "ddim"),
                                        ("cdcd", "euler"), ("cdcd", "heun")]]  # fmt: skip


def build(name: str, *, num_classes: int = 0, seed: int = 0, **options):
    """A method with a small transformer whose zero-initialized output layers are randomized."""
    entry = METHODS.entry(name)
    config = from_dict(entry.config, {**DEFAULTS[name], **options}, "method")
    info = DataInfo((L,), kind="tokens", vocab_size=K, num_classes=num_classes)
    torch.manual_seed(seed)
    model = entry.obj(config, info, lambda spec: NETS.get("transformer")(NET, spec))
    with torch.no_grad():
        for p in model.net.parameters():
            if p.abs().max() == 0:
                p.normal_(0.0, 0.1)
    return model


def data(n: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, K, (n, L), generator=torch.Generator().manual_seed(seed))


def test_methods_ask_for_the_right_network() -> None:
    specs: list[NetSpec] = []

    def factory(spec: NetSpec) -> torch.nn.Module:
        specs.append(spec)
        return NETS.get("transformer")(NET, spec)

    info = DataInfo((L,), kind="tokens", vocab_size=K, num_classes=2)
    for name, options in [
        ("diffusion_lm", {"group": 3}),
        ("simplex", {}),
        ("cdcd", {"group": 2}),
        ("cdcd", {"self_condition": False}),
    ]:
        METHODS.get(name)(from_dict(METHODS.entry(name).config, options, "method"), info, factory)
    assert [(s.event_shape, s.out_channels, s.input_vocab, s.num_classes) for s in specs] == [
        ((4, 48), 48, None, 2),  # 12 tokens in 4 positions of 3 x 16 coordinates
        ((12, 7), 7, None, 2),  # one-hot: d = K
        ((6, 64), 14, None, 2),  # 2 x 16 coordinates, doubled by self-conditioning; 2 x 7 logits
        ((12, 16), 7, None, 2),
    ]


@pytest.mark.parametrize("name", ["diffusion_lm", "simplex", "cdcd"])
def test_loss_is_finite_and_trains_every_part(name) -> None:
    model = build(name)
    out = model.loss(Batch(data()))
    assert out.loss.dim() == 0 and torch.isfinite(out.loss) and out.per_example.shape == (8,)
    out.loss.backward()
    assert model.net.head.weight.grad.abs().sum() > 0
    if name == "diffusion_lm":
        assert model.encoder.weight.grad.abs().sum() > 0  # MSE target, input and rounding term
        assert model.decoder.bias.grad.abs().sum() > 0
        assert set(out.metrics) == {"mse_x0", "rounding_nats_per_token", "prior_nats_per_dim"}
    if name == "simplex":
        assert list(model.encoder.parameters()) == [] and list(model.decoder.parameters()) == []
    if name == "cdcd":
        assert model.encoder.weight.grad.abs().sum() > 0
        for p in model.warp.parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0
        assert set(out.metrics) == {"ce_nats_per_token", "warp_fit"}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.isfinite(model.loss(Batch(data())).loss)


@pytest.mark.parametrize("name", ["diffusion_lm", "cdcd"])
def test_loss_rows_reproduce_the_global_batch(name) -> None:
    """Data-parallel ranks draw the global batch's randomness and keep their rows (Batch.rows)."""
    model = build(name)
    x = data()
    torch.manual_seed(3)
    full = model.loss(Batch(x)).per_example
    torch.manual_seed(3)
    part = model.loss(Batch(x[4:8], rows=(4, 8))).per_example
    torch.testing.assert_close(part, full[4:8], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,sampler", METHOD_SAMPLERS)
@pytest.mark.parametrize("group", [1, 2])
def test_infilling_never_changes_a_known_token(name, sampler, group) -> None:
    model = build(name, group=group)
    g = torch.Generator().manual_seed(5)
    known = torch.randint(0, K, (6, L), generator=g)
    mask = torch.rand(6, L, generator=g) < 0.5
    given = torch.where(mask, known, torch.full_like(known, -3))  # garbage where unknown is ignored
    out = model.sample(6, sampler=sampler, known=given, known_mask=mask, generator=g, return_trajectory=True)
    assert out.x.shape == (6, L) and out.x.dtype == torch.long
    assert out.x[mask].equal(known[mask])
    # the final latent holds the known tokens' exact embeddings
    latent_mask = model.layout.expand_mask(mask)
    final = out.trajectory[-1][1]
    assert out.trajectory[-1][0] == 0.0 and out.trajectory[0][0] == 1.0
    torch.testing.assert_close(final[latent_mask], model.embed(known).detach()[latent_mask], rtol=0, atol=0)


def test_clamping_runs_at_every_step_and_ends_on_embeddings(monkeypatch) -> None:
    model = build("diffusion_lm")
    calls = []
    original = diffusion_lm_module.clamp_to_nearest
    monkeypatch.setattr(
        diffusion_lm_module, "clamp_to_nearest", lambda x, table: calls.append(1) or original(x, table)
    )
    out = model.sample(4, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(calls) == out.nfe == 6
    final = model.layout.split(out.trajectory[-1][1])
    table = model.encoder.table().detach()
    assert (final[..., None, :] == table).all(-1).any(-1).all()  # every token vector is a table row
    assert out.x.equal(model.decoder.decode(final, table))
    model.config.clamp = False
    unclamped = model.sample(4, generator=torch.Generator().manual_seed(0), return_trajectory=True)
    assert len(calls) == 6
    final = model.layout.split(unclamped.trajectory[-1][1])
    assert not (final[..., None, :] == table).all(-1).any(-1).all()


@pytest.mark.parametrize("name", ["diffusion_lm", "cdcd"])
def test_guidance_labels_and_nfe(name) -> None:
    model = build(name, num_classes=3, cond_drop_prob=0.2)
    labels = torch.tensor([0, 2, 1, 2])
    plain = model.sample(4, cond=labels, generator=torch.Generator().manual_seed(0))
    guided = model.sample(4, cond=labels, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert guided.nfe == 2 * plain.nfe == 12
    if name == "diffusion_lm":  # alpha(1) = 0 under the sqrt schedule: guided x0 must stay finite
        model.config.clamp = False
        out = model.sample(4, cond=labels, guidance_scale=2.0, return_trajectory=True)
        assert all(torch.isfinite(x).all() for _, x in out.trajectory)
    assert model.sample(4, generator=torch.Generator().manual_seed(0)).x.shape == (4, L)  # null class
    loss = model.loss(Batch(data(4), torch.tensor([0, 1, 2, 0])))
    assert torch.isfinite(loss.loss)
    with pytest.raises(ValueError, match="class-conditional: the batch needs labels"):
        model.loss(Batch(data(4)))


def test_sampling_errors_name_the_problem() -> None:
    model = build("diffusion_lm")
    with pytest.raises(ValueError, match="unknown sampler 'euler' for DiffusionLM; allowed: ancestral, ddim"):
        model.sample(2, sampler="euler")
    with pytest.raises(ValueError, match=r"steps \(30\) cannot exceed the model's timesteps \(20\)"):
        model.sample(2, steps=30)
    with pytest.raises(ValueError, match="unconditional: cond must be None"):
        model.sample(2, cond=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="known and known_mask must be given together"):
        model.sample(2, known=data(2))
    mask = torch.ones(2, L, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"known has ids in \[0, 9\]; allowed: 0 .. 6"):
        model.sample(2, known=torch.full((2, L), 9).index_fill(1, torch.tensor([0]), 0), known_mask=mask)
    with pytest.raises(ValueError, match=r"batch\.x must hold integer token ids"):
        model.loss(Batch(torch.zeros(2, L)))
    with pytest.raises(ValueError, match=r"batch.x must have shape \(B, 12\)"):
        model.nll(Batch(torch.zeros(2, 5, dtype=torch.long)))
    with pytest.raises(ValueError, match="unknown likelihood estimator 'ode'"):
        model.nll(Batch(data(2)), estimator="ode")
    with pytest.raises(ValueError, match="unknown sampler 'ddim' for CDCD; allowed: euler, heun"):
        build("cdcd").sample(2, sampler="ddim")


@pytest.mark.parametrize("name", ["diffusion_lm", "simplex", "cdcd"])
def test_nll_is_a_per_example_bound_in_nats(name) -> None:
    model = build(name)
    x = data(4)
    torch.manual_seed(0)
    out = model.nll(Batch(x))
    assert out.nll.shape == (4,) and out.nll.dtype == torch.float64 and (out.nll > 0).all()
    assert out.num_dims.tolist() == [float(L)] * 4
    assert set(out.terms) == {"prior", "diffusion", "rounding"}
    torch.testing.assert_close(out.nll, sum(out.terms.values()))
    torch.manual_seed(0)
    assert model.nll(Batch(x)).nll.equal(out.nll)
    assert model.nll_estimators == ("bound",)


@pytest.mark.parametrize(
    "name,options,message",
    [
        (
            "diffusion_lm",
            {"decoder": "argmax"},
            "decoder 'argmax' reads one-hot vectors: it needs encoder 'onehot'",
        ),
        ("simplex", {"encoder": "learned"}, "'method.encoder': got 'learned'; allowed: 'onehot'"),
        ("diffusion_lm", {"sample_steps": 50}, "sample_steps must be in 1 .. timesteps=20, got 50"),
        ("diffusion_lm", {"schedule": "sqroot"}, "unknown schedule 'sqroot' \\(did you mean 'sqrt'\\?\\)"),
        ("cdcd", {"sigma_min": 5.0, "sigma_max": 2.0}, "need 0 < sigma_min < sigma_max, got 5.0, 2.0"),
        ("cdcd", {"sampler": "ddim"}, "'method.sampler': got 'ddim'; allowed: 'euler', 'heun'"),
        ("cdcd", {"warp_bins": 0}, "need warp_bins >= 1"),
    ],
)
def test_config_errors_name_the_field(name, options, message) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(METHODS.entry(name).config, {**DEFAULTS[name], **options}, "method")


def test_builder_errors() -> None:
    with pytest.raises(ValueError, match=r"group \(5\) must divide the sequence length \(12\)"):
        build("cdcd", group=5)
    continuous = DataInfo((2,), kind="continuous")
    for name in ("diffusion_lm", "simplex", "cdcd"):
        config = from_dict(METHODS.entry(name).config, {}, "method")
        with pytest.raises(ValueError, match=f"method '{name}' models token sequences"):
            METHODS.get(name)(config, continuous, lambda spec: None)


@pytest.mark.parametrize("name", ["diffusion_lm", "simplex", "cdcd"])
def test_config_round_trip_and_state_dict(name) -> None:
    config = from_dict(METHODS.entry(name).config, {**DEFAULTS[name], "group": 2}, "method")
    assert from_dict(METHODS.entry(name).config, to_dict(config), "method") == config
    model = build(name, group=2)
    assert isinstance(model, DiffusionLM if name != "cdcd" else CDCD)
    twin = build(name, group=2, seed=1)
    twin.load_state_dict(model.state_dict())
    x = data(3)
    torch.manual_seed(0)
    a = model.loss(Batch(x)).per_example
    torch.manual_seed(0)
    torch.testing.assert_close(twin.loss(Batch(x)).per_example, a)
