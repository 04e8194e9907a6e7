"""Classifier-based sample metrics: the Frechet distance against brute force, deterministic training,
safe save/load and caching, and the metrics an image data set reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch

from discodiff.data.images import DigitsConfig, build_digits
from discodiff.metrics.classifier import (
    TrainSettings,
    accuracy,
    classifier_sample_metrics,
    frechet_distance,
    load_classifier,
    load_or_train,
    save_classifier,
    train_classifier,
)

QUICK = TrainSettings(steps=300)
"""About 15 epochs of digits: enough for > 90 % test accuracy in a few seconds."""


@pytest.fixture(scope="module")
def digits():
    return build_digits(DigitsConfig(labels=True))


@pytest.fixture(scope="module")
def trained(digits):
    return train_classifier(digits, settings=QUICK)


def brute_force_fd(a: np.ndarray, b: np.ndarray) -> float:
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    cross = scipy.linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * cross))


def test_frechet_distance_against_brute_force():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=g, dtype=torch.float64) @ torch.randn(
        6, 6, generator=g, dtype=torch.float64
    )
    b = (
        torch.randn(400, 6, generator=g, dtype=torch.float64) * torch.linspace(0.5, 2, 6, dtype=torch.float64)
        + 1
    )
    assert frechet_distance(a, b) == pytest.approx(brute_force_fd(a.numpy(), b.numpy()), rel=1e-8)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    shift = torch.tensor([1.0, -2.0, 0, 0, 0, 0.5], dtype=torch.float64)
    assert frechet_distance(a + shift, a) == pytest.approx(float((shift**2).sum()), rel=1e-8)
    with pytest.raises(ValueError, match="same F"):
        frechet_distance(a, b[:, :5])


def test_training_is_deterministic_and_keeps_global_rng(digits, trained):
    state = torch.random.get_rng_state()
    model, record = train_classifier(digits, settings=TrainSettings(steps=20))
    assert torch.equal(torch.random.get_rng_state(), state)
    again, _ = train_classifier(digits, settings=TrainSettings(steps=20))
    for p, q in zip(model.parameters(), again.parameters()):
        assert torch.equal(p, q)
    assert record["settings"]["steps"] == 20 and record["dataset"] == "digits"
    assert trained[1]["test_accuracy"] > 0.9


def test_save_load_and_cache(tmp_path, digits, trained, monkeypatch):
    model, record = trained
    path = tmp_path / "clf" / "digits.safetensors"
    weights, meta = save_classifier(model, record, path)
    assert json.loads(meta.read_text())["arch"]["image_shape"] == [1, 8, 8]
    loaded, loaded_record = load_classifier(weights)
    x, y = digits.labelled_images("test")
    assert torch.equal(loaded(x), model(x))
    assert loaded_record["test_accuracy"] == record["test_accuracy"]

    def no_training(*args, **kwargs):
        raise AssertionError("load_or_train retrained a cached classifier")

    monkeypatch.setattr("discodiff.metrics.classifier.train_classifier", no_training)
    assert accuracy(load_or_train(path, digits), x, y) == record["test_accuracy"]
    other = build_digits(DigitsConfig())
    other.name = "not_digits"
    with pytest.raises(ValueError, match="trained for"):
        load_or_train(path, other)
    meta.write_text("{}")
    with pytest.raises(ValueError, match="not a classifier description"):
        load_classifier(weights)


def test_sample_metrics_of_a_data_set(tmp_path, trained):
    path = tmp_path / "digits.safetensors"
    save_classifier(*trained, path)
    data = build_digits(DigitsConfig(labels=True, classifier=str(path)))
    val, labels = data.split("val")
    good = data.sample_metrics(val, labels)
    noise = data.sample_metrics(torch.rand(183, 1, 8, 8) * 2 - 1, labels)
    assert good["classifier_accuracy"] > 0.9 and noise["classifier_accuracy"] < 0.5
    assert good["classifier_fd"] < 0.1 * noise["classifier_fd"]
    # null-class rows are not scored for accuracy; unlabelled samples get only the distance
    mixed = labels.clone()
    mixed[:100] = -1
    model = load_or_train(path, data)
    reference = data.labelled_images("test")[0]
    assert classifier_sample_metrics(model, val, reference, mixed)["classifier_accuracy"] == accuracy(
        model, val[100:], labels[100:]
    )
    assert set(data.sample_metrics(val)) == {"classifier_fd"}
    tokens = build_digits(DigitsConfig(tokens=True, classifier=str(path)))
    ids = tokens.split("val")[0]
    assert tokens.sample_metrics(ids)["classifier_fd"] == pytest.approx(good["classifier_fd"], rel=1e-6)
    ids[0, 0] = 17
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tokens.sample_metrics(ids)
    assert build_digits(DigitsConfig()).sample_metrics(val) == {}
