"""`nbnets grad-decay`: how gradients vanish or explode over time steps, per cell.

options -> (per-step rows, summary rows) -> grad_decay.csv, summary.csv, a terminal
table and (matplotlib permitting) grad_decay.png, in results/grad-decay/<run>/.
The numbers come from numbanets.gradstats; this module only draws the weights and
inputs the options ask for, trains a char LM when --train-steps asks, and writes.

Random draws (seed s = S .. S+K-1, --seed S and --seeds K): the input batch, readout and targets come from
default_rng([s, 0]) and are shared by every cell; the RNN cells' weights come from
default_rng([s, 1]), so rnn-tanh, rnn-sigmoid, rnn-relu and rnn-identity share
W_hh, W_ih within a seed and differ only in their activation; the LSTM's weights
come from default_rng([s, 2]), the GRU's from default_rng([s, 4]).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from numbanets import gradstats as gs
from numbanets.data.text import BatchStream, Vocabulary, builtin_corpus
from numbanets.nn.models import CharLM
from numbanets.optim import clip_grad_norm, make_optimizer
from runner.graddecay import footprint
from runner.graddecay.options import DEFAULT_INPUT_SIZE, Options, validate

class CorpusWindows:
    """One-hot windows of the built-in char-LM corpus: x (T, N, V), targets (N,) = the next character."""

    def __init__(self):
        self.corpus = builtin_corpus()
        self.vocab = Vocabulary.from_text(self.corpus.text)
        self._ids = None

    @property
    def ids(self) -> np.ndarray:
        """The whole corpus as character ids (encoded once, for training)."""
        if self._ids is None:
            # Vocabulary is sorted by code point: a code point's id is its rank (vectorised encode)
            codes = np.frombuffer(self.corpus.text.encode("utf-32-le"), dtype=np.uint32)
            table = np.array([ord(c) for c in self.vocab.chars], dtype=np.uint32)
            self._ids = np.searchsorted(table, codes).astype(np.int64)
        return self._ids

    @property
    def size(self) -> int:
        return len(self.vocab)

    def draw(self, steps: int, batch: int, rng: np.random.Generator):
        text = self.corpus.text
        if steps + 1 >= len(text):
            raise ValueError(f"--steps {steps} needs a corpus longer than its {len(text)} characters")
        starts = rng.integers(0, len(text) - steps - 1, batch)
        ids = np.stack([self.vocab.encode(text[s:s + steps + 1]) for s in starts], axis=1)  # (T+1, N)
        x = np.zeros((steps, batch, self.size))
        np.put_along_axis(x, ids[:steps, :, None], 1.0, axis=2)
        return x, ids[steps]


def draw_inputs(o: Options, d: int, rng: np.random.Generator, corpus: CorpusWindows | None):
    """(x (T, N, D), readout W_y (D, H), targets (N,)) for one seed."""
    if o.input == "corpus":
        x, targets = corpus.draw(o.steps, o.batch, rng)
    else:
        x = rng.normal(size=(o.steps, o.batch, d)) if o.input == "random" else np.zeros((o.steps, o.batch, d))
        targets = rng.integers(0, d, o.batch)
    readout = rng.normal(0.0, 1.0 / math.sqrt(o.hidden), (d, o.hidden))
    return x, readout, targets


def input_size(o: Options, corpus: CorpusWindows | None) -> int:
    if corpus is None:
        return o.input_size or DEFAULT_INPUT_SIZE
    if o.input_size is not None and o.input_size != corpus.size:
        raise ValueError(
            f"--input-size {o.input_size} does not match the corpus vocabulary of {corpus.size} characters "
            f"(one-hot input); leave --input-size out with --input corpus or --train-steps"
        )
    return corpus.size


# --------------------------------------------------------------------------- rows

def _rows(cell_name, stats: gs.GradStats, o: Options, seed: int, phase: int, extra: dict):
    kind, act = gs.cell_kind(cell_name)
    ident = {"cell": cell_name, "activation": act, "init": o.init, "scale": float(o.scale),
             "seed": seed, "phase": phase, "steps": o.steps}
    T = stats.T
    steps = pd.DataFrame({**ident, "t": np.arange(1, T + 1), "k": T - np.arange(1, T + 1), **stats.steps})
    summary = pd.DataFrame([{**ident, **stats.summary, **extra}])
    return steps, summary


def fixed_cells(o: Options, d: int, seed: int, input_scale: float) -> dict:
    """cell name -> gs.Cell with the options' random weights (see the module docstring)."""
    cells = {}
    for name in o.cells:
        kind, _ = gs.cell_kind(name)
        rng = np.random.default_rng([seed, {"rnn": 1, "lstm": 2, "gru": 4}[kind]])
        cells[name] = gs.make_cell(name, o.hidden, d, rng, init=o.init, scale=float(o.scale), bias=float(o.bias),
                                   forget_bias=float(o.forget_bias), input_scale=input_scale)
    return cells


# --------------------------------------------------------------------------- --train-steps

# the char LM that --train-steps trains (fixed, recorded in config.json)
TRAINING = {"layers": 1, "batch_size": 32, "seq_len": 25, "optimizer": "adam", "lr": 2e-3, "clip": 5.0,
            "dtype": "float32", "data": "the built-in corpus, truncated BPTT with the state carried"}


def record_steps(o: Options) -> list[int]:
    """Training steps at which the statistics are taken: 0, R, 2R, ... and the last, S."""
    every = o.record_every or max(1, o.train_steps // 4)
    steps = list(range(0, o.train_steps + 1, every))
    if steps[-1] != o.train_steps:
        steps.append(o.train_steps)
    return steps


def training_snapshots(o: Options, seed: int, d: int, corpus: "CorpusWindows", input_scale: float,
                       readout: np.ndarray, device: str):
    """Train one char LM per cell; yield (phase, name, gs.Cell, W_y, b_y, mean train loss since the last record).

    The model starts from exactly the weights an untrained run draws (recurrent layer from
    `fixed_cells`, read-out = the random readout with zero bias), so phase 0 repeats it.
    """
    record = set(record_steps(o))
    start = fixed_cells(o, d, seed, input_scale)
    for name in o.cells:
        kind, act = gs.cell_kind(name)
        dtype = np.dtype(TRAINING["dtype"])
        model = CharLM(d, o.hidden, TRAINING["layers"], cell=kind, activation=act if kind == "rnn" else "tanh",
                       forget_bias=float(o.forget_bias), rng=np.random.default_rng([seed, 3]), dtype=dtype)
        weights = model.state_dict()
        c = start[name]
        biases = {"rnn.l0.b_ih": c.b, "rnn.l0.b_hh": c.b_hh} if kind == "gru" else {"rnn.l0.b": c.b}
        weights.update({"rnn.l0.w_ih": c.w_ih, "rnn.l0.w_hh": c.w_hh, **biases,
                        "head.w": readout, "head.b": np.zeros(d)})
        model.load_state_dict({k: np.asarray(v, dtype=dtype) for k, v in weights.items()})
        if device == "cuda":
            model.to("cuda")
        optimizer = make_optimizer(TRAINING["optimizer"], model, TRAINING["lr"])
        stream = BatchStream(corpus.ids, TRAINING["batch_size"], TRAINING["seq_len"])
        state, losses = None, []
        for step in range(o.train_steps + 1):
            if step in record:
                w = {k: np.asarray(v, dtype=np.float64) for k, v in model.state_dict().items()}
                if kind == "gru":
                    cell = gs.Cell(name, w["rnn.l0.w_ih"], w["rnn.l0.w_hh"], w["rnn.l0.b_ih"], w["rnn.l0.b_hh"])
                else:
                    cell = gs.Cell(name, w["rnn.l0.w_ih"], w["rnn.l0.w_hh"], w["rnn.l0.b"])
                loss = float(np.mean(losses)) if losses else math.nan
                losses = []
                yield step, name, cell, w["head.w"], w["head.b"], {"train_loss": loss}
            if step == o.train_steps:
                break
            x, y, wrapped = stream.next()
            if wrapped:
                state = None
            loss, state = model.loss_and_grad(x, y, state)
            norm = clip_grad_norm(model.gradients(), TRAINING["clip"])
            if not (math.isfinite(loss) and math.isfinite(norm)):
                raise ValueError(f"training {name} diverged at step {step + 1} (loss {loss}, gradient norm {norm}); "
                                 "try a smaller --scale")
            optimizer.step()
            losses.append(loss)


def collect(o: Options, device: str = "cpu") -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """All rows: (grad_decay frame, summary frame, facts for config.json)."""
    o = validate(o)
    corpus = CorpusWindows() if (o.input == "corpus" or o.train_steps > 0) else None
    d = input_size(o, corpus)
    footprint.check(o, d)  # refuse a run too big for the memory before its first array is drawn
    # the input drive x_t @ w_ih.T has unit variance per unit: N(0, 1/D) weights for N(0, 1)
    # input, N(0, 1) weights for one-hot input (also when a char LM is trained)
    input_scale = math.sqrt(d) if corpus is not None else 1.0
    facts = {"input_size": d}
    if corpus is not None:
        facts["corpus"] = corpus.corpus.describe() | {"vocabulary": corpus.size}
    if o.train_steps > 0:
        facts["training"] = TRAINING | {"steps": o.train_steps, "recorded_at": record_steps(o), "device": device}
    step_frames, summary_frames = [], []
    for seed in range(o.seed, o.seed + o.seeds):
        rng = np.random.default_rng([seed, 0])
        x, readout, targets = draw_inputs(o, d, rng, corpus)
        h0 = np.full((o.batch, o.hidden), float(o.h0))
        if o.train_steps > 0:
            entries = training_snapshots(o, seed, d, corpus, input_scale, readout, device)
        else:
            cells = fixed_cells(o, d, seed, input_scale)
            entries = ((0, name, cell, readout, None, {}) for name, cell in cells.items())
        for phase, name, cell, W_y, b_y, extra in entries:
            stats = gs.gradient_statistics(cell, x, h0, W_y, targets, readout_bias=b_y)
            s, m = _rows(name, stats, o, seed, phase, extra)
            step_frames.append(s)
            summary_frames.append(m)
    # rows ordered seed, phase, cell, t (training yields cell by cell; the sort is stable)
    steps = pd.concat(step_frames, ignore_index=True).sort_values(["seed", "phase"], kind="stable")
    summary = pd.concat(summary_frames, ignore_index=True).sort_values(["seed", "phase"], kind="stable")
    return steps.reset_index(drop=True), summary.reset_index(drop=True), facts
