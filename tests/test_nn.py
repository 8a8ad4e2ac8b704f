"""Layers, recurrent stacks and CharLM (numbanets.nn).

Whole-model gradients against central finite differences in float64 (a small
CNN, 2-layer RNNs and LSTMs through the whole unroll, CharLM's loss), gradient
accumulation and zero_grad, state_dict round trips and their errors, dropout,
shapes and initialisers.
"""

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from numbanets import nn
from numbanets.nn import init

F64 = np.float64


def _param_gradcheck(model, loss_of, name, param, grad, rtol=1e-5, atol=1e-8):
    """Compare grad (from backward) with d loss_of() / d param by central differences."""
    saved = param.copy()

    def fn(a):
        param[...] = a
        return loss_of()

    num = numerical_grad(fn, [saved], 0, 1.0)
    param[...] = saved
    assert_close(grad, num, rtol=rtol, atol=atol, name=name)


def _check_model(model, forward, dout, x=None, backward_dx=None):
    """Gradient check of L = sum(forward() * dout) w.r.t. every parameter (and x when given)."""
    model.zero_grad()
    forward()
    dx = model.backward(dout)
    grads = {name: g.copy() for name, _, g in model.named_parameters()}
    assert grads, "the model has no parameters"
    loss = lambda: forward() * dout  # noqa: E731 - numerical_grad contracts with dout = 1
    for name, p, _ in model.named_parameters():
        _param_gradcheck(model, loss, name, p, grads[name])
    if x is not None:
        _param_gradcheck(model, loss, "dx", x, dx)


# --------------------------------------------------------------------------- CNN

def _small_cnn(rng):
    return nn.Sequential(
        nn.Conv2D(2, 4, 3, padding="same", rng=rng, dtype=F64),
        nn.ReLU(),
        nn.MaxPool2D(2),
        nn.Conv2D(4, 4, 3, padding=1, groups=2, rng=rng, dtype=F64),
        nn.Tanh(),
        nn.Flatten(),
        nn.Linear(4 * 3 * 3, 3, rng=rng, dtype=F64),
    )


def test_cnn_gradients_match_finite_differences(rng):
    model = _small_cnn(rng)
    x = rng.standard_normal((2, 2, 6, 6))
    assert model.output_shape(x.shape) == (2, 3)
    dout = rng.standard_normal((2, 3))
    _check_model(model, lambda: model.forward(x), dout, x=x)


def test_cnn_names_and_counts(rng):
    model = _small_cnn(rng)
    names = [n for n, _, _ in model.named_parameters()]
    assert names == ["0.w", "0.b", "3.w", "3.b", "6.w", "6.b"]
    assert model[3].params["w"].shape == (4, 2, 3, 3)
    assert model.num_parameters() == (4 * 2 * 9 + 4) + (4 * 2 * 9 + 4) + (36 * 3 + 3)
    assert all(p.dtype == F64 and g.dtype == F64 and not g.any() for _, p, g in model.named_parameters())


def test_layer_output_shapes_match_forward(rng):
    conv = nn.Conv2D(3, 5, (3, 2), stride=2, padding="same", bias=False, rng=rng)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    y = conv.forward(x)
    assert y.shape == conv.output_shape(x.shape) == (2, 5, 4, 3)
    assert conv.output_shape((3, 7, 6)) == (5, 4, 3)
    assert "b" not in conv.params and y.dtype == np.float32
    pool = nn.MaxPool2D(3, stride=2, padding=1)
    assert pool.forward(y).shape == pool.output_shape(y.shape) == (2, 5, 2, 2)
    with pytest.raises(ValueError, match="input channels"):
        conv.output_shape((4, 7, 6))
    with pytest.raises(ValueError, match="groups"):
        nn.Conv2D(3, 4, 3, groups=2, rng=rng)


def test_bias_free_conv_and_linear_gradients(rng):
    model = nn.Sequential(nn.Conv2D(2, 2, 2, bias=False, rng=rng, dtype=F64), nn.Sigmoid(), nn.Flatten(),
                          nn.Linear(2 * 2 * 2, 2, bias=False, rng=rng, dtype=F64))
    x = rng.standard_normal((3, 2, 3, 3))
    _check_model(model, lambda: model.forward(x), rng.standard_normal((3, 2)), x=x)
    assert [n for n, _, _ in model.named_parameters()] == ["0.w", "3.w"]


# --------------------------------------------------------------------------- recurrent

@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_two_layers_gradients_through_the_unroll(rng, activation):
    T, N, D, H = 4, 2, 3, 4
    model = nn.RNN(D, H, layers=2, activation=activation, rng=rng, dtype=F64)
    x = rng.standard_normal((T, N, D))
    state = [rng.standard_normal((N, H)) * 0.5 for _ in range(2)]
    hs, new_state = model.forward(x, state)
    assert hs.shape == (T, N, H) and len(new_state) == 2
    assert_close(new_state[1], hs[-1], name="top h_T")
    assert [n for n, _, _ in model.named_parameters()] == [
        "l0.w_ih", "l0.w_hh", "l0.b", "l1.w_ih", "l1.w_hh", "l1.b"]
    _check_model(model, lambda: model.forward(x, state)[0], rng.standard_normal((T, N, H)), x=x)


def test_lstm_two_layers_gradients_through_the_unroll(rng):
    T, N, D, H = 4, 2, 3, 3
    model = nn.LSTM(D, H, layers=2, rng=rng, dtype=F64)
    x = rng.standard_normal((T, N, D))
    state = [tuple(rng.standard_normal((N, H)) * 0.5 for _ in range(2)) for _ in range(2)]
    hs, new_state = model.forward(x, state)
    assert hs.shape == (T, N, H) and len(new_state) == 2 and len(new_state[0]) == 2
    assert model.params == {} and model.children["l1"].params["w_hh"].shape == (4 * H, H)
    _check_model(model, lambda: model.forward(x, state)[0], rng.standard_normal((T, N, H)), x=x)
    _check_model(model, lambda: model.forward(x)[0], rng.standard_normal((T, N, H)))


def test_gru_two_layers_gradients_through_the_unroll(rng):
    T, N, D, H = 4, 2, 3, 3
    model = nn.GRU(D, H, layers=2, rng=rng, dtype=F64)
    x = rng.standard_normal((T, N, D))
    state = [rng.standard_normal((N, H)) * 0.5 for _ in range(2)]
    hs, new_state = model.forward(x, state)
    assert hs.shape == (T, N, H) and len(new_state) == 2
    assert_close(new_state[1], hs[-1], name="top h_T")
    assert [n for n, _, _ in model.named_parameters()] == [
        "l0.w_ih", "l0.w_hh", "l0.b_ih", "l0.b_hh", "l1.w_ih", "l1.w_hh", "l1.b_ih", "l1.b_hh"]
    assert model.children["l1"].params["w_hh"].shape == (3 * H, H)
    _check_model(model, lambda: model.forward(x, state)[0], rng.standard_normal((T, N, H)), x=x)
    _check_model(model, lambda: model.forward(x)[0], rng.standard_normal((T, N, H)))


def test_lstm_forget_bias_and_state_validation(rng):
    H = 3
    model = nn.LSTM(2, H, forget_bias=2.0, init="normal", rng=rng)
    b = model.children["l0"].params["b"]
    np.testing.assert_array_equal(b[H:2 * H], 2.0)
    np.testing.assert_array_equal(np.delete(b, np.s_[H:2 * H]), 0.0)
    x = np.zeros((2, 1, 2), np.float32)
    with pytest.raises(ValueError, match="one entry per layer"):
        model.forward(x, [None, None])
    with pytest.raises(ValueError, match=r"\(h, c\) pairs"):
        model.forward(x, [np.zeros((1, H), np.float32)])


# --------------------------------------------------------------------------- CharLM

@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers", [1, 2])
def test_charlm_loss_and_grad_matches_finite_differences(rng, cell, layers):
    V, H, T, N = 5, 4, 3, 2
    model = nn.CharLM(V, H, layers, cell=cell, rng=rng, dtype=F64, init="uniform", init_scale=0.5)
    inputs = rng.integers(0, V, (T, N))
    targets = rng.integers(0, V, (T, N))
    state = None
    if layers == 2:  # a carried-in state: used in the forward pass, no gradient flows into it
        h = [rng.standard_normal((N, H)) * 0.5 for _ in range(2)]
        state = [(a, a[::-1].copy()) for a in h] if cell == "lstm" else h
    for _, _, g in model.named_parameters():  # dirty grads: loss_and_grad must zero them first
        g += 1.0
    loss, new_state = model.loss_and_grad(inputs, targets, state)
    assert np.isfinite(loss) and len(new_state) == layers
    grads = {name: g.copy() for name, _, g in model.named_parameters()}
    assert_close(model.loss(inputs, targets, state)[0], loss, rtol=1e-14, name="loss")
    for name, p, _ in model.named_parameters():
        _param_gradcheck(model, lambda: model.loss(inputs, targets, state)[0], name, p, grads[name])


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
def test_charlm_carried_state_equals_one_long_window(rng, cell):
    V, H, T, N = 6, 5, 6, 3
    model = nn.CharLM(V, H, 2, cell=cell, rng=rng, dtype=F64)
    idx = rng.integers(0, V, (T, N))
    whole, state_whole = model.forward(idx)
    first, state = model.forward(idx[:2])
    second, state = model.forward(idx[2:], state)
    assert whole.shape == (T * N, V)
    assert_close(np.concatenate([first, second]), whole, rtol=1e-12, atol=1e-14, name="logits")
    for a, b in zip(np.ravel(state), np.ravel(state_whole)):
        assert_close(a, b, rtol=1e-12, atol=1e-14, name="state")
    logits, _ = model.next_logits(idx[:, 1])
    assert_close(logits, whole[(T - 1) * N + 1], rtol=1e-12, atol=1e-14, name="next_logits")
    with pytest.raises(ValueError, match="0..5"):
        model.forward(np.full((2, 2), V))
    with pytest.raises(ValueError, match="targets"):
        model.loss_and_grad(idx, idx[:2])


def test_charlm_config_rebuilds_the_model(rng):
    model = nn.CharLM(7, 4, 2, cell="rnn", activation="relu", init="identity", rng=rng)
    clone = nn.CharLM(**{k: v for k, v in model.config().items() if k != "dtype"},
                      dtype=model.config()["dtype"], rng=np.random.default_rng(1))
    clone.load_state_dict(model.state_dict())
    idx = rng.integers(0, 7, (3, 2))
    np.testing.assert_array_equal(clone.forward(idx)[0], model.forward(idx)[0])


# --------------------------------------------------------------------------- Module plumbing

def test_gradients_accumulate_and_zero_grad_resets(rng):
    model = _small_cnn(rng)
    x = rng.standard_normal((2, 2, 6, 6))
    dout = rng.standard_normal((2, 3))
    model.forward(x)
    model.backward(dout)
    once = {n: g.copy() for n, _, g in model.named_parameters()}
    model.forward(x)
    model.backward(dout)
    for n, _, g in model.named_parameters():
        assert_close(g, 2 * once[n], rtol=1e-12, atol=1e-15, name=n)
    grads_before = {n: g for n, _, g in model.named_parameters()}
    model.zero_grad()
    for n, _, g in model.named_parameters():
        assert g is grads_before[n] and not g.any()  # zeroed in place


def test_backward_releases_what_forward_saved(rng):
    # each backward frees its forward's activations (a lower peak while the rest of the backward runs);
    # a second backward without a forward is a clear error, and the next forward/backward pair works
    model = _small_cnn(rng)
    x = rng.standard_normal((2, 2, 6, 6))
    dout = rng.standard_normal((2, 3))
    model.forward(x)
    model.backward(dout)
    for layer in model:
        for attr in ("x", "y", "indices"):
            assert getattr(layer, attr, None) is None, (type(layer).__name__, attr)
    with pytest.raises(RuntimeError, match="Linear.backward needs a forward first"):
        model.backward(dout)
    lstm = nn.LSTM(3, 2, layers=2, rng=rng, dtype=F64)
    lstm.forward(rng.standard_normal((3, 2, 3)))
    lstm.backward(rng.standard_normal((3, 2, 2)))
    with pytest.raises(RuntimeError, match="LSTMLayer.backward needs a forward first"):
        lstm.backward(rng.standard_normal((3, 2, 2)))
    model.forward(x)
    with pytest.raises(ValueError):
        model.backward(dout[:, :2])  # a bad dy: the failed backward keeps the activations for a retry
    model.backward(dout)


def test_recurrent_gradients_accumulate(rng):
    model = nn.LSTM(3, 2, layers=2, rng=rng, dtype=F64)
    x = rng.standard_normal((3, 2, 3))
    dhs = rng.standard_normal((3, 2, 2))
    model.forward(x)
    model.backward(dhs)
    once = [g.copy() for g in model.gradients()]
    model.forward(x)
    model.backward(dhs)
    for a, b in zip(model.gradients(), once):
        assert_close(a, 2 * b, rtol=1e-12, atol=1e-15)


def test_state_dict_round_trip_is_exact(rng):
    a = nn.CharLM(5, 3, 2, rng=rng)
    b = nn.CharLM(5, 3, 2, rng=np.random.default_rng(99))
    sd = a.state_dict()
    assert list(sd) == [n for n, _, _ in a.named_parameters()]
    assert all(isinstance(v, np.ndarray) and v.dtype == np.float32 for v in sd.values())
    params_before = b.parameters()
    b.load_state_dict(sd)
    assert all(p is q for p, q in zip(b.parameters(), params_before))  # loaded in place
    for (n, v), w in zip(b.state_dict().items(), sd.values()):
        np.testing.assert_array_equal(v, w, err_msg=n)
    sd["head.b"][:] = 123.0  # a copy: the model does not change
    assert not (a.head.params["b"] == 123.0).any()
    idx = rng.integers(0, 5, (4, 2))
    np.testing.assert_array_equal(a.forward(idx)[0], b.forward(idx)[0])


def test_load_state_dict_names_the_bad_key(rng):
    model = nn.Sequential(nn.Linear(3, 2, rng=rng), nn.Tanh(), nn.Linear(2, 1, rng=rng))
    good = model.state_dict()
    missing = dict(good)
    del missing["2.b"]
    with pytest.raises(ValueError, match=r"missing parameter '2\.b'"):
        model.load_state_dict(missing)
    with pytest.raises(ValueError, match=r"unexpected key 'extra'"):
        model.load_state_dict({**good, "extra": np.zeros(1)})
    with pytest.raises(ValueError, match=r"'0\.w'.*shape \(2, 4\)"):
        model.load_state_dict({**good, "0.w": np.zeros((2, 4), np.float32)})
    with pytest.raises(ValueError, match=r"'0\.b'.*dtype float64"):
        model.load_state_dict({**good, "0.b": np.zeros(2)})
    before = model.state_dict()
    with pytest.raises(ValueError):  # nothing is half-loaded
        model.load_state_dict({**{k: v + 1 for k, v in good.items()}, "2.w": np.zeros((3, 3), np.float32)})
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])


def test_train_eval_and_dropout(rng):
    drop = nn.Dropout(0.25, rng=rng)
    model = nn.Sequential(nn.Linear(4, 400, rng=rng), drop)
    x = rng.standard_normal((50, 4)).astype(np.float32)
    y = model.forward(x)
    kept = y != 0
    assert 0.65 < kept.mean() < 0.85
    pre = model[0].forward(x)
    np.testing.assert_allclose(y[kept], pre[kept] / 0.75, rtol=1e-6)
    dy = np.ones_like(y)
    np.testing.assert_array_equal(drop.backward(dy), kept / np.float32(0.75))
    model.eval()
    assert not drop.training and not model.training
    np.testing.assert_array_equal(model.forward(x), pre)
    np.testing.assert_array_equal(drop.backward(dy), dy)
    model.train()
    assert drop.training
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.0, rng=rng)


def test_dropout_gradcheck_with_fixed_mask(rng):
    model = nn.Sequential(nn.Linear(3, 6, rng=rng, dtype=F64), nn.Dropout(0.5, rng=rng), nn.ReLU())
    x = rng.standard_normal((4, 3))
    model.forward(x)
    mask = model[1].mask
    model[1].forward = lambda z: z * mask  # noqa: the mask stays fixed under perturbation
    _check_model(model, lambda: model.forward(x), rng.standard_normal((4, 6)), x=x)


def test_to_and_errors(rng):
    model = nn.Linear(2, 2, rng=rng)
    assert model.to("cpu") is model and model.device == "cpu"
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        model.to("tpu")
    with pytest.raises(ValueError, match="activation must be one of"):
        nn.Activation("softsign")
    with pytest.raises(ValueError, match="init must be one of"):
        nn.RNN(2, 2, init="zeros", rng=rng)


# --------------------------------------------------------------------------- initialisers

def test_initialisers(rng):
    q = init.orthogonal(rng, (6, 4), gain=2.0, dtype=F64)
    assert_close(q.T @ q, 4 * np.eye(4), atol=1e-12, name="Q^T Q")
    w = init.orthogonal(rng, (3, 5), dtype=F64)
    assert_close(w @ w.T, np.eye(3), atol=1e-12, name="Q Q^T")
    np.testing.assert_array_equal(init.identity((6, 3), 0.5), np.tile(0.5 * np.eye(3), (2, 1)))
    w_ih, w_hh, b = init.recurrent("uniform", rng, 3, 16, gates=4, init_scale=0.08)
    assert w_ih.shape == (64, 3) and w_hh.shape == (64, 16) and b.shape == (64,)
    assert max(abs(w_ih).max(), abs(w_hh).max(), abs(b).max()) <= 0.08 and w_ih.dtype == np.float32
    w_ih, w_hh, b = init.recurrent("uniform", rng, 3, 16)
    assert abs(w_hh).max() <= 0.25 and abs(w_hh).max() > 0.2
    w_ih, w_hh, b = init.recurrent("orthogonal", rng, 3, 4, gates=4, dtype=F64)
    for k in range(4):
        blk = w_hh[4 * k:4 * k + 4]
        assert_close(blk @ blk.T, np.eye(4), atol=1e-12, name="orthogonal gate block")
    rnn = nn.RNN(2, 3, init="identity", init_scale=0.5, activation="relu", rng=rng)
    np.testing.assert_array_equal(rnn.children["l0"].params["w_hh"], 0.5 * np.eye(3, dtype=np.float32))
    lin = nn.Linear(100, 50, rng=rng)
    assert abs(lin.params["w"]).max() <= 0.1 and abs(lin.params["w"]).max() > 0.09
