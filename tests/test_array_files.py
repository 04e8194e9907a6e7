"""Array data as users keep it: one .npz with its own train / test arrays and labels."""

import numpy as np
import pytest
import torch

from discodiff.build import build_data
from discodiff.errors import ConfigError, DataError
from discodiff.runconfig import parse_config
from runs import tiny


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def _data(**options):
    cfg = tiny()
    cfg["data"] = {"name": "array", **options}
    return build_data(parse_config(cfg))


@pytest.fixture
def user_npz(tmp_path):
    """A 40-dimensional data set with a given test split and labels in their own arrays."""
    rng = np.random.default_rng(0)
    x, x_test = rng.normal(3.0, 2.0, (500, 40)), rng.normal(3.0, 2.0, (120, 40))
    y, y_test = rng.integers(0, 3, 500), rng.integers(0, 3, 120)
    return _npz(tmp_path / "d.npz", x=x, x_test=x_test, y=y, y_test=y_test), (x, x_test, y, y_test)


def test_npz_keeps_the_given_test_split_and_labels(user_npz):
    path, (x, x_test, y, y_test) = user_npz
    data = _data(path=path, key="x", test_key="x_test", labels_key="y", test_labels_key="y_test")
    test, test_labels = data.split("test")
    # the test split is the file's, row for row, in the original units once standardization is undone
    restored = test.double() * data.std + data.mean
    np.testing.assert_allclose(restored.numpy(), x_test, rtol=0, atol=1e-5)
    assert torch.equal(test_labels, torch.from_numpy(y_test))
    train, train_labels = data._splits["train"]
    val, _ = data.split("val")
    assert len(train) + len(val) == len(x) and len(val) == int(0.1 * len(x))
    assert data.info.event_shape == (40,) and data.info.num_classes == 3
    # the labels stay with their rows: each training row's label is the one the file gives it
    got = (train.double() * data.std + data.mean).numpy()
    source_row = np.abs(got[:, None, :] - x[None, :, :]).max(-1).argmin(1)  # each row's place in x
    assert np.abs(got - x[source_row]).max() < 1e-5
    assert np.array_equal(train_labels.numpy(), y[source_row])
    # standardization uses the training rows only
    np.testing.assert_allclose(train.double().mean(0).numpy(), 0, atol=1e-5)


def test_npz_given_val_split(tmp_path):
    rng = np.random.default_rng(1)
    path = _npz(
        tmp_path / "d.npz",
        tr=rng.normal(size=(50, 3)),
        va=rng.normal(size=(7, 3)),
        te=rng.normal(size=(9, 3)),
    )
    data = _data(path=path, key="tr", val_key="va", test_key="te")
    assert len(data.split("val")[0]) == 7 and len(data.split("test")[0]) == 9
    assert len(data._splits["train"][0]) == 50


def test_npz_single_array_needs_no_key_and_random_split_matches_npy(tmp_path):
    x = np.random.default_rng(2).normal(size=(100, 4))
    np.save(tmp_path / "d.npy", x)
    from_npy = _data(path=str(tmp_path / "d.npy"))
    from_npz = _data(path=_npz(tmp_path / "d.npz", data=x))
    for name in ("val", "test"):
        assert torch.equal(from_npy.split(name)[0], from_npz.split(name)[0])


@pytest.mark.parametrize(
    "options,message",
    [
        ({}, "holds 4 arrays"),
        ({"key": "nope"}, "data.key: .* has no array 'nope'; it holds: x, x_test, y, y_test"),
        ({"key": "x", "test_key": "x_test", "labels_key": "y"}, "test_labels_key and data.labels_key"),
        ({"key": "x", "labels_key": "x"}, r"data.labels_key: .* has shape \(500, 40\)"),
        ({"key": "x", "test_labels_key": "y_test"}, "test_labels_key needs data.test_key"),
        ({"key": "x", "label_column": 0}, "label_column is for .npy / .csv"),
    ],
)
def test_npz_errors_name_the_field(user_npz, options, message):
    path, _ = user_npz
    with pytest.raises(ConfigError, match=message):
        _data(path=path, **options)


def test_npz_key_on_npy_refused(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((10, 2)))
    with pytest.raises(ConfigError, match=r"data.test_key names an array inside an \.npz"):
        _data(path=str(tmp_path / "d.npy"), test_key="x")


def test_npz_column_mismatch(tmp_path):
    path = _npz(tmp_path / "d.npz", x=np.zeros((10, 3)), t=np.zeros((4, 2)))
    with pytest.raises(DataError, match="the test array has 2 columns, the examples 3"):
        _data(path=path, key="x", test_key="t")


def test_npz_with_pickled_objects_refused(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(DataError, match=r"not a plain numeric \.npz"):
        _data(path=str(tmp_path / "d.npz"))
