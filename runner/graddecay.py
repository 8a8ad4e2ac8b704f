"""`nbnets grad-decay`: how gradients vanish or explode over time steps, per cell.

options -> (per-step rows, summary rows) -> grad_decay.csv, summary.csv, a terminal
table and (matplotlib permitting) grad_decay.png, in results/grad-decay/<run>/.
The numbers come from numbanets.gradstats; this module only draws the weights and
inputs the options ask for, trains a char LM when --train-steps asks, and writes.

Random draws (seed s = 0 .. K-1): the input batch, readout and targets come from
default_rng([s, 0]) and are shared by every cell; the RNN cells' weights come from
default_rng([s, 1]), so rnn-tanh, rnn-sigmoid, rnn-relu and rnn-identity share
W_hh, W_ih within a seed and differ only in their activation; the LSTM's weights
come from default_rng([s, 2]).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from numbanets import gradstats as gs

COMMAND = "grad-decay"
INPUTS = ("random", "zero", "corpus")
DEFAULT_INPUT_SIZE = 16
PLOT_HINT = "pip install -e '.[plot]'"


@dataclass
class Options:
    steps: int = 7
    cells: tuple = gs.DEFAULT_CELLS
    hidden: int = 32
    input_size: int | None = None
    batch: int = 4
    init: str = "normal"
    scale: float = 1.0
    forget_bias: float = 1.0
    bias: float = 0.0
    h0: float = 0.0
    input: str | None = None  # random, or corpus with --train-steps
    seeds: int = 1
    train_steps: int = 0
    record_every: int | None = None
    device: str = "auto"
    out: str = "results"
    plot: bool = True


def _int_at_least(value, name, low):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def validate(o: Options) -> Options:
    """The same rules as the click options, for callers of `run` from Python (ValueError).

    Returns a copy with the defaults that depend on other options filled in (--input).
    """
    _int_at_least(o.steps, "--steps", 1)
    _int_at_least(o.hidden, "--hidden", 1)
    _int_at_least(o.batch, "--batch", 1)
    _int_at_least(o.seeds, "--seeds", 1)
    _int_at_least(o.train_steps, "--train-steps", 0)
    if o.input_size is not None:
        _int_at_least(o.input_size, "--input-size", 1)
    if o.record_every is not None:
        _int_at_least(o.record_every, "--record-every", 1)
    if not o.cells:
        raise ValueError("--cells must name at least one cell")
    for c in o.cells:
        gs.cell_kind(c)
    if o.init not in gs.INITS:
        raise ValueError(f"unknown --init {o.init!r}; choose from {', '.join(gs.INITS)}")
    if not (isinstance(o.scale, (int, float)) and math.isfinite(o.scale) and o.scale > 0):
        raise ValueError(f"--scale must be a finite number > 0, got {o.scale!r}")
    for name in ("forget_bias", "bias", "h0"):
        v = getattr(o, name)
        if not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number, got {v!r}")
    if o.input is None:
        o = replace(o, input="corpus" if o.train_steps > 0 else "random")
    if o.input not in INPUTS:
        raise ValueError(f"unknown --input {o.input!r}; choose from {', '.join(INPUTS)}")
    if o.record_every is not None and o.train_steps == 0:
        raise ValueError("--record-every needs --train-steps")
    return o


# --------------------------------------------------------------------------- inputs

class CorpusWindows:
    """One-hot windows of the built-in char-LM corpus: x (T, N, V), targets (N,) = the next character."""

    def __init__(self):
        from numbanets.data.text import Vocabulary, builtin_corpus

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
        rng = np.random.default_rng([seed, 1 if kind == "rnn" else 2])
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
    from numbanets.data.text import BatchStream
    from numbanets.nn.models import CharLM
    from numbanets.optim import clip_grad_norm, make_optimizer

    record = set(record_steps(o))
    start = fixed_cells(o, d, seed, input_scale)
    for name in o.cells:
        kind, act = gs.cell_kind(name)
        dtype = np.dtype(TRAINING["dtype"])
        model = CharLM(d, o.hidden, TRAINING["layers"], cell=kind, activation=act if kind == "rnn" else "tanh",
                       forget_bias=float(o.forget_bias), rng=np.random.default_rng([seed, 3]), dtype=dtype)
        weights = model.state_dict()
        c = start[name]
        weights.update({"rnn.l0.w_ih": c.w_ih, "rnn.l0.w_hh": c.w_hh, "rnn.l0.b": c.b,
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
    # the input drive x_t @ w_ih.T has unit variance per unit: N(0, 1/D) weights for N(0, 1)
    # input, N(0, 1) weights for one-hot input (also when a char LM is trained)
    input_scale = math.sqrt(d) if corpus is not None else 1.0
    facts = {"input_size": d}
    if corpus is not None:
        facts["corpus"] = corpus.corpus.describe() | {"vocabulary": corpus.size}
    if o.train_steps > 0:
        facts["training"] = TRAINING | {"steps": o.train_steps, "recorded_at": record_steps(o), "device": device}
    step_frames, summary_frames = [], []
    for seed in range(o.seeds):
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


# --------------------------------------------------------------------------- terminal table

def _columns_to_show(T: int, most: int = 12) -> list[int]:
    if T <= most:
        return list(range(1, T + 1))
    return sorted(set(np.linspace(1, T, most).round().astype(int).tolist()))


def render_table(steps: pd.DataFrame, summary: pd.DataFrame, o: Options) -> str:
    """Cells as rows, t as columns: log10 of grad_ratio (mean over seeds), plus the summary numbers."""
    T = o.steps
    ts = _columns_to_show(T)
    with np.errstate(divide="ignore", invalid="ignore"):
        frame = steps.assign(log_ratio=np.log10(steps["grad_ratio"].astype(float)))
    table = frame.groupby(["phase", "cell", "t"], sort=False)["log_ratio"].mean()
    summ = summary.groupby(["phase", "cell"], sort=False)[["lambda1_gamma", "effective_rate", "steps_to_1e-3"]].mean()
    phases = list(dict.fromkeys(steps["phase"]))
    label = max(len(c) for c in o.cells) + (8 + len(str(max(phases))) if len(phases) > 1 else 0)
    label = max(label, 4)
    seeds = f"mean of {o.seeds} seeds" if o.seeds > 1 else "seed 0"
    lines = [f"log10 ||dL/dh_t|| / ||dL/dh_T||   (T = {T}, H = {o.hidden}, init {o.init} x {o.scale:g}, "
             f"input {o.input}, {seeds})"]
    head = f"{'cell':<{label}}" + "".join(f"{f't={t}':>8}" for t in ts)
    head += f"  | {'lam1*gamma':>10} {'eff.rate':>9} {'to 1e-3':>8}"
    lines.append(head)
    for phase in phases:
        for cell in o.cells:
            name = cell if len(phases) == 1 else f"{cell} @step {phase}"
            row = f"{name:<{label}}"
            for t in ts:
                v = table.get((phase, cell, t), np.nan)
                row += f"{_fmt(v, 2):>8}"
            s = summ.loc[(phase, cell)]
            row += (f"  | {_fmt(s['lambda1_gamma'], 3):>10} {_fmt(s['effective_rate'], 3):>9} "
                    f"{_steps(s['steps_to_1e-3']):>8}")
            lines.append(row)
    lines.append("(steps back to 1e-3 from the fitted slope of log10 grad_norm against t; "
                 "'never' when the gradient does not shrink; lam1*gamma blank for the LSTM)")
    return "\n".join(lines)


def _fmt(v, digits) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}f}"


def _steps(v) -> str:
    v = float(v)
    if math.isnan(v):
        return "-"
    if math.isinf(v):
        return "never"
    return f"{v:.1f}"


# --------------------------------------------------------------------------- plot

def plot(steps: pd.DataFrame, o: Options, path: Path) -> str | None:
    """Write grad_decay.png; None when done, else why not (matplotlib missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return f"grad_decay.png not written: matplotlib is not installed (get the plot with {PLOT_HINT})"
    from runner import runs

    runs.save_figure(plt, _figure(plt, steps, o), path)
    return None


SHADE_DECADES = 3.0  # white at a thousandth of the t = 1 sensitivity, black at it (or above)


def _log_mean(frame, column):
    """log10 of `column` per (cell, t), averaged over seeds (a geometric mean)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = frame.assign(v=np.log10(frame[column].astype(float)))
    return logs.groupby(["cell", "t"])["v"].mean()


def _figure(plt, steps: pd.DataFrame, o: Options):
    """Left: the unrolled network of every cell, nodes shaded by their sensitivity to x_1
    (Graves 2012, fig. 4.1); right: log10 grad_norm against k = T - t."""
    from matplotlib import cm, colormaps
    from matplotlib.colors import Normalize

    T, cells = o.steps, list(o.cells)
    phases = list(dict.fromkeys(steps["phase"]))
    first = steps[steps["phase"] == phases[0]]
    hidden, output = _log_mean(first, "sens_hidden"), _log_mean(first, "sens_out")
    norm = Normalize(vmin=-SHADE_DECADES, vmax=0.0)
    cmap = colormaps["Greys"]
    ts = np.arange(1, T + 1)
    size = float(np.clip(9000.0 / (T * T), 12, 380))
    fig = plt.figure(figsize=(13, 1.55 * len(cells) + 1.6))
    grid = fig.add_gridspec(len(cells) + 1, 2, width_ratios=(1.25, 1), height_ratios=[1] * len(cells) + [0.12],
                            hspace=0.55, wspace=0.18, left=0.08, right=0.98, top=0.88, bottom=0.07)
    for row, cell in enumerate(cells):
        ax = fig.add_subplot(grid[row, 0])
        rel_h = np.array([hidden.get((cell, t), np.nan) for t in ts]) - hidden.get((cell, 1), np.nan)
        rel_o = np.array([output.get((cell, t), np.nan) for t in ts]) - output.get((cell, 1), np.nan)
        ax.plot(np.vstack([ts, ts]), np.vstack([np.zeros(T), np.ones(T)]), color="0.7", lw=0.8, zorder=1)
        ax.plot(np.vstack([ts, ts]), np.vstack([np.ones(T), 2 * np.ones(T)]), color="0.7", lw=0.8, zorder=1)
        ax.plot(ts, np.ones(T), color="0.7", lw=0.8, zorder=1)
        inputs = np.where(ts == 1, 0.0, -SHADE_DECADES)
        for y, rel in ((0, inputs), (1, rel_h), (2, rel_o)):
            shade = cmap(norm(np.nan_to_num(np.clip(rel, -SHADE_DECADES, 0.0), nan=-SHADE_DECADES)))
            ax.scatter(ts, np.full(T, y), s=size, c=shade, edgecolors="black", linewidths=0.8, zorder=2)
        if T <= 12:
            for y, rel in ((1, rel_h), (2, rel_o)):
                for t, v in zip(ts[1:], rel[1:]):
                    ax.annotate(_fmt(v, 1), (t, y), xytext=(10, 0), textcoords="offset points",
                                ha="left", va="center", fontsize=7, color="0.2",
                                bbox=dict(fc="white", ec="none", pad=0.3))
        ax.set_yticks([0, 1, 2], ["input", "hidden", "output"], fontsize=8)
        ax.set_ylim(-0.5, 2.5)
        ax.set_xlim(0.4, T + 0.6)
        ax.set_xticks(ts if T <= 20 else _columns_to_show(T, 10))
        ax.tick_params(axis="x", labelsize=8, length=0)
        for side in ("top", "right", "left", "bottom"):
            ax.spines[side].set_visible(False)
        ax.set_title(cell, loc="left", fontsize=10, fontweight="bold", pad=4)
    ax.set_xlabel("time step t", fontsize=9)
    bar = fig.add_subplot(grid[len(cells), 0])
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=bar, orientation="horizontal")
    bar.set_xlabel("log10 sensitivity to the input at t = 1, relative to t = 1 (darker = more sensitive; "
                   "numbers beside the nodes)", fontsize=8)
    bar.tick_params(labelsize=8)

    ax = fig.add_subplot(grid[:len(cells), 1])
    colors = colormaps["tab10"]
    for p_index, phase in enumerate(phases):
        part = steps[steps["phase"] == phase]
        logs = _log_mean(part, "grad_norm")
        last = p_index == len(phases) - 1
        for c_index, cell in enumerate(cells):
            y = np.array([logs.get((cell, t), np.nan) for t in ts])
            label = cell if len(phases) == 1 else f"{cell} @step {phase}"
            ax.plot(T - ts, y, marker="o", ms=4, color=colors(c_index % 10),
                    alpha=1.0 if last else 0.25 + 0.5 * p_index / max(1, len(phases) - 1),
                    ls="-" if last else "--", label=label if (last or p_index == 0) else None)
    ax.set_xlabel("k = T - t (steps back from the loss)", fontsize=9)
    ax.set_ylabel("log10 ||dL/dh_t||", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    ax.set_title("gradient norm against steps back", fontsize=10)
    seeds = f"geometric mean of {o.seeds} seeds" if o.seeds > 1 else "seed 0"
    phase_note = f", training step {phases[0]} on the left" if len(phases) > 1 else ""
    fig.suptitle(f"grad-decay: T = {T}, H = {o.hidden}, W_hh = {o.scale:g} x {o.init}, input {o.input}, "
                 f"{seeds}{phase_note}", fontsize=11)
    return fig


# --------------------------------------------------------------------------- the command

def run(o: Options, echo=print) -> Path:
    """Run the experiment, write the run folder, echo the table; return the run folder."""
    from numbanets.device import resolve
    from runner import runs

    o = validate(o)
    device = resolve(o.device)
    started = time.perf_counter()
    steps, summary, facts = collect(o, device)
    run_dir = runs.new_run_dir(o.out, COMMAND)
    options = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(o).items()}
    runs.write_csv(run_dir / "grad_decay.csv", steps)
    runs.write_csv(run_dir / "summary.csv", summary)
    echo(render_table(steps, summary, o))
    note = plot(steps, o, run_dir / "grad_decay.png") if o.plot else None
    elapsed = time.perf_counter() - started
    runs.write_config(run_dir, COMMAND, options, device=device, statistics_on="host (numpy, float64)",
                      elapsed_s=round(elapsed, 3), **facts)
    if note:
        echo(note)
    written = ["config.json", "grad_decay.csv", "summary.csv"] + (["grad_decay.png"] if o.plot and not note else [])
    echo(f"wrote {run_dir}/ ({', '.join(written)})")
    return run_dir
