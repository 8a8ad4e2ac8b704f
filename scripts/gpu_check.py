"""Check and time every CUDA op of numbanets on a real GPU, in one run of a few minutes.

    python scripts/gpu_check.py                 # full run (under 5 minutes on one H100)
    python scripts/gpu_check.py --quick         # about a minute: fewer timed runs
    python scripts/gpu_check.py --out results   # CSV in results/gpu_check/<UTC time>-<id>/

(a) Correctness: every CUDA op (conv2d forward/backward on two layers, max_pool2d
    forward/backward, linear forward/backward, fused softmax cross-entropy, LSTM
    and tanh RNN forward/backward over T=50, N=50, H=512, global-norm clipping,
    the four optimizer updates) runs on the same float32 inputs on the GPU and
    through the CPU kernels; the script prints the max relative error of every
    op, max|gpu - cpu| / max|cpu| over all its outputs (int outputs: the
    fraction that differ), and fails (exit 1) when one exceeds --tol.
(b) Speed: each op is timed with CUDA events after warm-up (compile time
    excluded), median, min and max of --runs runs, against PyTorch CUDA on the
    same shapes when torch with CUDA is importable (TF32 off, so both compute
    in full float32), and once more on the CPU for scale. Results go to a CSV
    with columns case, shape, impl, device, median_ms, min_ms, max_ms, gflops,
    rel_err (GFLOP/s only for the GEMM-shaped ops).

Exit codes: 0 every op within tolerance, 1 some op above it (or failed),
2 no usable GPU (one line saying why; numbanets.device.resolve("cuda")).

(c) Roofline: beside each measured time, the op's FLOPs, the bytes it must
    move and the time the device's FP32 peak and memory bandwidth allow
    (scripts/roofline.py has the counting and the peaks: from the device's own
    attributes, or --device-model h200 for the H200's published figures), and
    the fraction of that roofline reached (CSV columns roof_ms, roof_frac).

    python scripts/gpu_check.py --device-model h200 --predict-only   # the predictions, no GPU needed

--tiny runs the same script on toy shapes; it also works under the CUDA
simulator (NUMBA_ENABLE_CUDASIM=1), which checks the script itself without a
GPU (its timings mean nothing; the roofline is the H200's there).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import roofline  # scripts/roofline.py (after the sys.path line)

COLUMNS = ["case", "shape", "impl", "device", "median_ms", "min_ms", "max_ms", "gflops", "rel_err", "roof_ms",
           "roof_frac"]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="about one minute: 5 timed runs, 1 warm-up, CPU not timed")
    p.add_argument("--out", default="results",
                   help="output root; the CSV goes to OUT/gpu_check/<UTC time>-<id>/gpu_check.csv (default results)")
    p.add_argument("--tol", type=float, default=5e-4,
                   help="max relative error allowed per op, float32 (default 5e-4)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per op on the GPU (default 30, --quick 5)")
    p.add_argument("--warmup", type=int, default=None, help="untimed runs before timing (default 3, --quick 1)")
    p.add_argument("--cpu-runs", type=int, default=None, help="timed CPU runs per op (default 3, --quick 0)")
    p.add_argument("--no-torch", action="store_true", help="do not time PyTorch even when it is importable")
    p.add_argument("--tiny", action="store_true",
                   help="toy shapes: a smoke test of this script (also under NUMBA_ENABLE_CUDASIM=1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--case", action="append", default=None, metavar="NAME",
                   help="run only the cases whose name contains NAME (repeatable), e.g. --case lstm")
    p.add_argument("--device-model", default="auto", choices=["auto", *roofline.MODELS],
                   help="peaks of the roofline: auto = the GPU's own attributes (the H200's published figures "
                        "without a GPU), or a model's published figures (default auto)")
    p.add_argument("--gemm", default="auto", choices=["auto", "tiled", "cublas"],
                   help="CUDA GEMM backend (kernels/cuda/gemm.py; default auto: cuBLAS when CuPy is usable)")
    p.add_argument("--lstm", default="auto", choices=["auto", "loop", "persistent"],
                   help="CUDA LSTM path (kernels/cuda/lstm.py; default auto: persistent when it fits)")
    p.add_argument("--predict-only", action="store_true",
                   help="print the roofline predictions as a markdown table and exit (no GPU needed)")
    args = p.parse_args(argv)
    if args.tol <= 0:
        p.error(f"--tol must be > 0, got {args.tol}")
    quick = args.quick or args.tiny
    args.runs = args.runs if args.runs is not None else (1 if args.tiny else 5 if quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (0 if args.tiny else 1 if quick else 3)
    args.cpu_runs = args.cpu_runs if args.cpu_runs is not None else (0 if quick else 3)
    if args.runs < 1 or args.warmup < 0 or args.cpu_runs < 0:
        p.error("--runs must be >= 1, --warmup and --cpu-runs >= 0")
    return args


# --------------------------------------------------------------------------- cases

@dataclass
class Case:
    """One op. make(rng) -> host inputs; prepare(inputs on a device) -> ctx (untimed, e.g. a forward cache);
    run(ctx) -> outputs (timed). torch_prepare / torch_run do the same with torch CUDA tensors
    (torch_run's outputs in the same order when torch_compare, else its error is not reported)."""

    name: str
    shape: str
    flops: float                 # GEMM-shaped FLOPs (the gflops column)
    make: Callable
    run: Callable
    prepare: Callable = lambda a: a
    torch_prepare: Callable | None = None
    torch_run: Callable | None = None
    torch_compare: bool = True
    nbytes: float = 0.0          # compulsory bytes moved (roofline.py's counting)
    ew_flops: float = 0.0        # elementwise FLOPs besides `flops` (roofline only)
    results: dict = field(default_factory=dict)

    @property
    def total_flops(self) -> float:
        return self.flops + self.ew_flops


def _u(rng, shape, scale=1.0):
    return (scale * rng.uniform(-1.0, 1.0, size=shape)).astype(np.float32)


def _n(rng, shape, scale=1.0):
    return (scale * rng.standard_normal(size=shape)).astype(np.float32)


def build_cases(tiny: bool) -> list[Case]:
    from numbanets import functional as F
    from numbanets.optim import update_kernels

    if tiny:
        convs = [(2, 3, 8, 8, 4, 5, 2), (2, 4, 6, 6, 5, 3, 1)]
        pool = (2, 3, 6, 6)
        lin = (5, 7, 6)
        xent = (6, 5)
        rec = (3, 2, 4, 5)       # T, N, D, H
        opt_shape = (3, 4)
    else:
        convs = [(64, 3, 32, 32, 32, 5, 2), (64, 32, 16, 16, 64, 3, 1)]  # N, C, H, W, F, K, pad ("same")
        pool = (64, 32, 32, 32)          # the first conv's output
        lin = (1024, 1024, 1024)         # N, D, O
        xent = (2500, 65)                # a char LM's T*N rows over a 65-letter vocabulary
        rec = (50, 50, 65, 512)          # T, N, D (one-hot vocabulary), H
        opt_shape = (2048, 512)          # an LSTM w_hh with H = 512
    cases: list[Case] = []

    # ---- convolution
    for (n, c, h, w, f, k, pad) in convs:
        shp = f"x {n}x{c}x{h}x{w} w {f}x{c}x{k}x{k} pad {pad}"
        fl = 2.0 * n * f * h * w * c * k * k
        xs, ws, ys = n * c * h * w, f * c * k * k, n * f * h * w  # "same" padding: y is n x f x h x w

        def make_fwd(rng, n=n, c=c, h=h, w=w, f=f, k=k):
            s = 1.0 / math.sqrt(c * k * k)
            return dict(x=_n(rng, (n, c, h, w)), w=_u(rng, (f, c, k, k), s), b=_u(rng, (f,), s))

        def make_bwd(rng, make_fwd=make_fwd, n=n, f=f, h=h, w=w):
            d = make_fwd(rng)
            d["dy"] = _n(rng, (n, f, h, w))
            return d

        cases.append(Case(
            "conv2d_fwd", shp, fl, make_fwd,
            run=lambda a, pad=pad: (F.conv2d(a["x"], a["w"], a["b"], 1, pad),),
            torch_run=lambda t, pad=pad: (_torch().nn.functional.conv2d(t["x"], t["w"], t["b"], padding=pad),),
            nbytes=4.0 * (xs + ws + f + ys), ew_flops=float(ys),  # read x, w, b; write y; the bias add
        ))
        cases.append(Case(
            "conv2d_bwd", shp, 2 * fl, make_bwd,
            run=lambda a, pad=pad: F.conv2d_backward(a["dy"], a["x"], a["w"], 1, pad),
            torch_run=lambda t, pad=pad, f=f: tuple(_torch().ops.aten.convolution_backward(
                t["dy"], t["x"], t["w"], [f], [1, 1], [pad, pad], [1, 1], False, [0, 0], 1, [True, True, True])),
            nbytes=4.0 * (ys + xs + ws + xs + ws + f), ew_flops=float(ys),  # read dy, x, w; write dx, dw, db
        ))

    # ---- max pooling 2x2
    pn, pc, ph, pw = pool
    shp = f"x {pn}x{pc}x{ph}x{pw} k 2x2 s 2"
    pin, pout = pn * pc * ph * pw, pn * pc * (ph // 2) * (pw // 2)
    cases.append(Case(
        "max_pool2d_fwd", shp, 0.0, lambda rng: dict(x=_n(rng, pool)),
        run=lambda a: F.max_pool2d(a["x"], 2),
        torch_run=lambda t: tuple(_torch().nn.functional.max_pool2d(t["x"], 2, return_indices=True)),
        nbytes=4.0 * pin + 12.0 * pout, ew_flops=3.0 * pout,  # read x; write y and int64 indices
    ))
    cases.append(Case(
        "max_pool2d_bwd", shp, 0.0,
        lambda rng: dict(x=_n(rng, pool), dy=_n(rng, (pn, pc, ph // 2, pw // 2))),
        prepare=lambda a: dict(a, idx=F.max_pool2d(a["x"], 2)[1]),
        run=lambda a: (F.max_pool2d_backward(a["dy"], a["idx"], a["x"].shape),),
        torch_prepare=lambda t: dict(t, idx=_torch().nn.functional.max_pool2d(t["x"], 2, return_indices=True)[1]),
        torch_run=lambda t: (_torch().ops.aten.max_pool2d_with_indices_backward(
            t["dy"], t["x"], [2, 2], [2, 2], [0, 0], [1, 1], False, t["idx"]),),
        nbytes=12.0 * pout + 4.0 * pin,  # read dy and the indices; write dx
    ))

    # ---- dense
    n, d, o = lin
    shp = f"x {n}x{d} w {o}x{d}"

    def make_lin(rng):
        s = 1.0 / math.sqrt(d)
        return dict(x=_n(rng, (n, d)), w=_u(rng, (o, d), s), b=_u(rng, (o,), s), dy=_n(rng, (n, o)))

    cases.append(Case(
        "linear_fwd", shp, 2.0 * n * d * o, make_lin,
        run=lambda a: (F.linear(a["x"], a["w"], a["b"]),),
        torch_run=lambda t: (_torch().nn.functional.linear(t["x"], t["w"], t["b"]),),
        nbytes=4.0 * (n * d + o * d + o + n * o), ew_flops=float(n * o),  # read x, w, b; write y
    ))
    cases.append(Case(
        "linear_bwd", shp, 4.0 * n * d * o, make_lin,
        run=lambda a: F.linear_backward(a["dy"], a["x"], a["w"]),
        torch_run=lambda t: (t["dy"] @ t["w"], t["dy"].T @ t["x"], t["dy"].sum(0)),
        nbytes=4.0 * (n * o + n * d + o * d + n * d + o * d + o), ew_flops=float(n * o),  # dy, x, w -> dx, dw, db
    ))
    rows, k = xent
    cases.append(Case(
        "softmax_xent", f"logits {rows}x{k}", 0.0,
        lambda rng: dict(logits=_n(rng, (rows, k), 3.0), targets=rng.integers(0, k, size=rows).astype(np.int64)),
        run=lambda a: F.softmax_cross_entropy(a["logits"], a["targets"]),
        torch_run=_torch_xent,
        nbytes=8.0 * rows * k + 8.0 * rows, ew_flops=5.0 * rows * k,  # read logits, int64 targets; write grad
    ))

    # ---- recurrent
    T, N, D, H = rec
    for cell, gates in (("lstm", 4), ("rnn", 1)):
        shp = f"T {T} N {N} D {D} H {H}" + (" tanh" if cell == "rnn" else "")
        fl = 2.0 * T * N * (D + H) * gates * H
        wsz = gates * H * (D + H + 1)  # w_ih, w_hh, b
        states = 2 * N * H if cell == "lstm" else N * H  # h0 (and c0)
        cached = (T * N * H * 2 + T * N * 4 * H) if cell == "lstm" else T * N * H  # hs (cs, gates)
        per_unit = 20.0 if cell == "lstm" else 4.0  # elementwise FLOPs per hidden unit and step, forward

        def make_rec(rng, gates=gates):
            s = 1.0 / math.sqrt(H)
            d = dict(x=_n(rng, (T, N, D)), h0=_n(rng, (N, H), 0.5), w_ih=_u(rng, (gates * H, D), s),
                     w_hh=_u(rng, (gates * H, H), s), b=_u(rng, (gates * H,), s), dhs=_n(rng, (T, N, H)))
            if gates == 4:
                d["c0"] = _n(rng, (N, H), 0.5)
            return d

        if cell == "lstm":
            fwd = lambda a: F.lstm_forward(a["x"], a["h0"], a["c0"], a["w_ih"], a["w_hh"], a["b"])  # noqa: E731
            run_fwd = lambda a, fwd=fwd: (lambda r: (r[0], r[1][1]))(fwd(a))  # noqa: E731  (hs, c_T)
            run_bwd = lambda a: F.lstm_backward(a["dhs"], a["cache"])  # noqa: E731
        else:
            fwd = lambda a: F.rnn_forward(a["x"], a["h0"], a["w_ih"], a["w_hh"], a["b"], "tanh")  # noqa: E731
            run_fwd = lambda a, fwd=fwd: (fwd(a)[0],)  # noqa: E731
            run_bwd = lambda a: F.rnn_backward(a["dhs"], a["cache"])  # noqa: E731
        cases.append(Case(
            f"{cell}_fwd", shp, fl, make_rec, run=run_fwd,
            torch_prepare=lambda t, cell=cell: _torch_recurrent(t, cell, grad=False),
            torch_run=lambda t, cell=cell: _torch_recurrent_fwd(t, cell),
            nbytes=4.0 * (T * N * D + states + wsz + cached), ew_flops=per_unit * T * N * H,  # x, h0, w -> cache
        ))
        cases.append(Case(
            f"{cell}_bwd", shp, 2 * fl, make_rec,
            prepare=lambda a, fwd=fwd: dict(a, cache=fwd(a)[-1]),
            run=run_bwd,
            torch_prepare=lambda t, cell=cell: _torch_recurrent(t, cell, grad=True),
            torch_run=lambda t, cell=cell: _torch_recurrent_bwd(t, cell),
            # read dhs, x, h0 (c0), the cache, w; write dx, dh0 (dc0), dw_ih, dw_hh, db
            nbytes=4.0 * (T * N * H + T * N * D + states + cached + wsz + T * N * D + states + wsz),
            ew_flops=2 * per_unit * T * N * H,
        ))

    # ---- clipping: the gradients of an LSTM char LM (w_ih, w_hh, b, head w, head b), scaled to norm ~ 10
    V = D
    gshapes = [(4 * H, D), (4 * H, H), (4 * H,), (V, H), (V,)]

    def make_clip(rng):
        gs = [_n(rng, s) for s in gshapes]
        total = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in gs))
        return {f"g{i}": (g * np.float32(10.0 / total)) for i, g in enumerate(gs)}

    cases.append(Case(
        "clip_grad_norm", "grads " + " ".join("x".join(map(str, s)) for s in gshapes) + " max_norm 1", 0.0,
        make_clip,
        run=lambda a: (F.clip_grad_norm([a[f"g{i}"] for i in range(len(gshapes))], 1.0),)
        + tuple(a[f"g{i}"] for i in range(len(gshapes))),
        torch_run=lambda t: _torch_clip(t, len(gshapes)),
        nbytes=8.0 * sum(math.prod(s) for s in gshapes),  # read every gradient, write it scaled
        ew_flops=3.0 * sum(math.prod(s) for s in gshapes),
    ))

    # ---- optimizer updates (in place; one fused kernel per parameter)
    def make_opt(rng, slots):
        d = dict(p=_n(rng, opt_shape), g=_n(rng, opt_shape))
        for s in slots:
            d[s] = np.abs(_n(rng, opt_shape, 0.1)) if s in ("s", "v") else _n(rng, opt_shape, 0.1)
        return d

    oshape = "p " + "x".join(map(str, opt_shape))
    # (reads p, g and the slots, writes p and the slots; elementwise FLOPs per parameter)
    opt_size, opt_flops = math.prod(opt_shape), {"sgd_update": 5, "adagrad_update": 7, "rmsprop_update": 8,
                                                 "adam_update": 14}
    updates = [
        ("sgd_update", ("v",), lambda k, a: k.sgd_update_(a["p"], a["g"], a["v"], 0.01, 0.9, 1e-4),
         lambda o, t: o.SGD([t], lr=0.01, momentum=0.9, weight_decay=1e-4)),
        ("adagrad_update", ("s",), lambda k, a: k.adagrad_update_(a["p"], a["g"], a["s"], 0.01, 1e-8, 1e-4),
         lambda o, t: o.Adagrad([t], lr=0.01, eps=1e-8, weight_decay=1e-4)),
        ("rmsprop_update", ("s",),
         lambda k, a: k.rmsprop_update_(a["p"], a["g"], a["s"], 0.01, 0.95, 1e-8, 1e-4),
         lambda o, t: o.RMSprop([t], lr=0.01, alpha=0.95, eps=1e-8, weight_decay=1e-4)),
        ("adam_update", ("m", "v"),
         lambda k, a: k.adam_update_(a["p"], a["g"], a["m"], a["v"], 0.01, 0.9, 0.999, 1e-8, 3, 1e-4),
         lambda o, t: o.Adam([t], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-4)),
    ]
    for name, slots, fn, torch_opt in updates:
        cases.append(Case(
            name, oshape, 0.0, lambda rng, slots=slots: make_opt(rng, slots),
            run=lambda a, fn=fn, slots=slots: (fn(update_kernels(a["p"], a["g"]), a), a["p"])[1:]
            + tuple(a[s] for s in slots),
            torch_prepare=lambda t, torch_opt=torch_opt: _torch_optimizer(t, torch_opt),
            torch_run=lambda t: (t["opt"].step(),),
            torch_compare=False,  # torch's state starts empty; only its time is reported
            nbytes=4.0 * opt_size * (3 + 2 * len(slots)), ew_flops=float(opt_flops[name] * opt_size),
        ))
    return cases


# --------------------------------------------------------------------------- torch peers

_TORCH = None
_TORCH_DEVICE = "cuda"  # the torch peers' device ("cpu" only to test this script's torch code without a GPU)


def _torch():
    return _TORCH


def _torch_xent(t):
    torch = _torch()
    lg = t["logits"].detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(lg, t["targets"])
    (g,) = torch.autograd.grad(loss, lg)
    return loss.item(), g


def _torch_recurrent(t, cell, grad):
    torch = _torch()
    T, N, D = t["x"].shape
    H = t["h0"].shape[1]
    mod = (torch.nn.LSTM(D, H) if cell == "lstm" else torch.nn.RNN(D, H, nonlinearity="tanh")).to(_TORCH_DEVICE)
    with torch.no_grad():
        mod.weight_ih_l0.copy_(t["w_ih"])
        mod.weight_hh_l0.copy_(t["w_hh"])
        mod.bias_ih_l0.copy_(t["b"])
        mod.bias_hh_l0.zero_()
    ctx = dict(t, mod=mod)
    ctx["inputs"] = [t["x"].clone().requires_grad_(grad), t["h0"][None].clone().requires_grad_(grad)]
    if cell == "lstm":
        ctx["inputs"].append(t["c0"][None].clone().requires_grad_(grad))
    if grad:
        ctx["out"] = _torch_recurrent_fwd(ctx, cell, keep=True)
    return ctx


def _torch_recurrent_fwd(ctx, cell, keep=False):
    mod, inp = ctx["mod"], ctx["inputs"]
    if cell == "lstm":
        out, (_, c) = mod(inp[0], (inp[1], inp[2]))
        return (out, c[0]) if not keep else out
    out, _ = mod(inp[0], inp[1])
    return (out,) if not keep else out


def _torch_recurrent_bwd(ctx, cell):
    torch = _torch()
    mod, inp = ctx["mod"], ctx["inputs"]
    wrt = list(inp) + [mod.weight_ih_l0, mod.weight_hh_l0, mod.bias_ih_l0]
    grads = torch.autograd.grad(ctx["out"], wrt, ctx["dhs"], retain_graph=True)
    grads = list(grads)
    grads[1] = grads[1][0]
    if cell == "lstm":
        grads[2] = grads[2][0]
    return tuple(grads)


def _torch_clip(t, count):
    torch = _torch()
    params = []
    for i in range(count):
        p = torch.nn.Parameter(torch.zeros_like(t[f"g{i}"]))
        p.grad = t[f"g{i}"]
        params.append(p)
    norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
    return (norm.item(),) + tuple(p.grad for p in params)


def _torch_optimizer(t, make):
    torch = _torch()
    p = torch.nn.Parameter(t["p"].clone())
    p.grad = t["g"].clone()
    return dict(opt=make(torch.optim, p))


def load_torch(disabled: bool):
    """(torch or None, note): torch with CUDA, or why not."""
    global _TORCH
    if disabled:
        return None, "skipped (--no-torch)"
    try:
        import torch
    except Exception as exc:  # torch is an optional peer
        return None, f"not importable ({exc.__class__.__name__})"
    if not torch.cuda.is_available():
        return None, f"torch {torch.__version__} has no CUDA here"
    torch.backends.cuda.matmul.allow_tf32 = False  # full float32, as numbanets
    torch.backends.cudnn.allow_tf32 = False
    _TORCH = torch
    return torch, f"torch {torch.__version__}, CUDA {torch.version.cuda}, TF32 off"


# --------------------------------------------------------------------------- helpers

def host(a):
    """A numpy copy (or a float) of an output on any device."""
    if isinstance(a, (float, int, np.floating, np.integer)):
        return float(a)
    if isinstance(a, np.ndarray):
        return a.copy()
    if hasattr(a, "copy_to_host"):
        return a.copy_to_host()
    if hasattr(a, "detach"):  # torch
        return a.detach().cpu().numpy()
    return np.asarray(a).copy()


def rel_err(got, want) -> float:
    """max over outputs of max|got - want| / max|want| (floats); the fraction that differ (ints)."""
    if len(got) != len(want):
        return math.inf
    worst = 0.0
    for g, w in zip(got, want):
        if isinstance(w, float):
            err = abs(g - w) / max(abs(w), 1e-30)
        else:
            g = np.asarray(g)
            if g.shape != w.shape:
                return math.inf
            if np.issubdtype(w.dtype, np.integer):
                err = float(np.mean(g != w)) if w.size else 0.0
            else:
                diff = np.max(np.abs(g.astype(np.float64) - w.astype(np.float64))) if w.size else 0.0
                scale = np.max(np.abs(w.astype(np.float64))) if w.size else 0.0
                err = float(diff / scale) if scale > 0 else float(diff)
        if not err <= worst:  # NaN propagates
            worst = err
    return worst


def stats(times_ms):
    return statistics.median(times_ms), min(times_ms), max(times_ms)


def time_cuda(fn, warmup, runs, simulator):
    from numba import cuda

    for _ in range(warmup):
        fn()
    cuda.synchronize()
    out = []
    for _ in range(runs):
        start, end = cuda.event(), cuda.event()
        t0 = time.perf_counter()
        start.record()
        fn()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        out.append((time.perf_counter() - t0) * 1e3 if simulator or ms < 0 else ms)
    return out


def time_torch(fn, warmup, runs):
    torch = _torch()
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(runs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        out.append(start.elapsed_time(end))
    return out


def time_cpu(fn, runs):
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def gflops(flops, median_ms):
    return flops / (median_ms * 1e-3) / 1e9 if flops and median_ms > 0 else math.nan


# --------------------------------------------------------------------------- main

def main(argv=None) -> int:
    args = parse_args(argv)
    from numba import config

    from numbanets import device

    if args.predict_only:
        cases = [c for c in build_cases(args.tiny) if not args.case or any(n in c.name for n in args.case)]
        print(roofline.predict_table(cases, roofline.resolve(args.device_model)))
        return 0
    try:
        device.resolve("cuda")
    except device.DeviceUnavailable as exc:
        print(f"gpu_check: no GPU to check: {exc}")
        return 2
    simulator = bool(getattr(config, "ENABLE_CUDASIM", False))
    if simulator and not args.tiny:
        print("gpu_check: NUMBA_ENABLE_CUDASIM=1 is set: the simulator cannot run these shapes (use --tiny)")
        return 2

    import pandas as pd
    from numba import cuda

    from runner.common.runs import new_run_dir, write_config, write_csv

    torch, torch_note = load_torch(args.no_torch or simulator)
    peaks = roofline.resolve(args.device_model)
    print(f"gpu_check: {device.explain('cuda')}")
    from numbanets.kernels.cuda import gemm as cuda_gemm
    from numbanets.kernels.cuda import lstm as cuda_lstm

    cuda_lstm.set_lstm_path(args.lstm)
    gemm_name, gemm_why = cuda_gemm.set_gemm_backend(args.gemm)
    print(f"gpu_check: GEMM {gemm_name} ({gemm_why}); LSTM path {args.lstm}")
    print(f"gpu_check: roofline: {peaks.name}, {peaks.flops / 1e12:.1f} TFLOP/s FP32, "
          f"{peaks.bandwidth / 1e12:.2f} TB/s ({peaks.source})")
    print(f"gpu_check: torch: {torch_note}; {args.runs} timed runs after {args.warmup} warm-up, "
          f"tolerance {args.tol:g}")
    t_start = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    rows, failures = [], []
    cases = [c for c in build_cases(args.tiny) if not args.case or any(n in c.name for n in args.case)]
    if not cases:
        print(f"gpu_check: no case matches --case {' '.join(args.case)}")
        return 2
    for case in cases:
        host_in = case.make(rng)
        label = f"{case.name:<15} {case.shape:<40}"
        roof_ms = roofline.roof(case.total_flops, case.nbytes, peaks).ms
        try:
            # CPU reference (fresh copies: some ops work in place)
            cpu_ctx = case.prepare({k: v.copy() for k, v in host_in.items()})
            want = tuple(host(o) for o in case.run(cpu_ctx))
            # GPU: one run to check (compiles), then warm-up and timed runs
            dev_ctx = case.prepare({k: cuda.to_device(v) for k, v in host_in.items()})
            got = tuple(host(o) for o in case.run(dev_ctx))
            err = rel_err(got, want)
            g_ms = stats(time_cuda(lambda: case.run(dev_ctx), args.warmup, args.runs, simulator))
        except Exception as exc:  # report and go on: one broken op must not hide the others
            failures.append(f"{case.name} ({exc.__class__.__name__}: {' '.join(str(exc).split())[:160]})")
            print(f"{label} ERROR {failures[-1]}")
            rows.append([case.name, case.shape, "numbanets", "cuda", math.nan, math.nan, math.nan, math.nan,
                         math.nan, roof_ms, math.nan])
            continue
        ok = err <= args.tol
        if not ok:
            failures.append(f"{case.name} (rel_err {err:.2e} > {args.tol:g})")
        rows.append([case.name, case.shape, "numbanets", "cuda", *g_ms, gflops(case.flops, g_ms[0]), err,
                     roof_ms, roofline.fraction(roof_ms, g_ms[0])])
        line = f"{label} rel_err {err:8.1e} {'ok  ' if ok else 'FAIL'} cuda {g_ms[0]:9.3f} ms"
        if case.flops:
            line += f" {gflops(case.flops, g_ms[0]):7.0f} GF/s"
        line += (f" | roof {roof_ms:9.3g} ms ({roofline.fraction(roof_ms, g_ms[0]):.0%}; "
                 f"{case.total_flops / 1e9:.3g} GFLOP, {case.nbytes / 1e6:.3g} MB)")
        if args.cpu_runs:
            c_ms = stats(time_cpu(lambda: case.run(cpu_ctx), args.cpu_runs))
            rows.append([case.name, case.shape, "numbanets", "cpu", *c_ms, gflops(case.flops, c_ms[0]), math.nan,
                         math.nan, math.nan])
            line += f" | cpu {c_ms[0]:9.3f} ms"
        if torch is not None and case.torch_run is not None:
            try:
                t_in = {k: torch.from_numpy(v.copy()).to(_TORCH_DEVICE) for k, v in host_in.items()}
                t_ctx = (case.torch_prepare or (lambda t: t))(t_in)
                t_out = case.torch_run(t_ctx)
                t_err = rel_err(tuple(host(o) for o in t_out), want) if case.torch_compare else math.nan
                t_ms = stats(time_torch(lambda: case.torch_run(t_ctx), args.warmup, args.runs))
                rows.append([case.name, case.shape, "torch", "cuda", *t_ms, gflops(case.flops, t_ms[0]), t_err,
                             roof_ms, roofline.fraction(roof_ms, t_ms[0])])
                line += f" | torch {t_ms[0]:9.3f} ms (x{t_ms[0] / g_ms[0]:.2f})"
            except Exception as exc:  # torch is a peer: its problems are reported, never fatal
                line += f" | torch: {exc.__class__.__name__}: {' '.join(str(exc).split())[:80]}"
        print(line, flush=True)

    frame = pd.DataFrame(rows, columns=COLUMNS)
    run_dir = new_run_dir(args.out, "gpu_check")
    write_csv(run_dir / "gpu_check.csv", frame)
    write_config(run_dir, "gpu_check", {k: v for k, v in vars(args).items()}, device=device.explain("cuda"),
                 roofline={"name": peaks.name, "flops": peaks.flops, "bandwidth": peaks.bandwidth,
                           "source": peaks.source},
                 torch=torch_note, failures=failures, seconds=round(time.perf_counter() - t_start, 1))
    print(f"gpu_check: {len(frame)} rows in {run_dir / 'gpu_check.csv'} ({time.perf_counter() - t_start:.0f} s)")
    if failures:
        print(f"gpu_check: FAILED {len(failures)} op(s): {'; '.join(failures)}")
        return 1
    print(f"gpu_check: all {sum(1 for r in rows if r[2:4] == ['numbanets', 'cuda'])} CUDA ops match the CPU "
          f"within {args.tol:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
