"""The references themselves: hand-computed tiny cases, then parity with torch when it is installed."""

import math

import numpy as np
import pytest

from gradcheck import assert_close, numerical_grad
from reference import (
    activation_ref,
    adagrad_ref,
    adam_ref,
    clip_grad_norm_ref,
    conv1d_ref,
    conv2d_ref,
    linear_ref,
    lstm_ref,
    max_pool1d_ref,
    max_pool2d_ref,
    resolve_padding_ref,
    rmsprop_ref,
    rnn_ref,
    sgd_ref,
    softmax_cross_entropy_ref,
    softmax_ref,
)

# ------------------------------------------------------------ hand-computed --


@pytest.mark.parametrize(
    "padding, size, kernel, stride, expected",
    [
        ("valid", 5, 3, 1, (0, 0)),
        ("same", 5, 3, 1, (1, 1)),
        ("same", 5, 3, 2, (1, 1)),
        ("same", 4, 3, 2, (0, 1)),
        ("same", 6, 4, 1, (1, 2)),
        ("same", 7, 1, 3, (0, 0)),
        ("full", 5, 3, 1, (2, 2)),
        ("full", 9, 5, 1, (4, 4)),
        (2, 5, 3, 1, (2, 2)),
    ],
)
def test_resolve_padding_table(padding, size, kernel, stride, expected):
    assert resolve_padding_ref(padding, size, kernel, stride) == expected


def test_conv2d_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    centre = np.zeros((1, 1, 3, 3))
    centre[0, 0, 1, 1] = 1.0
    assert_close(conv2d_ref(x, centre, padding=1), x, 0, 0, "centre tap is the identity")
    assert_close(conv2d_ref(x, centre, padding="same"), x, 0, 0, "same")
    ones2 = np.ones((1, 1, 2, 2))
    assert_close(conv2d_ref(x, ones2), [[[[8, 12], [20, 24]]]], 0, 0, "2x2 box, valid")
    # 3x3 box, stride 2, padding 1, bias 1: each output sees a 2x2 corner of x
    y = conv2d_ref(x, np.ones((1, 1, 3, 3)), b=[1.0], stride=2, padding=1)
    assert_close(y, [[[[9, 13], [21, 25]]]], 0, 0, "3x3 box, stride 2, pad 1")
    # cross-correlation, not convolution: the kernel is not flipped
    k = np.zeros((1, 1, 1, 2))
    k[0, 0, 0, 1] = 1.0
    assert_close(conv2d_ref(x, k), x[:, :, :, 1:], 0, 0, "right neighbour")


def test_conv2d_groups_hand():
    x = np.array([2.0, 3.0]).reshape(1, 2, 1, 1)
    w = np.array([5.0, 7.0]).reshape(2, 1, 1, 1)
    assert_close(conv2d_ref(x, w, groups=2), np.array([10.0, 21.0]).reshape(1, 2, 1, 1), 0, 0, "groups=2")
    assert_close(conv2d_ref(x, w.reshape(1, 2, 1, 1)), [[[[31.0]]]], 0, 0, "groups=1")


def test_conv1d_hand():
    x = np.array([1.0, 2.0, 3.0, 4.0]).reshape(1, 1, 4)
    w = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 3)
    assert_close(conv1d_ref(x, w), [[[-2, -2]]], 0, 0, "valid")
    assert_close(conv1d_ref(x, w, padding="full"), [[[-1, -2, -2, -2, 3, 4]]], 0, 0, "full")
    assert_close(conv1d_ref(x, w, stride=2, padding="same"), [[[-2, 3]]], 0, 0, "same, stride 2 (one pad after)")


def test_max_pool2d_hand():
    x = np.array([[1, 5, 2, 0], [3, 4, 8, 1], [9, 0, 2, 2], [1, 1, 3, 7]], dtype=float).reshape(1, 1, 4, 4)
    y, idx = max_pool2d_ref(x, 2)
    assert_close(y, [[[[5, 8], [9, 7]]]], 0, 0, "y")
    assert idx.dtype == np.int64
    assert idx.tolist() == [[[[1, 6], [8, 15]]]]
    # stride 1, a (2, 3) window
    y, idx = max_pool2d_ref(x, (2, 3), stride=1)
    assert_close(y, [[[[8, 8], [9, 8], [9, 7]]]], 0, 0, "y (2,3) stride 1")
    assert idx.tolist() == [[[[6, 6], [8, 6], [8, 15]]]]


def test_max_pool2d_ties_and_padding():
    # all equal: the first tap in row-major order wins
    y, idx = max_pool2d_ref(np.full((1, 1, 2, 2), 7.0), 2)
    assert idx.tolist() == [[[[0]]]]
    # padding is -inf: a window seeing one -1 pixel and three pads returns that pixel
    y, idx = max_pool2d_ref(-np.ones((1, 1, 2, 2)), 2, stride=1, padding=1)
    assert_close(y, -np.ones((1, 1, 3, 3)), 0, 0, "negative input with padding")
    assert idx.tolist() == [[[[0, 0, 1], [0, 0, 1], [2, 2, 3]]]]


def test_max_pool1d_hand():
    x = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0]).reshape(1, 1, 7)
    y, idx = max_pool1d_ref(x, 2)
    assert_close(y, [[[3, 4, 9]]], 0, 0, "y")
    assert idx.tolist() == [[[0, 2, 5]]]
    y, idx = max_pool1d_ref(x, 3, stride=2, padding=1)
    assert_close(y, [[[3, 4, 9, 9]]], 0, 0, "y padded")
    assert idx.tolist() == [[[0, 2, 5, 5]]]


def test_linear_hand():
    x = np.array([[1.0, 2.0]])
    w = np.array([[3.0, 4.0], [-1.0, 0.5]])
    assert_close(linear_ref(x, w, [0.5, -1.0]), [[11.5, -1.0]], 0, 0, "linear")
    assert_close(linear_ref(x, w), [[11.0, 0.0]], 0, 0, "linear without bias")


def test_activations_hand():
    x = np.array([[-2.0, 0.0], [1.0, 800.0]])
    assert_close(activation_ref(x, "identity"), x, 0, 0, "identity")
    assert_close(activation_ref(x, "relu"), [[0, 0], [1, 800]], 0, 0, "relu")
    assert_close(activation_ref(x, "tanh"), [[math.tanh(-2), 0], [math.tanh(1), 1]], 1e-15, 0, "tanh")
    assert_close(activation_ref(-x, "sigmoid"), [[1 / (1 + math.exp(-2)), 0.5], [1 / (1 + math.e), 0]],
                 1e-15, 1e-300, "sigmoid (no overflow at -800)")
    with pytest.raises(ValueError):
        activation_ref(x, "gelu")


def test_softmax_and_cross_entropy_hand():
    assert_close(softmax_ref([[0.0, math.log(3.0)]]), [[0.25, 0.75]], 1e-15, 0, "softmax")
    assert_close(softmax_ref([[1000.0, 1000.0]]), [[0.5, 0.5]], 0, 0, "softmax, large logits")
    assert softmax_cross_entropy_ref([[0.0, 0.0]], [0]) == pytest.approx(math.log(2.0), rel=1e-15)
    assert softmax_cross_entropy_ref([[1000.0, 0.0]], [1]) == pytest.approx(1000.0, rel=1e-15)
    # mean over the batch
    loss = softmax_cross_entropy_ref([[0.0, 0.0], [0.0, math.log(3.0)]], [0, 1])
    assert loss == pytest.approx((math.log(2.0) + math.log(4.0 / 3.0)) / 2, rel=1e-15)


def test_rnn_hand():
    x = np.array([1.0, 0.0]).reshape(2, 1, 1)  # T=2, N=1, D=1
    h0 = np.array([[0.5, -1.0]])
    w_ih = np.array([[2.0], [0.0]])
    w_hh = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([0.0, 0.5])
    # step 1: a = (2*1 + 0.5, 0.5 + 0.5 - 1) = (2.5, 0); step 2 (relu): a = (2.5, 0.5 + 2.5 + 0) = (2.5, 3)
    assert_close(rnn_ref(x, h0, w_ih, w_hh, b, "relu"), [[[2.5, 0.0]], [[2.5, 3.0]]], 0, 0, "relu rnn")
    t1 = math.tanh(2.5)
    hs = rnn_ref(x[:1], h0, w_ih, w_hh, b)
    assert_close(hs, [[[t1, 0.0]]], 1e-15, 0, "tanh rnn, 1 step")
    hs = rnn_ref(x, h0, w_ih, w_hh, b, "tanh")
    assert_close(hs[1], [[math.tanh(t1), math.tanh(0.5 + t1)]], 1e-15, 0, "tanh rnn, step 2")


def test_lstm_hand():
    # H = D = 1, no weights: i = f = o = sigmoid(0) = 0.5 and g = tanh(b_g) = 0.8
    b = np.array([0.0, 0.0, math.atanh(0.8), 0.0])
    zeros = np.zeros((4, 1))
    x = np.zeros((2, 1, 1))
    hs, cs = lstm_ref(x, [[0.3]], [[2.0]], zeros, zeros, b)
    c1 = 0.5 * 2.0 + 0.5 * 0.8
    c2 = 0.5 * c1 + 0.5 * 0.8
    assert_close(cs, [[[c1]], [[c2]]], 1e-15, 0, "cs")
    assert_close(hs, [[[0.5 * math.tanh(c1)]], [[0.5 * math.tanh(c2)]]], 1e-15, 0, "hs")
    # gate order: a large forget bias keeps the cell, a large negative input bias blocks g
    b = np.array([-50.0, 50.0, 0.5, 50.0])
    hs, cs = lstm_ref(x[:1], [[0.0]], [[1.5]], zeros, zeros, b)
    assert_close(cs, [[[1.5]]], 1e-15, 0, "cs, f=1 i=0")
    assert_close(hs, [[[math.tanh(1.5)]]], 1e-15, 0, "hs, o=1")


def test_clip_grad_norm_hand():
    grads = [np.array([3.0]), np.array([[4.0]])]
    norm, clipped = clip_grad_norm_ref(grads, 1.0)
    assert norm == 5.0
    assert_close(clipped[0], [0.6], 1e-15, 0, "g0")
    assert_close(clipped[1], [[0.8]], 1e-15, 0, "g1")
    assert grads[0][0] == 3.0  # inputs untouched
    norm, same = clip_grad_norm_ref(grads, 5.0)  # not strictly greater: no scaling
    assert norm == 5.0 and same[0][0] == 3.0 and same[1][0, 0] == 4.0


def test_optimizers_hand():
    p, v = sgd_ref([1.0], [2.0], [0.5], lr=0.1, momentum=0.9, weight_decay=0.5)
    assert_close(v, [2.95], 1e-15, 0, "sgd v")  # g' = 2.5, v = 0.45 + 2.5
    assert_close(p, [0.705], 1e-15, 0, "sgd p")
    p, s = adagrad_ref([1.0], [-2.0], [0.0], lr=0.1, eps=0.0, weight_decay=0.0)
    assert_close(s, [4.0], 0, 0, "adagrad s")
    assert_close(p, [1.1], 1e-15, 0, "adagrad p")
    p, s = rmsprop_ref([1.0], [2.0], [0.0], lr=0.1, alpha=0.75, eps=0.0, weight_decay=0.0)
    assert_close(s, [1.0], 0, 0, "rmsprop s")
    assert_close(p, [0.8], 1e-15, 0, "rmsprop p")
    # Adam's first step moves every parameter by lr * sign(g) (eps = 0)
    p, m, v = adam_ref([1.0, 1.0], [3.0, -0.01], [0.0, 0.0], [0.0, 0.0], lr=0.1, beta1=0.9,
                       beta2=0.999, eps=0.0, step=1, weight_decay=0.0)
    assert_close(p, [0.9, 1.1], 1e-14, 0, "adam p")
    assert_close(m, [0.3, -0.001], 1e-14, 0, "adam m")
    assert_close(v, [0.009, 1e-7], 1e-12, 0, "adam v")
    # inputs are not modified
    p0 = np.array([1.0])
    sgd_ref(p0, [1.0], [0.0], 0.1, 0.9, 0.0)
    assert p0[0] == 1.0


# --------------------------------------------------------------- gradcheck --


def test_numerical_grad_and_assert_close(rng):
    x = rng.standard_normal((3, 2))
    x_before = x.copy()
    dout = rng.standard_normal((3, 2))
    g = numerical_grad(lambda a, k: k * a**3, [x, 2.0], 0, dout)
    assert_close(g, 6.0 * x**2 * dout, 1e-7, 1e-9, "d(2x^3)")
    assert (x == x_before).all(), "the caller's array was perturbed"
    # tuple outputs; None entries are skipped
    g = numerical_grad(lambda a: (a * 2.0, a**2, a), (x,), 0, (dout, None, np.ones_like(x)))
    assert_close(g, 2.0 * dout + 1.0, 1e-7, 1e-9, "tuple output")
    with pytest.raises(AssertionError, match=r"dx: 1 of 6 elements .* max abs error 5\.000e-01 at index \(1, 0\)"):
        bad = x.copy()
        bad[1, 0] += 0.5
        assert_close(bad, x, 1e-7, 0, "dx")
    with pytest.raises(AssertionError, match="shape"):
        assert_close(x, x.T, 0, 0, "shapes")
    with pytest.raises(AssertionError):
        assert_close([np.nan], [np.nan], 0, 0, "nan")


def test_conv2d_reference_gradient_is_linear(rng):
    # dL/dw of L = sum(conv(x, w) * dout) is the correlation of x with dout; checked at one tap by hand
    x = rng.standard_normal((1, 1, 4, 4))
    w = rng.standard_normal((1, 1, 2, 2))
    dout = rng.standard_normal((1, 1, 3, 3))
    dw = numerical_grad(lambda w: conv2d_ref(x, w), [w], 0, dout)
    expected = sum(dout[0, 0, i, j] * x[0, 0, i + 1, j] for i in range(3) for j in range(3))
    assert dw[0, 0, 1, 0] == pytest.approx(expected, rel=1e-7)


# ------------------------------------------------------------ against torch --


def _t(torch, a):
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("stride", [1, 2, (2, 1)])
@pytest.mark.parametrize("padding", [0, (1, 2), "same", "full"])
def test_conv2d_vs_torch(torch, rng, groups, stride, padding):
    F = torch.nn.functional
    N, H, W, KH, KW = 2, 6, 5, 3, 2
    C, Fo = 2 * groups, 3 * groups
    x = rng.standard_normal((N, C, H, W))
    w = rng.standard_normal((Fo, C // groups, KH, KW))
    b = rng.standard_normal(Fo)
    sh, sw = (stride, stride) if isinstance(stride, int) else stride
    pad_h, pad_w = (padding, padding) if not isinstance(padding, tuple) else padding
    top, bottom = resolve_padding_ref(pad_h, H, KH, sh)
    left, right = resolve_padding_ref(pad_w, W, KW, sw)
    expected = F.conv2d(F.pad(_t(torch, x), (left, right, top, bottom)), _t(torch, w), _t(torch, b),
                        stride=(sh, sw), groups=groups).numpy()
    assert_close(conv2d_ref(x, w, b, stride, padding, groups), expected, 1e-12, 1e-12, "conv2d")


@pytest.mark.parametrize("groups, stride, padding", [(1, 1, 0), (3, 2, 1), (1, 2, "same"), (3, 1, "full")])
def test_conv1d_vs_torch(torch, rng, groups, stride, padding):
    F = torch.nn.functional
    x = rng.standard_normal((2, 3, 9))
    w = rng.standard_normal((6, 3 // groups, 3))
    before, after = resolve_padding_ref(padding, 9, 3, stride)
    expected = F.conv1d(F.pad(_t(torch, x), (before, after)), _t(torch, w), None, stride=stride,
                        groups=groups).numpy()
    assert_close(conv1d_ref(x, w, None, stride, padding, groups), expected, 1e-12, 1e-12, "conv1d")


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 1, 1), (3, 2, 1), ((2, 3), (1, 2), (1, 1))])
def test_max_pool2d_vs_torch(torch, rng, kernel, stride, padding):
    x = rng.standard_normal((2, 2, 7, 6))
    y, idx = max_pool2d_ref(x, kernel, stride, padding)
    yt, it = torch.nn.functional.max_pool2d(_t(torch, x), kernel, stride, padding, return_indices=True)
    assert_close(y, yt.numpy(), 0, 0, "y")
    assert np.array_equal(idx, it.numpy())
    # ties on integer-valued input: same first-wins rule as torch
    xi = rng.integers(0, 3, (2, 2, 7, 6)).astype(np.float64)
    _, idx = max_pool2d_ref(xi, kernel, stride, padding)
    _, it = torch.nn.functional.max_pool2d(_t(torch, xi), kernel, stride, padding, return_indices=True)
    assert np.array_equal(idx, it.numpy())


def test_max_pool1d_vs_torch(torch, rng):
    x = rng.standard_normal((2, 3, 11))
    for kernel, stride, padding in [(2, None, 0), (3, 2, 1), (4, 1, 2)]:
        y, idx = max_pool1d_ref(x, kernel, stride, padding)
        yt, it = torch.nn.functional.max_pool1d(_t(torch, x), kernel, stride, padding, return_indices=True)
        assert_close(y, yt.numpy(), 0, 0, "y")
        assert np.array_equal(idx, it.numpy())


def test_dense_vs_torch(torch, rng):
    F = torch.nn.functional
    x, w, b = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal(3)
    assert_close(linear_ref(x, w, b), F.linear(_t(torch, x), _t(torch, w), _t(torch, b)).numpy(), 1e-12, 1e-12,
                 "linear")
    z = 4.0 * rng.standard_normal((3, 6))
    for name, fn in [("tanh", torch.tanh), ("sigmoid", torch.sigmoid), ("relu", torch.relu)]:
        assert_close(activation_ref(z, name), fn(_t(torch, z)).numpy(), 1e-14, 1e-300, name)
    assert_close(softmax_ref(z), torch.softmax(_t(torch, z), 1).numpy(), 1e-13, 1e-300, "softmax")
    targets = rng.integers(0, 6, 3)
    expected = F.cross_entropy(_t(torch, z), torch.from_numpy(targets)).item()
    assert softmax_cross_entropy_ref(z, targets) == pytest.approx(expected, rel=1e-13)


def _copy_weights(torch, module, w_ih, w_hh, b):
    with torch.no_grad():
        module.weight_ih_l0.copy_(_t(torch, w_ih))
        module.weight_hh_l0.copy_(_t(torch, w_hh))
        module.bias_ih_l0.copy_(_t(torch, b))
        module.bias_hh_l0.zero_()


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_vs_torch(torch, rng, activation):
    T, N, D, H = 4, 2, 3, 5
    x, h0 = rng.standard_normal((T, N, D)), rng.standard_normal((N, H))
    w_ih, w_hh, b = 0.5 * rng.standard_normal((H, D)), 0.5 * rng.standard_normal((H, H)), rng.standard_normal(H)
    module = torch.nn.RNN(D, H, nonlinearity=activation).double()
    _copy_weights(torch, module, w_ih, w_hh, b)
    with torch.no_grad():
        out, _ = module(_t(torch, x), _t(torch, h0)[None])
    assert_close(rnn_ref(x, h0, w_ih, w_hh, b, activation), out.numpy(), 1e-12, 1e-12, "hs")


def test_lstm_vs_torch(torch, rng):
    T, N, D, H = 4, 2, 3, 5
    x = rng.standard_normal((T, N, D))
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    w_ih, w_hh = 0.5 * rng.standard_normal((4 * H, D)), 0.5 * rng.standard_normal((4 * H, H))
    b = rng.standard_normal(4 * H)
    module = torch.nn.LSTM(D, H).double()
    _copy_weights(torch, module, w_ih, w_hh, b)
    with torch.no_grad():
        out, (h_T, c_T) = module(_t(torch, x), (_t(torch, h0)[None], _t(torch, c0)[None]))
    hs, cs = lstm_ref(x, h0, c0, w_ih, w_hh, b)
    assert_close(hs, out.numpy(), 1e-12, 1e-12, "hs")
    assert_close(cs[-1], c_T[0].numpy(), 1e-12, 1e-12, "c_T")


def test_clip_grad_norm_vs_torch(torch, rng):
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    params = []
    for g in grads:
        p = torch.nn.Parameter(_t(torch, np.zeros_like(g)))
        p.grad = _t(torch, g.copy())
        params.append(p)
    total = torch.nn.utils.clip_grad_norm_(params, 0.5).item()
    norm, clipped = clip_grad_norm_ref(grads, 0.5)
    assert norm == pytest.approx(total, rel=1e-13)
    for c, p in zip(clipped, params):  # torch divides by norm + 1e-6
        assert_close(c, p.grad.numpy(), 1e-5, 0, "clipped")


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_optimizers_vs_torch(torch, rng, weight_decay):
    p0 = rng.standard_normal(6)
    grads = [rng.standard_normal(6) for _ in range(3)]

    def torch_run(cls, **kw):
        p = torch.nn.Parameter(_t(torch, p0.copy()))
        opt = cls([p], weight_decay=weight_decay, **kw)
        for g in grads:
            p.grad = _t(torch, g)
            opt.step()
        return p.detach().numpy()

    zero = np.zeros(6)
    p, v = p0, zero
    for g in grads:
        p, v = sgd_ref(p, g, v, 0.1, 0.9, weight_decay)
    assert_close(p, torch_run(torch.optim.SGD, lr=0.1, momentum=0.9), 1e-12, 1e-12, "sgd")
    p, s = p0, zero
    for g in grads:
        p, s = adagrad_ref(p, g, s, 0.1, 1e-10, weight_decay)
    assert_close(p, torch_run(torch.optim.Adagrad, lr=0.1, eps=1e-10), 1e-12, 1e-12, "adagrad")
    p, s = p0, zero
    for g in grads:
        p, s = rmsprop_ref(p, g, s, 0.01, 0.99, 1e-8, weight_decay)
    assert_close(p, torch_run(torch.optim.RMSprop, lr=0.01, alpha=0.99, eps=1e-8), 1e-12, 1e-12, "rmsprop")
    p, m, v = p0, zero, zero
    for step, g in enumerate(grads, start=1):
        p, m, v = adam_ref(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, step, weight_decay)
    assert_close(p, torch_run(torch.optim.Adam, lr=0.01, betas=(0.9, 0.999), eps=1e-8), 1e-12, 1e-12, "adam")
