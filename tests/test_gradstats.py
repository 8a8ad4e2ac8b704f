"""Theory checks of numbanets.gradstats (float64): the exact decay rates of docs/theory.md's
grad-decay section, the Pascanu et al. bounds, Gelfand's formula for a linear RNN, and
the explicit Jacobian products against the backward kernels and finite differences."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from numbanets import gradstats as gs

TOL = 1e-10
RNN_CELLS = ("rnn-tanh", "rnn-sigmoid", "rnn-relu", "rnn-identity")
ALL_CELLS = RNN_CELLS + ("lstm", "gru")


def _stats(cell, T=7, N=3, h0=0.0, x=None, rng=None):
    rng = rng or np.random.default_rng(0)
    H, D = cell.hidden, cell.input_size
    x = np.zeros((T, N, D)) if x is None else x
    readout = rng.normal(size=(5, H))
    targets = rng.integers(0, 5, N)
    return gs.gradient_statistics(cell, x, np.full((N, H), h0), readout, targets)


def _cell(name, H=8, D=3, init="identity", scale=1.0, bias=0.0, forget_bias=1.0, seed=0):
    return gs.make_cell(name, H, D, np.random.default_rng(seed), init=init, scale=scale,
                        bias=bias, forget_bias=forget_bias)


def _k(T):
    return T - np.arange(1, T + 1)


# --------------------------------------------------------------------------- exact theory lines

def test_tanh_half_identity_decays_as_half_to_the_k():
    st = _stats(_cell("rnn-tanh", init="identity", scale=0.5))
    np.testing.assert_allclose(st.steps["jac_spec"], 0.5 ** _k(7), rtol=0, atol=TOL)
    np.testing.assert_allclose(st.steps["grad_ratio"], 0.5 ** _k(7), rtol=0, atol=TOL)
    np.testing.assert_allclose(st.steps["jac_step_spec"][:-1], 0.5, rtol=0, atol=TOL)
    assert math.isclose(st.summary["effective_rate"], 0.5, abs_tol=TOL)
    assert math.isclose(st.summary["decay_slope"], math.log10(2), abs_tol=TOL)
    assert math.isclose(st.summary["steps_to_1e-3"], 3 / math.log10(2), rel_tol=TOL)
    assert st.summary["rho"] == pytest.approx(0.5, abs=TOL) and st.summary["lambda1_gamma"] == pytest.approx(0.5)


@pytest.mark.parametrize("g", [0.7, 1.0, 1.3])
def test_tanh_scaled_orthogonal_all_singular_values_are_g_to_the_k(g):
    T = 7
    cell = _cell("rnn-tanh", init="orthogonal", scale=g, seed=3)
    u = gs.unroll(cell, np.zeros((T, 2, 3)), np.zeros((2, 8)))
    P = gs.jacobian_products(u)
    for t in range(1, T + 1):
        sv = np.linalg.svd(P[t], compute_uv=False)
        np.testing.assert_allclose(sv, g ** (T - t), rtol=TOL, atol=0)
    st = _stats(cell, T=T)
    np.testing.assert_allclose(st.steps["jac_spec"], g ** _k(T), rtol=TOL)
    np.testing.assert_allclose(st.steps["jac_fro2"], g ** (2 * _k(T)), rtol=TOL)


@pytest.mark.parametrize("c, rate", [(1.0, 0.25), (4.0, 1.0), (6.0, 1.5)])
def test_sigmoid_at_its_fixed_point_decays_as_c_over_4_to_the_k(c, rate):
    st = _stats(_cell("rnn-sigmoid", init="identity", scale=c, bias=-c / 2), h0=0.5)
    np.testing.assert_allclose(st.steps["dphi_max"], 0.25, rtol=0, atol=TOL)
    np.testing.assert_allclose(st.steps["jac_spec"], rate ** _k(7), rtol=TOL)
    np.testing.assert_allclose(st.steps["grad_ratio"], rate ** _k(7), rtol=TOL)
    assert st.summary["lambda1_gamma"] == pytest.approx(c / 4, abs=TOL)


def test_relu_identity_irnn_keeps_the_gradient():
    st = _stats(_cell("rnn-relu", init="identity", scale=1.0), h0=0.7)
    np.testing.assert_allclose(st.steps["jac_spec"], 1.0, rtol=0, atol=TOL)
    np.testing.assert_allclose(st.steps["grad_ratio"], 1.0, rtol=0, atol=TOL)
    assert st.summary["effective_rate"] == pytest.approx(1.0, abs=TOL)
    assert st.summary["steps_to_1e-3"] == math.inf


@pytest.mark.parametrize("b_f, expected", [(0.0, 0.015625), (1.0, 0.15266), (2.0, 0.46693)])
def test_lstm_without_recurrence_keeps_the_cell_as_sigmoid_bf_to_the_k(b_f, expected):
    st = _stats(_cell("lstm", init="zero", forget_bias=b_f))
    f = 1.0 / (1.0 + math.exp(-b_f))
    np.testing.assert_allclose(st.steps["dc_norm"], f ** _k(7), rtol=TOL)
    np.testing.assert_allclose(st.steps["cec_path"], f ** _k(7), rtol=TOL)
    np.testing.assert_allclose(st.steps["gate_f"], f, rtol=TOL)
    assert st.steps["dc_norm"][0] == pytest.approx(expected, abs=5e-6)  # T = 7, k = 6


@pytest.mark.parametrize("b_z", [-1.0, 0.0, 2.0])
def test_gru_without_recurrence_keeps_the_state_as_sigmoid_bz_to_the_k(b_z):
    # w_hh = 0, zero input: z = sigmoid(b_z) at every step and n does not depend on h_{t-1}, so
    # J_t = diag(z) and dh_T/dh_t = sigmoid(b_z)^k exactly (the update gate plays the forget gate's part)
    st = _stats(_cell("gru", init="zero", bias=b_z))
    z = 1.0 / (1.0 + math.exp(-b_z))
    np.testing.assert_allclose(st.steps["jac_spec"], z ** _k(7), rtol=TOL)
    np.testing.assert_allclose(st.steps["grad_ratio"], z ** _k(7), rtol=TOL)
    np.testing.assert_allclose(st.steps["jac_step_spec"][:-1], z, rtol=TOL)
    assert np.isnan(st.summary["rho"]) and np.isnan(st.summary["gamma"])


def test_linear_rnn_effective_rate_tends_to_rho_not_lambda1(rng):
    # rho = 0.9 from an isolated eigenvalue, lambda1 ~ 1.5 from a non-normal 0.3 + 1.2 shift block;
    # a random orthogonal similarity makes it dense without changing either.
    H = 6
    W = np.zeros((H, H))
    W[0, 0] = 0.9
    W[1:, 1:] = 0.3 * np.eye(H - 1) + 1.2 * np.eye(H - 1, k=1)
    q, _ = np.linalg.qr(rng.normal(size=(H, H)))
    W = q @ W @ q.T
    cell = gs.Cell("rnn-identity", rng.normal(size=(H, 2)), W, np.zeros(H))
    short = _stats(cell, T=2, x=rng.normal(size=(2, 3, 2)))
    long = _stats(cell, T=31, x=rng.normal(size=(31, 3, 2)))
    rho, lam1 = long.summary["rho"], long.summary["lambda1"]
    assert rho == pytest.approx(0.9, abs=1e-12) and lam1 - rho > 0.3
    assert short.summary["effective_rate"] == pytest.approx(lam1, abs=TOL)  # k = 1: ||W||
    assert abs(long.summary["effective_rate"] - rho) < 1e-3  # k = 30


@pytest.mark.parametrize("name", ALL_CELLS)
@pytest.mark.parametrize("init, scale", [("normal", 1.0), ("uniform", 2.5), ("orthogonal", 0.6), ("normal", 4.0)])
def test_pascanu_bounds_hold_per_sample(name, init, scale, rng):
    T, N, H, D = 7, 4, 10, 5
    cell = gs.make_cell(name, H, D, rng, init=init, scale=scale, bias=0.1)
    st = _stats(cell, T=T, N=N, x=rng.normal(size=(T, N, D)), h0=0.2, rng=rng)
    per = st.per_sample
    step = per["jac_step_spec"]  # row t: ||d s_{t+1} / d s_t|| (the LSTM: its whole (h, c) state)
    if cell.kind == "rnn":
        bound = st.summary["lambda1"] * per["dphi_max"][1:]  # phi' of step t + 1
        assert np.all(step[:-1] <= bound + 1e-12)
    for t in range(1, T):
        assert np.all(per["jac_spec"][t - 1] <= np.prod(step[t - 1:T - 1], axis=0) + 1e-12)


def test_step_ratio_is_bounded_by_the_step_jacobian_for_one_sample(rng):
    # ||g_t|| = ||J_{t+1}^T g_{t+1}|| <= ||J_{t+1}|| ||g_{t+1}|| with one batch row (no mean in between)
    for name in RNN_CELLS:
        cell = gs.make_cell(name, 9, 4, rng, scale=1.5)
        st = _stats(cell, N=1, x=rng.normal(size=(7, 1, 4)), h0=0.1, rng=rng)
        assert np.all(st.steps["step_ratio"][:-1] <= st.steps["jac_step_spec"][:-1] + 1e-12)


# --------------------------------------------------------------------------- three routes to the same Jacobian

def _random_unroll(name, rng, T=6, N=2, H=5, D=3, scale=1.3):
    cell = gs.make_cell(name, H, D, rng, init="normal", scale=scale, bias=0.1)
    if name == "gru":  # both biases random: b_hn's place inside r * (...) is part of the Jacobian
        cell = dataclasses.replace(cell, b=rng.normal(size=3 * H) * 0.5, b_hh=rng.normal(size=3 * H) * 0.5)
    c0 = rng.normal(size=(N, H)) * 0.5 if name == "lstm" else None
    return gs.unroll(cell, rng.normal(size=(T, N, D)), rng.normal(size=(N, H)) * 0.5, c0)


@pytest.mark.parametrize("name", ALL_CELLS)
def test_kernel_jacobians_equal_the_explicit_products(name, rng):
    u = _random_unroll(name, rng)
    H = u.cell.hidden
    P = gs.jacobian_products(u)
    for t in range(u.steps):
        K = gs.kernel_jacobians(u, t)
        np.testing.assert_allclose(K, P[t], rtol=0, atol=1e-13)
        np.testing.assert_allclose(gs.spectral_norms(K[:, :H, :H]), gs.spectral_norms(P[t][:, :H, :H]),
                                   rtol=0, atol=TOL)
    # sensitivity to x_1: forward products against dx of the backward kernel
    A = gs.input_jacobian(u, 1)
    for t in range(1, u.steps + 1):
        if t > 1:
            A = gs.step_jacobian(u, t) @ A
        np.testing.assert_allclose(gs.kernel_input_jacobians(u, t), A[:, :H], rtol=0, atol=1e-13)


@pytest.mark.parametrize("name", ("rnn-tanh", "lstm", "gru"))
def test_sensitivity_columns_equal_the_kernel_input_jacobians(name, rng):
    # a read-out wider than H (O = 20 > H = 5) takes the QR route in gradient_statistics
    u = _random_unroll(name, rng)
    readout, readout_bias = rng.normal(size=(20, 5)), rng.normal(size=20)
    st = gs.gradient_statistics(u.cell, u.x, u.h0, readout, rng.integers(0, 20, 2), c0=u.c0,
                                readout_bias=readout_bias)
    for t in range(1, u.steps + 1):
        A = gs.kernel_input_jacobians(u, t)
        assert st.steps["sens_hidden"][t - 1] == pytest.approx(gs.spectral_norms(A).mean(), rel=1e-12)
        assert st.steps["sens_out"][t - 1] == pytest.approx(
            gs.spectral_norms(np.einsum("oh,nhd->nod", readout, A)).mean(), rel=1e-12)


@pytest.mark.parametrize("name", ALL_CELLS)
def test_bptt_grads_equal_the_transposed_products(name, rng):
    u = _random_unroll(name, rng)
    g_T = rng.normal(size=u.h0.shape)
    g, gc = gs.bptt_grads(u, g_T)
    P = gs.jacobian_products(u)
    H = u.cell.hidden
    for t in range(1, u.steps + 1):
        np.testing.assert_allclose(g[t - 1], np.einsum("nij,ni->nj", P[t][:, :H, :H], g_T), rtol=0, atol=1e-13)
        if name == "lstm":  # dL/dc_t = (dh_T/dc_t)^T g_T, the h-to-c block
            np.testing.assert_allclose(gc[t - 1], np.einsum("nij,ni->nj", P[t][:, :H, H:], g_T), rtol=0, atol=1e-13)
        else:
            assert gc is None


@pytest.mark.parametrize("name", ALL_CELLS)
def test_explicit_products_equal_finite_differences(name, rng):
    u = _random_unroll(name, rng, T=5)
    cell, H, S = u.cell, u.cell.hidden, u.cell.state_size
    if name == "rnn-relu":  # no kink within the stencil
        pre = np.einsum("tnd,hd->tnh", u.x, cell.w_ih)
        assert np.min(np.abs(pre[1:] + np.einsum("tnh,kh->tnk", u.hs[:-1], cell.w_hh) + cell.b)) > 1e-2
    P = gs.jacobian_products(u)
    eps = 1e-3
    for t in (1, 3):
        s0 = np.concatenate([u.h(t)] + ([u.c(t)] if cell.kind == "lstm" else []), axis=1)

        def final(s):
            v = gs.unroll(cell, u.x[t:], s[:, :H], s[:, H:] if cell.kind == "lstm" else None)
            return np.concatenate([v.hs[-1]] + ([v.cs[-1]] if cell.kind == "lstm" else []), axis=1)

        fd = np.empty_like(P[t])
        for j in range(S):
            def at(d):
                s = s0.copy()
                s[:, j] += d
                return final(s)
            # five-point stencil: error O(eps^4)
            fd[:, :, j] = (8 * (at(eps) - at(-eps)) - (at(2 * eps) - at(-2 * eps))) / (12 * eps)
        np.testing.assert_allclose(fd, P[t], rtol=0, atol=1e-10)
        np.testing.assert_allclose(gs.spectral_norms(fd[:, :H, :H]), gs.spectral_norms(P[t][:, :H, :H]),
                                   rtol=0, atol=1e-10)


# --------------------------------------------------------------------------- columns, inits, errors

def test_columns_are_complete_and_undefined_ones_are_nan(rng):
    T = 4
    for name in ("rnn-tanh", "lstm"):
        st = _stats(gs.make_cell(name, 6, 3, rng), T=T, x=rng.normal(size=(T, 3, 3)), rng=rng)
        assert set(st.steps) == set(gs.STEP_COLUMNS) and set(st.summary) == set(gs.SUMMARY_COLUMNS)
        assert all(len(v) == T for v in st.steps.values())
        assert st.steps["jac_spec"][-1] == pytest.approx(1.0) and st.steps["grad_ratio"][-1] == 1.0
        assert np.isnan(st.steps["step_ratio"][-1]) and np.isnan(st.steps["jac_step_spec"][-1])
        lstm_cols = ("gate_i", "gate_f", "gate_o", "cec_path", "dc_norm", "grad_c_norm")
        assert all(np.all(np.isnan(st.steps[c])) != (name == "lstm") for c in lstm_cols)
        assert 0 <= st.steps["saturated_frac"].min() and st.steps["saturated_frac"].max() <= 1
    one = _stats(gs.make_cell("rnn-tanh", 4, 2, rng), T=1)
    assert np.isnan(one.summary["effective_rate"]) and np.isnan(one.summary["decay_slope"])


def test_relu_dead_units_count_as_saturated():
    st = _stats(_cell("rnn-relu", init="identity", scale=1.0, bias=-1.0))
    np.testing.assert_allclose(st.steps["saturated_frac"], 1.0)
    assert st.steps["dphi_max"].max() == 0.0


def test_recurrent_inits(rng):
    H = 64
    q = gs.recurrent_matrix("orthogonal", H, 1.7, rng)
    np.testing.assert_allclose(q.T @ q, 1.7 ** 2 * np.eye(H), atol=1e-12)
    np.testing.assert_array_equal(gs.recurrent_matrix("identity", H, 0.5, rng), 0.5 * np.eye(H))
    assert not gs.recurrent_matrix("zero", H, 3.0, rng).any()
    for init in ("normal", "uniform"):
        w = gs.recurrent_matrix(init, H, 2.0, rng)
        assert np.var(w) == pytest.approx(4.0 / H, rel=0.1)
    cell = gs.make_cell("lstm", 4, 3, rng, init="identity", scale=0.5, forget_bias=2.0)
    assert cell.w_hh.shape == (16, 4) and cell.w_ih.shape == (16, 3)
    np.testing.assert_array_equal(cell.b, [0] * 4 + [2] * 4 + [0] * 8)


@pytest.mark.parametrize("kwargs, match", [
    (dict(name="transformer"), "unknown cell 'transformer'"),
    (dict(hidden=0), "hidden size"),
    (dict(scale=0.0), "scale"),
    (dict(scale=-1.0), "scale"),
    (dict(init="he"), "unknown init"),
])
def test_bad_arguments_raise_value_error(kwargs, match, rng):
    args = dict(name="rnn-tanh", hidden=4, input_size=2) | kwargs
    name, hidden, d = args.pop("name"), args.pop("hidden"), args.pop("input_size")
    with pytest.raises(ValueError, match=match):
        gs.make_cell(name, hidden, d, rng, **args)
