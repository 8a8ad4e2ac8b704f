"""The cases of `nbnets bench`: inputs, FLOP counts, and one runner per implementation.

Each case is a runner.bench.case.Case: `make(rng)` -> host inputs (float32) and,
per implementation ("numbanets", "numpy", "torch"), a factory
`(inputs, ctx) -> Runner` whose `run()` is the timed call and whose
`outputs(result)` are host numpy arrays named the same in every implementation.
The numpy peers are runner.bench.peers, the torch peers runner.bench.torch_peer
(torch is optional: the factories get the module through ctx.torch, None when skipped).

    kernels   conv2d-fwd, conv2d-bwd (two layer shapes), max_pool2d-fwd, max_pool2d-bwd (2x2),
              lstm-fwd-bwd, gru-fwd-bwd, rnn-fwd-bwd (T=50, N=50, D=H, H=128 and 512; forward + BPTT)
    train     charlm-mini (tanh RNN 1 x 100, batch 1, seq 25, vocab 65, Adagrad 0.1: min-char-rnn),
              charlm-char-rnn (LSTM 2 x 128, batch 50, seq 50, vocab 65, RMSprop 2e-3: char-rnn),
              charlm-large (LSTM 2 x 512, otherwise as char-rnn), charlm-gru (GRU 2 x 128, otherwise as
              char-rnn: against torch.nn.GRU), cnn-digits (train-cnn's default
              digits network, batch 64 of 1x8x8 images, Adam 2e-3); every step clips the global
              gradient norm at 5. Outputs: the loss, every gradient after clipping
              ("grad.<name>") and every parameter after the update ("param.<name>").

FLOPs: twice the multiply-adds. conv forward 2*N*F*OH*OW*C*KH*KW, backward twice that;
recurrent forward 2*T*N*G*H*(D+H) (G = 4 for the LSTM, 3 for the GRU), forward + backward three times
that; a training step three times its layers' forward FLOPs, a char LM's one-hot input
projection counted as 0 (it is a gather, not arithmetic). Pooling: no FLOPs (NaN).
"""

from __future__ import annotations

import math

import numpy as np

from numbanets import functional as F
from numbanets import shapes
from numbanets.device import to_device, to_host
from numbanets.nn import arch
from numbanets.optim import make_optimizer
from runner.bench import peers, torch_peer
from runner.bench.case import Case, Runner
from runner.charlm.model import build_model as build_charlm
from runner.charlm.options import validate as charlm_validate
from runner.cnn.model import build_model as build_cnn

CLIP = 5.0

# name: cell, layers, hidden, batch, seq, vocab, optimizer (full size; TINY_CHARLM overrides for tests)
CHARLM = {
    "charlm-mini": dict(cell="rnn", layers=1, hidden=100, batch=1, seq=25, vocab=65,
                        optimizer=dict(kind="adagrad", lr=0.1)),
    "charlm-char-rnn": dict(cell="lstm", layers=2, hidden=128, batch=50, seq=50, vocab=65,
                            optimizer=dict(kind="rmsprop", lr=2e-3, alpha=0.95)),
    "charlm-large": dict(cell="lstm", layers=2, hidden=512, batch=50, seq=50, vocab=65,
                         optimizer=dict(kind="rmsprop", lr=2e-3, alpha=0.95)),
    "charlm-gru": dict(cell="gru", layers=2, hidden=128, batch=50, seq=50, vocab=65,
                       optimizer=dict(kind="rmsprop", lr=2e-3, alpha=0.95)),
}
TINY_CHARLM = {"charlm-mini": dict(hidden=8, seq=5, vocab=11),
               "charlm-char-rnn": dict(hidden=8, batch=3, seq=4, vocab=11),
               "charlm-large": dict(hidden=12, batch=3, seq=4, vocab=11),
               "charlm-gru": dict(hidden=8, batch=3, seq=4, vocab=11)}
CNN_BATCH, TINY_CNN_BATCH = 64, 4
CNN_OPTIMIZER = dict(kind="adam", lr=2e-3)


# --------------------------------------------------------------------------- runner helpers

def _nb(ctx, run, names):
    return Runner(run, lambda out: {n: to_host(o) for n, o in zip(names, out)},
                  "numba-cuda" if ctx.device == "cuda" else "cpu", ctx.device)


def _np(run, names):
    return Runner(run, lambda out: dict(zip(names, out)))


def _th(ctx, run, names):
    return Runner(run, lambda out: {n: torch_peer.host(o) for n, o in zip(names, out)},
                  "torch-cuda" if ctx.device == "cuda" else "cpu", ctx.device)


def _on(ctx, inputs):
    """numbanets' copy of the inputs: device arrays on cuda, the host arrays on the CPU."""
    if ctx.device != "cuda":
        return inputs
    return {k: to_device(v) if isinstance(v, np.ndarray) else v for k, v in inputs.items()}


def _tt(ctx, inputs):
    return torch_peer.tensors(ctx.torch, inputs, ctx.device)


def _f32(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(size=shape)).astype(np.float32)


def _u32(rng, shape, scale):
    return rng.uniform(-scale, scale, size=shape).astype(np.float32)


# --------------------------------------------------------------------------- kernel cases

def _conv_cases(n, c, h, w, f, k, pad) -> list[Case]:
    oh, ow = h + 2 * pad - k + 1, w + 2 * pad - k + 1
    pads = ((pad, pad), (pad, pad))
    shape = f"x {n}x{c}x{h}x{w} w {f}x{c}x{k}x{k} pad {pad}"
    flops = 2.0 * n * f * oh * ow * c * k * k

    def make(rng):
        s = 1.0 / math.sqrt(c * k * k)
        return dict(x=_f32(rng, (n, c, h, w)), w=_u32(rng, (f, c, k, k), s), b=_u32(rng, (f,), s),
                    dy=_f32(rng, (n, f, oh, ow)))

    def nb_fwd(i, ctx):
        a = _on(ctx, i)
        return _nb(ctx, lambda: (F.conv2d(a["x"], a["w"], a["b"], 1, pad),), ["y"])

    def th_fwd(i, ctx):
        t = _tt(ctx, i)
        return _th(ctx, lambda: (ctx.torch.nn.functional.conv2d(t["x"], t["w"], t["b"], padding=pad),), ["y"])

    def nb_bwd(i, ctx):
        a = _on(ctx, i)
        return _nb(ctx, lambda: F.conv2d_backward(a["dy"], a["x"], a["w"], 1, pad), ["dx", "dw", "db"])

    def th_bwd(i, ctx):
        t = _tt(ctx, i)
        return _th(ctx, lambda: torch_peer.conv2d_backward(ctx.torch, t["dy"], t["x"], t["w"], pad), ["dx", "dw", "db"])

    return [
        Case("conv2d-fwd", "kernels", shape, flops, make, {
            "numbanets": nb_fwd, "torch": th_fwd,
            "numpy": lambda i, ctx: _np(lambda: (peers.conv2d(i["x"], i["w"], i["b"], (1, 1), pads),), ["y"])}),
        Case("conv2d-bwd", "kernels", shape, 2 * flops, make, {
            "numbanets": nb_bwd, "torch": th_bwd,
            "numpy": lambda i, ctx: _np(lambda: peers.conv2d_backward(i["dy"], i["x"], i["w"], (1, 1), pads),
                                        ["dx", "dw", "db"])}),
    ]


def _pool_cases(n, c, h, w) -> list[Case]:
    shape = f"x {n}x{c}x{h}x{w} k 2x2 s 2"

    def make(rng):  # distinct values: every window has one maximum
        x = (rng.permutation(n * c * h * w).astype(np.float32) / (n * c * h * w)).reshape(n, c, h, w)
        return dict(x=x, dy=_f32(rng, (n, c, h // 2, w // 2)))

    def nb_fwd(i, ctx):
        a = _on(ctx, i)
        return _nb(ctx, lambda: F.max_pool2d(a["x"], 2), ["y", "idx"])

    def nb_bwd(i, ctx):
        a = _on(ctx, i)
        idx = F.max_pool2d(a["x"], 2)[1]  # untimed: the forward's indices
        return _nb(ctx, lambda: (F.max_pool2d_backward(a["dy"], idx, (n, c, h, w)),), ["dx"])

    def np_bwd(i, ctx):
        idx = peers.max_pool2x2(i["x"])[1]
        return _np(lambda: (peers.max_pool2x2_backward(i["dy"], idx, (n, c, h, w)),), ["dx"])

    def th_fwd(i, ctx):
        t = _tt(ctx, i)
        return _th(ctx, lambda: ctx.torch.nn.functional.max_pool2d(t["x"], 2, return_indices=True), ["y", "idx"])

    def th_bwd(i, ctx):
        t = _tt(ctx, i)
        idx = ctx.torch.nn.functional.max_pool2d(t["x"], 2, return_indices=True)[1]
        return _th(ctx, lambda: (torch_peer.max_pool2x2_backward(ctx.torch, t["dy"], t["x"], idx),), ["dx"])

    return [
        Case("max_pool2d-fwd", "kernels", shape, math.nan, make,
             {"numbanets": nb_fwd, "numpy": lambda i, ctx: _np(lambda: peers.max_pool2x2(i["x"]), ["y", "idx"]),
              "torch": th_fwd}),
        Case("max_pool2d-bwd", "kernels", shape, math.nan, make,
             {"numbanets": nb_bwd, "numpy": np_bwd, "torch": th_bwd}),
    ]


def _recurrent_case(cell, t_len, n, h) -> Case:
    gates = {"lstm": 4, "gru": 3}.get(cell, 1)
    d = h
    shape = f"T {t_len} N {n} D {d} H {h}" + (" tanh" if cell == "rnn" else "")
    biases = ["db_ih", "db_hh"] if cell == "gru" else ["db"]
    names = ["hs", "dx", "dh0"] + (["dc0"] if cell == "lstm" else []) + ["dw_ih", "dw_hh"] + biases

    def make(rng):
        s = 1.0 / math.sqrt(h)
        a = dict(x=_f32(rng, (t_len, n, d)), h0=_f32(rng, (n, h), 0.5), w_ih=_u32(rng, (gates * h, d), s),
                 w_hh=_u32(rng, (gates * h, h), s), b=_u32(rng, (gates * h,), s), dhs=_f32(rng, (t_len, n, h)))
        if cell == "lstm":
            a["c0"] = _f32(rng, (n, h), 0.5)
        if cell == "gru":
            a["b_hh"] = _u32(rng, (gates * h,), s)
        return a

    def nb(i, ctx):
        a = _on(ctx, i)

        def run():
            if cell == "lstm":
                hs, _, cache = F.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b"])
                return (hs, *F.lstm_backward(a["dhs"], cache))
            if cell == "gru":
                hs, _, cache = F.gru_forward(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b"], a["b_hh"])
                return (hs, *F.gru_backward(a["dhs"], cache))
            hs, cache = F.rnn_forward(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b"], "tanh")
            return (hs, *F.rnn_backward(a["dhs"], cache))
        return _nb(ctx, run, names)

    def npy(i, ctx):
        def run():
            if cell == "lstm":
                hs, cs, g = peers.lstm_forward(i["x"], i["h0"], i["c0"], i["w_ih"], i["w_hh"], i["b"])
                return (hs, *peers.lstm_backward(i["dhs"], i["x"], i["h0"], i["c0"], i["w_ih"], i["w_hh"], hs, cs, g))
            if cell == "gru":
                hs, g, hns = peers.gru_forward(i["x"], i["h0"], i["w_ih"], i["w_hh"], i["b"], i["b_hh"])
                return (hs, *peers.gru_backward(i["dhs"], i["x"], i["h0"], i["w_ih"], i["w_hh"], hs, g, hns))
            hs = peers.rnn_forward(i["x"], i["h0"], i["w_ih"], i["w_hh"], i["b"], "tanh")
            return (hs, *peers.rnn_backward(i["dhs"], i["x"], i["h0"], i["w_ih"], i["w_hh"], hs, "tanh"))
        return _np(run, names)

    def th(i, ctx):
        rec = torch_peer.Recurrent(ctx.torch, cell, _tt(ctx, i))
        runner = _th(ctx, rec.run, names)
        runner.outputs = rec.outputs
        return runner

    return Case(f"{cell}-fwd-bwd", "kernels", shape, 3 * 2.0 * t_len * n * gates * h * (d + h), make,
                {"numbanets": nb, "numpy": npy, "torch": th})


def kernel_cases(tiny: bool) -> list[Case]:
    convs = [(2, 3, 8, 8, 4, 5, 2), (2, 4, 6, 6, 5, 3, 1)] if tiny else \
        [(64, 3, 32, 32, 32, 5, 2), (64, 32, 16, 16, 64, 3, 1)]
    pool = (2, 3, 6, 6) if tiny else (64, 32, 32, 32)
    recs = [(3, 2, 4), (4, 3, 6)] if tiny else [(50, 50, 128), (50, 50, 512)]
    cases = [c for conv in convs for c in _conv_cases(*conv)]
    cases += _pool_cases(*pool)
    cases += [_recurrent_case(cell, *r) for cell in ("lstm", "gru", "rnn") for r in recs]
    return cases


# --------------------------------------------------------------------------- training steps

def _nb_train(ctx, model, step):
    """A numbanets training step's Runner; outputs: the loss, every gradient and every weight."""
    def outputs(loss):
        got = {"loss": float(loss)}
        for name, p, g in model.named_parameters():
            got[f"grad.{name}"], got[f"param.{name}"] = to_host(g), to_host(p)
        return got
    return Runner(step, outputs, "numba-cuda" if ctx.device == "cuda" else "cpu", ctx.device)


def _peer_train(model, i, ctx=None):
    """The Runner of a peer model's training step on the batch i["x"], i["y"] (torch when ctx is given)."""
    timer = "torch-cuda" if ctx is not None and ctx.device == "cuda" else "cpu"
    return Runner(lambda: model.step(i["x"], i["y"]), model.outputs, timer, ctx.device if ctx else "cpu")


def _nb_optimizer(model, kind, lr, **kw):
    return make_optimizer(kind, model, lr=lr, **kw)


def _charlm_case(name, cfg) -> Case:
    t_len, n, h, v, layers = cfg["seq"], cfg["batch"], cfg["hidden"], cfg["vocab"], cfg["layers"]
    gates = {"lstm": 4, "gru": 3}.get(cfg["cell"], 1)
    fwd = sum(2.0 * t_len * n * gates * h * ((h if k else 0) + h) for k in range(layers)) + 2.0 * t_len * n * h * v
    cell = {"lstm": "LSTM", "gru": "GRU"}.get(cfg["cell"], "RNN tanh")
    shape = f"{cell} {layers}x{h} batch {n} seq {t_len} vocab {v} {cfg['optimizer']['kind']}"
    opts = {"cell": cfg["cell"], "hidden": h, "layers": layers, "seed": 0}

    def make(rng):
        model = build_charlm(charlm_validate(opts), v)
        ids = rng.integers(0, v, size=(t_len + 1, n))
        return {"state": model.state_dict(), "x": ids[:-1].copy(), "y": ids[1:].copy()}

    def nb(i, ctx):
        model = build_charlm(charlm_validate(opts), v, device=ctx.device)
        model.load_state_dict(i["state"])
        opt = _nb_optimizer(model, **cfg["optimizer"])

        def step():
            loss, _ = model.loss_and_grad(i["x"], i["y"])
            F.clip_grad_norm(model.gradients(), CLIP)
            opt.step()
            return loss
        return _nb_train(ctx, model, step)

    def npy(i, ctx):
        return _peer_train(peers.CharLM(i["state"], cfg["optimizer"], CLIP, cfg["cell"], layers, v), i)

    def th(i, ctx):
        model = torch_peer.CharLM(ctx.torch, ctx.device, i["state"], cfg["optimizer"], CLIP, cfg["cell"], layers, v)
        return _peer_train(model, i, ctx)

    return Case(name, "train", shape, 3 * fwd, make, {"numbanets": nb, "numpy": npy, "torch": th})


def cnn_layers(spec: str, input_shape) -> list[tuple]:
    """The layers of a CNN spec as the numpy and torch peers take them, named as numbanets.nn.arch.build's
    children: ("conv", name, stride, pads), ("relu",), ("pool2",), ("flatten",), ("fc", name)."""
    out, index, shape = [], 0, tuple(input_shape)
    layers = arch.parse(spec)
    for layer, row in zip(layers, arch.plan(layers, shape)):
        if layer.kind == "fc" and len(shape) != 1:
            out.append(("flatten",))
            index += 1
        if layer.kind == "conv":
            if layer.groups != 1:
                raise ValueError("the CNN peers take groups=1 only")
            before, after = shapes.resolve_padding(layer.padding, shape[1:], layer.kernel, layer.stride)
            out.append(("conv", str(index), tuple(layer.stride), ((before[0], after[0]), (before[1], after[1]))))
        elif layer.kind == "pool":
            if layer.kernel != (2, 2) or (layer.stride or (2, 2)) != (2, 2) or layer.padding:
                raise ValueError(f"the CNN peers pool 2x2 windows with stride 2 only, got {layer.token}")
            out.append(("pool2",))
        elif layer.kind == "act" and layer.activation == "relu":
            out.append(("relu",))
        elif layer.kind == "fc":
            out.append(("fc", str(index)))
        else:
            raise ValueError(f"the CNN peers have no layer {layer.token!r}")
        index += 1
        shape = row.out_shape
    return out


def _cnn_case(batch) -> Case:
    spec, image = arch.BUILTIN["digits"]
    madds = sum(r.multiply_adds for r in arch.plan(arch.parse(spec), image))
    shape = f"digits {'x'.join(map(str, image))} batch {batch} adam"

    def make(rng):
        model, _ = build_cnn(spec, image, seed=0)
        return {"state": model.state_dict(), "x": rng.random((batch, *image)).astype(np.float32),
                "y": rng.integers(0, 10, size=batch).astype(np.int64), "layers": cnn_layers(spec, image)}

    def nb(i, ctx):
        model, _ = build_cnn(spec, image, seed=0, device=ctx.device)
        model.load_state_dict(i["state"])
        opt = _nb_optimizer(model, **CNN_OPTIMIZER)
        move = to_device if ctx.device == "cuda" else (lambda a: a)

        def step():
            model.zero_grad()
            logits = model.forward(move(i["x"]))
            loss, dlogits = F.softmax_cross_entropy(logits, move(i["y"]))
            model.backward(dlogits)
            F.clip_grad_norm(model.gradients(), CLIP)
            opt.step()
            return loss
        return _nb_train(ctx, model, step)

    def npy(i, ctx):
        return _peer_train(peers.CNN(i["state"], CNN_OPTIMIZER, CLIP, i["layers"]), i)

    def th(i, ctx):
        return _peer_train(torch_peer.CNN(ctx.torch, ctx.device, i["state"], CNN_OPTIMIZER, CLIP, i["layers"]), i, ctx)

    return Case("cnn-digits", "train", shape, 3 * 2.0 * madds * batch, make,
                {"numbanets": nb, "numpy": npy, "torch": th})


def train_cases(tiny: bool) -> list[Case]:
    cases = []
    for name, cfg in CHARLM.items():
        cases.append(_charlm_case(name, {**cfg, **(TINY_CHARLM[name] if tiny else {})}))
    cases.append(_cnn_case(TINY_CNN_BATCH if tiny else CNN_BATCH))
    return cases


def build_cases(tiny: bool = False) -> list[Case]:
    """Every timed case, kernels first."""
    return kernel_cases(tiny) + train_cases(tiny)
