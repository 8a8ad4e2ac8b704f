"""train-cnn's library side: the network built from an --arch spec, its JSON snapshot, the image loaders.

Whole-network gradients of the default (digits) arch against central finite
differences in float64, bit-exact JSON round trips, the stratified digits split
and every complaint of the .npz loader.
"""

import json
import sys

import numpy as np
import pytest

from gradcheck import assert_close
from numbanets import functional as F
from numbanets.data import images
from numbanets.nn import arch
from runner.cnn import export_json as cnn_json
from runner.cnn import options as cnn_options
from runner.cnn import train as cnn

DIGITS_SPEC, DIGITS_SHAPE = arch.BUILTIN[cnn_options.DEFAULT_ARCH]


# --------------------------------------------------------------------------- the network of a spec

def test_build_follows_the_plan(rng):
    layers = arch.parse(DIGITS_SPEC)
    model = arch.build(layers, DIGITS_SHAPE, rng)
    assert [type(m).__name__ for m in model] == ["Conv2D", "Activation", "MaxPool2D", "Conv2D", "Activation",
                                                  "MaxPool2D", "Flatten", "Linear"]
    assert [spec.token for spec, _ in model.arch_layers] == [layer.token for layer in layers]
    plan_params = sum(r.params for r in arch.plan(layers, DIGITS_SHAPE))
    assert model.num_parameters() == plan_params
    y = model.forward(rng.standard_normal((3, *DIGITS_SHAPE)).astype(np.float32))
    assert y.shape == (3, 10) and y.dtype == np.float32


def test_build_names_a_layer_with_an_empty_output(rng):
    with pytest.raises(ValueError, match=r"layer 3 \(conv8x5x5\) on input 4x4x4: output would be empty"):
        arch.build(arch.parse("conv4x3x3:p=same-pool2-conv8x5x5-fc10"), (1, 8, 8), rng)


def test_default_arch_gradients_match_finite_differences(rng):
    """d(softmax CE)/d(every parameter) of the digits network, float64, on two images."""
    model = arch.build(arch.parse(DIGITS_SPEC), DIGITS_SHAPE, rng, np.float64)
    x = rng.standard_normal((2, *DIGITS_SHAPE))
    t = np.array([3, 7])

    def loss():
        return F.softmax_cross_entropy(model.forward(x), t)[0]

    model.zero_grad()
    _, dlogits = F.softmax_cross_entropy(model.forward(x), t)
    model.backward(dlogits)
    eps = 1e-6
    for name, p, g in model.named_parameters():
        flat, grad = p.reshape(-1), g.reshape(-1)
        # every entry of the small tensors, a random 150 of the larger ones (18,432 and 2,560 weights)
        picks = np.arange(flat.size) if flat.size <= 1500 else rng.choice(flat.size, 150, replace=False)
        num = np.empty(len(picks))
        for j, k in enumerate(picks):
            orig = flat[k]
            flat[k] = orig + eps
            plus = loss()
            flat[k] = orig - eps
            minus = loss()
            flat[k] = orig
            num[j] = (plus - minus) / (2 * eps)
        assert_close(grad[picks], num, rtol=1e-5, atol=1e-8, name=name)


def test_trainer_epoch_is_deterministic_and_learns():
    data = images.load_digits()
    o = cnn.validate({"epochs": 1})
    a, b = cnn.Trainer(o, DIGITS_SPEC, data), cnn.Trainer(o, DIGITS_SPEC, data)
    ra, rb = a.train_epoch(), b.train_epoch()
    assert ra["train_loss"] == rb["train_loss"] and ra["train_acc"] == rb["train_acc"]
    loss, acc, pred = a.evaluate(data.x_test, data.y_test)
    assert acc > 0.5 and pred.shape == data.y_test.shape


# --------------------------------------------------------------------------- JSON snapshots

ODD_SPEC = "conv4x3x3:p=1-tanh-pool2:s=1-conv4x2x2:g=2:nobias:p=same-sigmoid-dropout0.25-fc5-relu-fc3"


def _bits(a):
    return np.asarray(a).view(np.uint32 if a.dtype == np.float32 else np.uint64)


def test_exact_floats_round_trip_edge_values():
    values = np.array([0.1, -0.0, 1e-45, 1.1754942e-38, 3.4028235e38, 1 / 3, 16777217.0, -2.5e-7],
                      dtype=np.float32)
    back = np.array(json.loads(json.dumps(cnn_json.exact_floats(values))), dtype=np.float64).astype(np.float32)
    assert (_bits(back) == _bits(values)).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_json_round_trip_is_bit_exact(tmp_path, rng, dtype):
    shape = (2, 7, 7)
    model = arch.build(arch.parse(ODD_SPEC), shape, rng, dtype)
    for _, p, _ in model.named_parameters():  # values over many magnitudes
        p[...] = (rng.standard_normal(p.shape) * 10.0 ** rng.integers(-30, 30, p.shape)).astype(dtype)
    path = cnn_json.write(tmp_path / "net.json", model, ODD_SPEC, shape)
    doc = json.loads(path.read_text())
    assert [entry["layer_type"] for entry in doc["layers"]] == [
        "input", "conv", "tanh", "pool", "conv", "sigmoid", "dropout", "fc", "relu", "fc", "softmax"]
    assert doc["layers"][4]["biases"] is None and doc["layers"][4]["groups"] == 2
    assert doc["layers"][6]["drop_prob"] == 0.25
    snap = cnn_json.read(path)
    other = arch.build(arch.parse(snap.arch), snap.input_shape, np.random.default_rng(99), dtype)
    cnn_json.load_into(other, snap)
    for (name, a), (_, b) in zip(model.state_dict().items(), other.state_dict().items()):
        assert a.dtype == b.dtype == np.dtype(dtype), name
        assert (_bits(a) == _bits(b)).all(), name


def test_json_snapshot_errors_name_the_layer(tmp_path, rng):
    shape = (1, 8, 8)
    model = arch.build(arch.parse(DIGITS_SPEC), shape, rng)
    path = cnn_json.write(tmp_path / "net.json", model, DIGITS_SPEC, shape)
    doc = json.loads(path.read_text())
    doc["layers"][4]["filters"] = doc["layers"][4]["filters"][:-1]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"layer 4 \(conv64x3x3:p=same\): filters has shape \(63, 32, 3, 3\)"):
        cnn_json.read(path)
    (tmp_path / "other.json").write_text('{"layers": []}')
    with pytest.raises(ValueError, match="neither a numbanets snapshot .* nor a ConvNetJS"):
        cnn_json.read(tmp_path / "other.json")


# --------------------------------------------------------------------------- image data

def test_digits_split_is_stratified_and_standardised():
    d = images.load_digits(test_fraction=0.2)
    assert d.x_train.shape == (1437, 1, 8, 8) and d.x_test.shape == (360, 1, 8, 8)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int64 and d.classes == 10
    train_share = np.bincount(d.y_train) / len(d.y_train)
    test_share = np.bincount(d.y_test) / len(d.y_test)
    assert np.abs(train_share - test_share).max() < 0.01
    assert abs(float(d.x_train.mean())) < 1e-4 and abs(float(d.x_train.std()) - 1) < 1e-4
    again = images.load_digits(test_fraction=0.2)
    assert (again.y_test == d.y_test).all()


def test_npz_layouts(tmp_path, rng):
    x = rng.integers(0, 256, (40, 6, 5), dtype=np.uint8)
    y = np.repeat(np.arange(4), 10)
    np.savez(tmp_path / "hw.npz", x=x, y=y)
    d = images.load_npz(tmp_path / "hw.npz", test_fraction=0.25)
    assert d.image_shape == (1, 6, 5) and d.classes == 4 and len(d.y_test) == 10
    assert set(np.bincount(d.y_test)) <= {2, 3}
    np.savez(tmp_path / "split.npz", x=x[:, None], y=y, x_test=x[:8, None], y_test=y[:8].astype(np.float64))
    d = images.load_npz(tmp_path / "split.npz")
    assert len(d.y_train) == 40 and len(d.y_test) == 8 and d.info["split"].startswith("given")


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"images": np.zeros((4, 2, 2)), "y": np.zeros(4)}, r"missing array 'x' \(found: images, y\)"),
        ({"x": np.zeros((4, 2, 2))}, "missing array 'y'"),
        ({"x": np.zeros((4, 2, 2)), "y": np.zeros(3, int)}, "'x' holds 4 images but 'y' holds 3 labels"),
        ({"x": np.zeros((4, 2)), "y": np.zeros(4, int)}, r"must have shape \(N, C, H, W\) or \(N, H, W\)"),
        ({"x": np.zeros((4, 2, 2)), "y": np.array([0, 1, -1, 0])}, "negative label -1"),
        ({"x": np.zeros((4, 2, 2)), "y": np.array([0, 1, 0.5, 0])}, "whole-number class indices"),
        ({"x": np.zeros((4, 9, 9, 3)), "y": np.zeros(4, int)}, "channels-last"),
        ({"x": np.zeros((4, 2, 2)), "y": np.zeros(4, int), "x_test": np.zeros((2, 2, 2))}, "both 'x_test' and"),
    ],
)
def test_npz_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(ValueError, match=message):
        images.load_npz(tmp_path / "bad.npz")


def test_labels_must_fit_the_network():
    d = images.load_digits()
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.7 .* label 9; end the --arch with fc10"):
        cnn.check_fit("conv4x3x3-relu-fc8", d)
    with pytest.raises(ValueError, match="must end in a fully connected layer"):
        cnn.check_fit("conv4x3x3-relu", d)
    assert cnn.check_fit("fc12", d) == 12


def test_plots_without_matplotlib_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    notes = cnn.write_plots(tmp_path, trainer=None)
    assert len(notes) == 1 and "matplotlib is not installed" in notes[0] and "[plot]" in notes[0]
    assert list(tmp_path.iterdir()) == []


def test_confusion_matrix():
    m = cnn.confusion(np.array([0, 1, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert m.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
    assert "true\\pred" in cnn.render_confusion(m)
