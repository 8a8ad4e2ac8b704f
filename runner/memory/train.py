"""nbnets memory, one run: train one cell on one task at one distance until it is solved or out of steps.

    x (T, N) ids (recall) or (T, N, 2) (adding) -> one recurrent layer of H units -> hs (T, N, H)
    -> linear read-out of the last state h_T -> logits (N, K) (recall: softmax cross-entropy)
                                                 or y (N, 1)      (adding: mean squared error)

Adam, global-norm gradient clipping, a fresh batch from the task every step
(numpy default_rng([seed, 1])), evaluation every `eval_every` steps on a fixed
held-out set (default_rng([seed, 2])); solved when the test accuracy reaches
`solved` (recall) or the test MSE is at most ADDING_SOLVED (adding).

Cells (numbanets.nn.recurrent layers, the library's own kernels):
rnn-tanh, rnn-sigmoid, rnn-identity (PyTorch's uniform init, +-1/sqrt(H)),
rnn-relu (identity recurrent weights: Le, Jaitly & Hinton's IRNN), lstm
(uniform init, forget-gate bias `forget_bias`), gru (torch.nn.GRU's cell and uniform init).

The gradient at the context step: dL/dh_0 / dL/dh_T, the norm of the loss's
gradient with respect to the state before the first (context) step, over its
norm with respect to the last state, both from the layer's own backward kernel
(F.rnn_backward / F.lstm_backward / F.gru_backward), on the held-out batch; measured at
initialisation and at the end of the run.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from numbanets import functional as F
from numbanets.gradstats import cell_kind
from numbanets.nn.layers import Linear
from numbanets.nn.module import Module
from numbanets.nn.recurrent import GRULayer, LSTMLayer, RNNLayer
from numbanets.optim import Adam, clip_grad_norm
from runner.memory.tasks import make_task

ADDING_SOLVED = 0.01   # test MSE at or below this counts as solved (Le et al. 2015's criterion)


@dataclass(frozen=True)
class RunSpec:
    cell: str
    task: str
    distance: int
    seed: int
    hidden: int = 64
    batch_size: int = 32
    lr: float = 3e-3
    clip: float = 1.0
    max_steps: int = 3000
    eval_every: int = 100
    solved: float = 0.99
    test_size: int = 512
    symbols: int = 8
    fillers: int = 10
    forget: bool = False
    forget_bias: float = 1.0


class MemoryNet(Module):
    """One recurrent layer and a linear read-out of its last state."""

    def __init__(self, cell: str, inputs: int, hidden: int, outputs: int, forget_bias: float, rng):
        super().__init__()
        kind, activation = cell_kind(cell)
        if kind == "lstm":
            self.recurrent = self.add_module("cell", LSTMLayer(inputs, hidden, forget_bias, rng=rng))
        elif kind == "gru":
            self.recurrent = self.add_module("cell", GRULayer(inputs, hidden, rng=rng))
        else:
            init = "identity" if activation == "relu" else "uniform"
            self.recurrent = self.add_module("cell", RNNLayer(inputs, hidden, activation, rng=rng, init=init))
        self.kind = kind
        self.readout = self.add_module("readout", Linear(hidden, outputs, rng=rng))

    def forward(self, x):
        hs, _ = self.recurrent.forward(x)
        self.steps = hs.shape[0]
        return self.readout.forward(np.ascontiguousarray(hs[-1]))

    def backward(self, dy):
        dh_T = self.readout.backward(dy)
        dhs = np.zeros((self.steps,) + dh_T.shape, dtype=dh_T.dtype)
        dhs[-1] = dh_T
        self.recurrent.backward(dhs)

    def context_gradient(self, dy) -> float:
        """||dL/dh_0|| / ||dL/dh_T|| after a forward pass, without touching the parameters' gradients."""
        dh_T = self.readout.backward(dy)
        self.readout.zero_grad()
        dhs = np.zeros((self.steps,) + dh_T.shape, dtype=dh_T.dtype)
        dhs[-1] = dh_T
        cache = self.recurrent._saved("cache")
        backward = {"lstm": F.lstm_backward, "gru": F.gru_backward}.get(self.kind, F.rnn_backward)
        back = backward(dhs, cache)
        self.recurrent._release("cache")
        top = float(np.linalg.norm(dh_T))
        return float(np.linalg.norm(back[1])) / top if top > 0 else math.nan


def _loss(task: str, out, target):
    """(loss, dL/dout, metric): accuracy for recall, the MSE for adding."""
    if task == "recall":
        loss, dout = F.softmax_cross_entropy(out, target)
        return loss, dout, float(np.mean(np.argmax(out, axis=1) == target))
    err = out[:, 0] - target
    mse = float(np.mean(err * err))
    return mse, (2.0 / err.size * err)[:, None].astype(out.dtype), mse


def is_solved(spec: RunSpec, metric: float) -> bool:
    return metric >= spec.solved if spec.task == "recall" else metric <= ADDING_SOLVED


def fit(spec: RunSpec, on_eval=None) -> tuple[list[dict], dict]:
    """Train one run. Returns (one row per evaluation, the run's summary). `on_eval(row)` sees each row."""
    started = time.perf_counter()
    task = make_task(spec.task, spec.distance, spec.symbols, spec.fillers, spec.forget)
    net = MemoryNet(spec.cell, task.vocab, spec.hidden, task.outputs, spec.forget_bias,
                    rng=np.random.default_rng([spec.seed, 0]))
    optimizer = Adam(net, spec.lr)
    train_rng = np.random.default_rng([spec.seed, 1])
    x_test, y_test = task.batch(np.random.default_rng([spec.seed, 2]), spec.test_size)

    def evaluate():
        loss, dout, metric = _loss(spec.task, net.forward(x_test), y_test)
        return loss, metric, net.context_gradient(dout)

    _, metric, ratio0 = evaluate()
    rows = [{"step": 0, "train_loss": math.nan, "test_metric": metric, "grad_ratio_context": ratio0}]
    if on_eval:
        on_eval(rows[-1])
    step, solved_at, train_loss = 0, None, math.nan
    while step < spec.max_steps and solved_at is None:
        x, y = task.batch(train_rng, spec.batch_size)
        net.zero_grad()
        train_loss, dout, _ = _loss(spec.task, net.forward(x), y)
        if not math.isfinite(train_loss):
            break
        net.backward(dout)
        clip_grad_norm(net.gradients(), spec.clip)
        optimizer.step()
        step += 1
        if step % spec.eval_every == 0 or step == spec.max_steps:
            _, metric, ratio = evaluate()
            rows.append({"step": step, "train_loss": train_loss, "test_metric": metric, "grad_ratio_context": ratio})
            if on_eval:
                on_eval(rows[-1])
            if is_solved(spec, metric):
                solved_at = step
    summary = {"solved": solved_at is not None, "steps_to_solve": solved_at, "steps": step,
               "final_metric": rows[-1]["test_metric"], "grad_ratio_init": ratio0,
               "grad_ratio_final": rows[-1]["grad_ratio_context"], "diverged": not math.isfinite(train_loss),
               "wall_s": time.perf_counter() - started}
    return rows, summary
