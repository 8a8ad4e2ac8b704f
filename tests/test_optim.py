"""Optimizers (numbanets.optim): steps equal torch.optim's on the same gradients, exact
resume through state_dict, errors, make_optimizer and the kernel dispatch."""

import numpy as np
import pytest

from gradcheck import assert_close
from numbanets import functional, nn, optim
from numbanets.kernels.cpu import optim as cpu_optim

CASES = [
    ("sgd", dict(), dict()),
    ("sgd", dict(momentum=0.9, weight_decay=0.01), dict(momentum=0.9, weight_decay=0.01)),
    ("adagrad", dict(eps=1e-8), dict(eps=1e-8)),
    ("adagrad", dict(eps=1e-8, weight_decay=0.1), dict(eps=1e-8, weight_decay=0.1)),
    ("rmsprop", dict(alpha=0.95, eps=1e-8), dict(alpha=0.95, eps=1e-8)),
    ("rmsprop", dict(alpha=0.9, eps=1e-6, weight_decay=0.05), dict(alpha=0.9, eps=1e-6, weight_decay=0.05)),
    ("adam", dict(), dict()),
    ("adam", dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02), dict(betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02)),
]
TORCH_NAMES = {"sgd": "SGD", "adagrad": "Adagrad", "rmsprop": "RMSprop", "adam": "Adam"}


def _model(rng, dtype=np.float64):
    return nn.Sequential(nn.Linear(3, 4, rng=rng, dtype=dtype), nn.Tanh(), nn.Linear(4, 2, rng=rng, dtype=dtype))


def _grads(rng, model, steps):
    return [[rng.standard_normal(p.shape).astype(p.dtype) for p in model.parameters()] for _ in range(steps)]


def _set_grads(model, grads):
    for g, new in zip(model.gradients(), grads):
        g[...] = new


@pytest.mark.parametrize("name, ours, theirs", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_steps_equal_torch(rng, torch, name, ours, theirs):
    model = _model(rng)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in model.parameters()]
    lr = 0.05
    opt = optim.make_optimizer(name, model, lr, **ours)
    topt = getattr(torch.optim, TORCH_NAMES[name])(tparams, lr=lr, **theirs)
    for k, grads in enumerate(_grads(rng, model, 6)):
        if k == 3:  # a learning-rate change between steps (lr decay)
            opt.lr = lr * 0.5
            for group in topt.param_groups:
                group["lr"] = lr * 0.5
        _set_grads(model, grads)
        for t, g in zip(tparams, grads):
            t.grad = torch.tensor(g)
        opt.step()
        topt.step()
    assert opt.steps == 6
    for (n, p, _), t in zip(model.named_parameters(), tparams):
        assert_close(p, t.detach().numpy(), rtol=1e-10, atol=1e-13, name=f"{name} {n}")


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_state_dict_round_trip_gives_identical_next_steps(rng, name):
    model = _model(rng, np.float32)
    opt = optim.make_optimizer(name, model, 0.01)
    grads = _grads(rng, model, 5)
    for g in grads[:3]:
        _set_grads(model, g)
        opt.step()
    opt.lr = 0.007
    model_state, opt_state = model.state_dict(), opt.state_dict()
    assert opt_state["step"] == 3 and opt_state["step"].dtype == np.int64 and opt_state["lr"] == 0.007
    assert all(isinstance(v, np.ndarray) for v in opt_state.values())
    slots = optim.OPTIMIZERS[name].slots
    assert set(opt_state) == {"step", "lr"} | {f"{s}.{n}" for s in slots for n, _, _ in model.named_parameters()}

    fresh = _model(np.random.default_rng(7), np.float32)
    fresh_opt = optim.make_optimizer(name, fresh, 0.5)
    fresh.load_state_dict(model_state)
    fresh_opt.load_state_dict(opt_state)
    assert fresh_opt.steps == 3 and fresh_opt.lr == 0.007
    for g in grads[3:]:
        for m, o in ((model, opt), (fresh, fresh_opt)):
            _set_grads(m, g)
            o.step()
    for (n, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=n)
    for (k, a), b in zip(opt.state_dict().items(), fresh_opt.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_state_dict_is_a_copy_and_bad_keys_are_named(rng):
    model = _model(rng, np.float32)
    opt = optim.Adam(model, 1e-3)
    _set_grads(model, _grads(rng, model, 1)[0])
    opt.step()
    sd = opt.state_dict()
    sd["exp_avg.0.w"][...] = 99.0
    assert not (opt.state["0.w"]["exp_avg"] == 99.0).any()
    bad = dict(sd)
    del bad["exp_avg_sq.2.b"]
    with pytest.raises(ValueError, match=r"missing 'exp_avg_sq\.2\.b'"):
        opt.load_state_dict(bad)
    with pytest.raises(ValueError, match=r"unexpected key 'momentum\.0\.w'"):
        opt.load_state_dict({**sd, "momentum.0.w": sd["exp_avg.0.w"]})
    with pytest.raises(ValueError, match=r"'exp_avg\.0\.b'.*float32 \(4,\)"):
        opt.load_state_dict({**sd, "exp_avg.0.b": np.zeros(4)})


def test_sgd_without_momentum_is_plain_gradient_descent(rng):
    model = _model(rng)
    before = [p.copy() for p in model.parameters()]
    grads = _grads(rng, model, 1)[0]
    _set_grads(model, grads)
    optim.SGD(model, 0.1).step()
    for p, b, g in zip(model.parameters(), before, grads):
        assert_close(p, b - 0.1 * g, rtol=1e-15, atol=1e-16)


def test_make_optimizer_and_validation(rng):
    model = _model(rng)
    assert isinstance(optim.make_optimizer("RMSprop", model, 2e-3), optim.RMSprop)
    assert optim.make_optimizer("rmsprop", model, 2e-3).alpha == 0.95
    with pytest.raises(ValueError, match="optimizer must be one of sgd, adagrad, rmsprop, adam"):
        optim.make_optimizer("lbfgs", model, 0.1)
    with pytest.raises(ValueError, match="lr must be >= 0"):
        optim.SGD(model, -1.0)
    with pytest.raises(ValueError, match="momentum must be >= 0 and < 1"):
        optim.SGD(model, 0.1, momentum=1.0)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        optim.Adam(model, 0.1, betas=(0.9, 1.5))
    with pytest.raises(TypeError, match="Module"):
        optim.Adam(model.state_dict(), 0.1)
    assert all(s.dtype == p.dtype and s.shape == p.shape
               for (_, p, _), slots in zip(model.named_parameters(), optim.Adam(model, 0.1).state.values())
               for s in slots.values())


def test_kernel_dispatch_and_clip_reexport(rng):
    p = np.zeros(3, np.float32)
    assert optim.update_kernels(p, p) is cpu_optim
    assert optim.clip_grad_norm is functional.clip_grad_norm
    model = _model(rng)
    _set_grads(model, [np.full(p.shape, 10.0) for p in model.parameters()])
    norm = optim.clip_grad_norm(model.gradients(), 1.0)
    assert norm > 1.0
    assert_close(np.sqrt(sum((g ** 2).sum() for g in model.gradients())), 1.0, rtol=1e-12)
