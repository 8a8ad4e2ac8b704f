"""`nbnets train-charlm`: a character-level language model that really learns.

One-hot characters in, a stack of RNN or LSTM layers, a linear read-out,
softmax cross-entropy; truncated backpropagation through time over windows of
`seq_len` characters of `batch_size` parallel streams (char-rnn's batching,
numbanets.data.text.BatchStream), the hidden state carried from one window to
the next of the same stream and reset to zero when an epoch starts again.

A run writes `results/train-charlm/<timestamp>-<id>/`:

    config.json                     every option, resolved device, versions, corpus name/size/hash
    metrics.csv                     one row per step (columns: METRIC_COLUMNS)
    samples.txt                     a sample every --sample-every steps and at the end
    checkpoint.npz + .json          weights, vocabulary, optimizer and RNG state, stream
                                    position, hidden state, step: all that exact resume needs
    best.npz + best.json            the weights with the lowest validation loss so far

Every file is written to a temporary name and renamed. Ctrl-C finishes the
current step, saves a checkpoint and exits (code 130); `--resume RUN_DIR`
continues from the checkpoint in the same folder and gives the same metrics as
a run that was never stopped.

Device-dependent work stays inside the model and numbanets.functional: the
trainer hands host integer ids in and gets Python floats back, so the same
loop runs with CUDA device arrays.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from numbanets.data.text import BatchStream, Corpus, Vocabulary, load_corpus, unigram_entropy
from runner.runs import Interrupt

COMMAND = "train-charlm"
LN2 = math.log(2.0)

METRIC_COLUMNS = [
    "step", "epoch", "train_loss", "val_loss", "train_bpc", "val_bpc",
    "grad_norm", "clipped", "lr", "chars_per_s", "elapsed_s",
]

CELLS = ("lstm", "rnn")
ACTIVATIONS = ("tanh", "sigmoid", "relu")
OPTIMIZERS = ("rmsprop", "adagrad", "adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")
INITS = ("uniform", "normal", "orthogonal", "identity")  # numbanets.nn.init.RECURRENT_INITS
CHECKPOINT_KIND = "numbanets-charlm"

# The no-option run: char-rnn's model and optimizer settings, and a step count that
# finishes in about 3 minutes on a 2-core CPU (see the README for the measured time).
DEFAULT_STEPS = 3000

DEFAULTS = {
    "corpus": None,
    "encoding": "utf-8",
    "cell": "lstm",
    "activation": "tanh",
    "hidden": 128,
    "layers": 2,
    "seq_len": 50,
    "batch_size": 50,
    "optimizer": "rmsprop",
    "lr": 2e-3,
    "lr_decay": 0.97,
    "clip": 5.0,
    "forget_bias": 1.0,
    "init": "uniform",
    "init_scale": None,
    "steps": None,
    "epochs": None,
    "max_time": None,
    "val_frac": 0.05,
    "eval_every": 100,
    "sample_every": 500,
    "sample_length": 300,
    "temperature": 0.8,
    "seed": 0,
    "device": "auto",
    "threads": None,
    "out": "results",
    "quiet": False,
}

# Options that --resume lets you change; every other one comes from the run's config.json.
RESUME_OVERRIDES = ("steps", "epochs", "max_time", "quiet", "device", "threads", "out")


class NonFiniteLoss(ValueError):
    """The loss or the gradient norm became NaN or infinite."""


# --------------------------------------------------------------------------- options

def validate(opts: dict) -> dict:
    """Check every option's range; ValueError naming the option. Returns a full, resolved copy."""
    o = {**DEFAULTS, **{k: v for k, v in opts.items() if k in DEFAULTS}}

    def need(cond, msg):
        if not cond:
            raise ValueError(msg)

    need(o["cell"] in CELLS, f"--cell must be one of {', '.join(CELLS)}, got {o['cell']!r}")
    need(o["activation"] in ACTIVATIONS, f"--activation must be one of {', '.join(ACTIVATIONS)}, got {o['activation']!r}")
    need(o["optimizer"] in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {o['optimizer']!r}")
    for name in ("hidden", "layers", "seq_len", "batch_size", "eval_every", "sample_every"):
        need(isinstance(o[name], int) and o[name] >= 1, f"--{name.replace('_', '-')} must be an integer >= 1, got {o[name]!r}")
    need(o["sample_length"] >= 0, f"--sample-length must be >= 0, got {o['sample_length']}")
    need(math.isfinite(o["lr"]) and o["lr"] > 0, f"--lr must be > 0, got {o['lr']}")
    need(0 < o["lr_decay"] <= 1, f"--lr-decay must be in (0, 1] (1 = no decay), got {o['lr_decay']}")
    need(math.isfinite(o["clip"]) and o["clip"] >= 0, f"--clip must be >= 0 (0 = off), got {o['clip']}")
    need(math.isfinite(o["forget_bias"]), f"--forget-bias must be finite, got {o['forget_bias']}")
    need(0 < o["val_frac"] < 1, f"--val-frac must be in (0, 1), got {o['val_frac']}")
    need(math.isfinite(o["temperature"]) and o["temperature"] >= 0, f"--temperature must be >= 0, got {o['temperature']}")
    if o["steps"] is not None:
        need(o["steps"] >= 1, f"--steps must be >= 1, got {o['steps']}")
    if o["epochs"] is not None:
        need(o["epochs"] > 0, f"--epochs must be > 0, got {o['epochs']}")
    if o["max_time"] is not None:
        need(o["max_time"] > 0, f"--max-time must be > 0 seconds, got {o['max_time']}")
    if o["threads"] is not None:
        need(isinstance(o["threads"], int) and o["threads"] >= 1, f"--threads must be an integer >= 1, got {o['threads']!r}")
    need(o["device"] in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got {o['device']!r}")
    need(o["init"] in INITS, f"--init must be one of {', '.join(INITS)}, got {o['init']!r}")
    if o["init_scale"] is not None:
        need(math.isfinite(o["init_scale"]) and o["init_scale"] > 0, f"--init-scale must be > 0, got {o['init_scale']}")
    return o


# --------------------------------------------------------------------------- data

@dataclass
class Data:
    corpus: Corpus
    vocab: Vocabulary
    train_ids: np.ndarray
    val_ids: np.ndarray
    unigram_entropy: float

    def describe(self) -> dict:
        return {
            **self.corpus.describe(),
            "vocab_size": len(self.vocab),
            "train_chars": int(self.train_ids.size),
            "val_chars": int(self.val_ids.size),
            "unigram_entropy_nats": self.unigram_entropy,
        }


def prepare_data(corpus: Corpus, val_frac: float, batch_size: int, seq_len: int,
                 vocab: Vocabulary | None = None) -> Data:
    """Vocabulary, train/validation split (the last `val_frac` of the text) and size checks.

    ValueError when the text is too short for one batch of batch_size x seq_len
    in the training part plus one window of seq_len in the validation part.
    """
    vocab = vocab or Vocabulary.from_text(corpus.text)
    ids = vocab.encode(corpus.text)
    n_val = int(round(len(ids) * val_frac))
    need_train = batch_size * seq_len + 1
    need_val = seq_len + 1
    if len(ids) - n_val < need_train or n_val < need_val:
        need_total = max(need_train + need_val, int(math.ceil(need_train / (1 - val_frac))),
                         int(math.ceil(need_val / val_frac)))
        raise ValueError(
            f"corpus {corpus.name} has {len(ids)} characters: too short for one batch of "
            f"--batch-size {batch_size} x --seq-len {seq_len} plus a validation split of "
            f"--val-frac {val_frac} (needs at least {need_total} characters)"
        )
    train_ids, val_ids = ids[: len(ids) - n_val], ids[len(ids) - n_val:]
    return Data(corpus, vocab, train_ids, val_ids, unigram_entropy(train_ids, len(vocab)))


def val_stream(val_ids: np.ndarray, batch_size: int, seq_len: int) -> BatchStream:
    """The validation text as streams: batch_size of them, or fewer when it is short."""
    rows = max(1, min(batch_size, (len(val_ids) - 1) // seq_len))
    return BatchStream(val_ids, rows, seq_len)


# --------------------------------------------------------------------------- training

def planned_steps(opts: dict, windows_per_epoch: int) -> int:
    """--steps, else --epochs worth of windows, else DEFAULT_STEPS."""
    if opts.get("steps") is not None:
        return int(opts["steps"])
    if opts.get("epochs") is not None:
        return max(1, int(math.ceil(opts["epochs"] * windows_per_epoch)))
    return DEFAULT_STEPS


class Trainer:
    """The model, its optimizer, the batch streams and everything exact resume needs.

    `train_step()` runs one window of truncated BPTT and returns the step's
    metrics as Python floats; `evaluate()` is the mean loss over the whole
    validation text; `state_dict()` / `load_state_dict()` are the checkpoint.
    """

    def __init__(self, opts: dict, data: Data, device: str = "cpu", dtype=np.float32):
        from numbanets.optim import make_optimizer

        self.opts = opts
        self.data = data
        self.device = device
        self.dtype = np.dtype(dtype)
        self.model = build_model(opts, len(data.vocab), self.dtype, device)
        self.optimizer = make_optimizer(opts["optimizer"], self.model, lr=opts["lr"])
        self.stream = BatchStream(data.train_ids, opts["batch_size"], opts["seq_len"])
        self.val = val_stream(data.val_ids, opts["batch_size"], opts["seq_len"])
        self.windows = self.stream.windows
        self.state = None  # the hidden state carried into the next window (None = zeros)
        self.step = 0
        self.best_val = math.inf
        self.best_step = 0

    @property
    def chars_per_step(self) -> int:
        return self.opts["batch_size"] * self.opts["seq_len"]

    def lr_at(self, step: int) -> float:
        """The learning rate of (1-based) `step`: --lr times --lr-decay per finished epoch."""
        return self.opts["lr"] * self.opts["lr_decay"] ** ((step - 1) // self.windows)

    def train_step(self) -> dict:
        from numbanets.functional import clip_grad_norm

        x, y, wrapped = self.stream.next()
        if wrapped:
            self.state = None  # a new epoch: every stream starts again at its beginning
        step = self.step + 1
        lr = self.lr_at(step)
        t0 = time.perf_counter()
        loss, state = self.model.loss_and_grad(x, y, self.state)
        clip = self.opts["clip"]
        grad_norm = clip_grad_norm(self.model.gradients(), clip if clip > 0 else math.inf)
        if not (math.isfinite(loss) and math.isfinite(grad_norm)):
            self.stream.position = (self.stream.position - 1) % self.windows  # window not consumed
            raise NonFiniteLoss(
                f"the loss became {loss} at step {step} (gradient norm before clipping {grad_norm:.6g}); "
                "training stopped"
            )
        self.optimizer.lr = lr
        self.optimizer.step()
        seconds = time.perf_counter() - t0
        self.state = state
        self.step = step
        return {
            "step": step,
            "epoch": step / self.windows,
            "train_loss": loss,
            "val_loss": math.nan,
            "train_bpc": loss / LN2,
            "val_bpc": math.nan,
            "grad_norm": grad_norm,
            "clipped": int(clip > 0 and grad_norm > clip),
            "lr": lr,
            "chars_per_s": self.chars_per_step / seconds if seconds > 0 else math.nan,
            "seconds": seconds,
        }

    def evaluate(self) -> float:
        """Mean loss (nats/char) over every window of the validation text, state carried."""
        total, count, state = 0.0, 0, None
        for x, y in self.val:
            loss, state = self.model.loss(x, y, state)
            total += loss
            count += 1
        return total / count

    def sample(self, length: int, temperature: float, prime: str | None = None) -> str:
        from runner.sample_cmd import default_prime, generate

        if prime is None:
            prime = default_prime(self.data.vocab)
        # a generator seeded by (seed, step): the samples of a resumed run match, and
        # sampling never touches the training state
        rng = np.random.default_rng([self.opts["seed"], 1, self.step])
        return generate(self.model, self.data.vocab, prime, length, temperature, 0, rng)

    # ----------------------------------------------------------------------- checkpoint

    def weights(self) -> tuple[dict, dict]:
        """(arrays, meta) of the weights alone: what best.npz and `nbnets sample` need."""
        arrays = {f"param/{k}": v for k, v in self.model.state_dict().items()}
        meta = {"kind": CHECKPOINT_KIND, "step": self.step, "model": self.model.config(),
                "vocab": self.data.vocab.chars, "corpus": self.data.corpus.name}
        return arrays, meta

    def state_dict(self) -> tuple[dict, dict]:
        """(arrays, meta) for numbanets.checkpoint: host arrays and JSON-able facts."""
        from numbanets.device import to_host

        arrays, meta = self.weights()
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_dict().items()})
        layers = []
        for i, s in enumerate(self.state or ()):
            parts = s if isinstance(s, tuple) else (s,)
            for name, a in zip(("h", "c"), parts):
                arrays[f"hidden/{i}/{name}"] = to_host(a)
            layers.append(len(parts))
        meta.update({
            "stream_position": self.stream.position,
            "hidden_state": layers if self.state is not None else None,
            "rng": {"seed": self.opts["seed"], "init": "numpy default_rng(seed)",
                    "samples": "numpy default_rng([seed, 1, step]) per sample",
                    "training": "no randomness after initialisation (no dropout)"},
            "best_val": self.best_val,
            "best_step": self.best_step,
            "optimizer": self.opts["optimizer"],
        })
        return arrays, meta

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore from a checkpoint; ValueError when it does not fit this model."""
        from numbanets.device import to_device

        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        try:
            self.model.load_state_dict(params)
            self.optimizer.load_state_dict(optim)
            layers = meta.get("hidden_state")
            if layers is None:
                self.state = None
            else:
                move = to_device if self.device == "cuda" else (lambda a: a.copy())
                state = []
                for i, parts in enumerate(layers):
                    got = tuple(move(arrays[f"hidden/{i}/{name}"]) for name in ("h", "c")[:parts])
                    state.append(got if parts == 2 else got[0])
                self.state = state
            self.step = int(meta["step"])
            self.stream.position = int(meta["stream_position"])
            self.best_val = float(meta.get("best_val", math.inf))
            self.best_step = int(meta.get("best_step", 0))
        except KeyError as exc:
            raise ValueError(f"the checkpoint lacks {exc.args[0]!r}: not a complete train-charlm checkpoint") from None


def build_model(opts: dict, vocab_size: int, dtype=np.float32, device: str = "cpu"):
    """The CharLM of the options, initialised from --seed, on `device`."""
    from numbanets.nn.models import CharLM

    model = CharLM(
        vocab_size, opts["hidden"], opts["layers"], cell=opts["cell"], activation=opts["activation"],
        forget_bias=opts["forget_bias"], rng=np.random.default_rng(opts["seed"]), dtype=dtype,
        init=opts["init"], init_scale=init_scale(opts),
    )
    return model.to(device) if device != "cpu" else model


def init_scale(opts: dict):
    """--init-scale, else char-rnn's 0.08 for uniform and the initialiser's own default otherwise."""
    if opts.get("init_scale") is not None:
        return float(opts["init_scale"])
    return 0.08 if opts["init"] == "uniform" else None


# --------------------------------------------------------------------------- run folder

@dataclass
class RunResult:
    run_dir: Path
    step: int
    interrupted: bool
    summary: dict = field(default_factory=dict)


def _save_checkpoint(trainer: Trainer, run_dir: Path, elapsed: float) -> None:
    from numbanets import checkpoint

    arrays, meta = trainer.state_dict()
    meta["elapsed_s"] = elapsed
    checkpoint.save(run_dir / "checkpoint.npz", arrays, meta)


def _load_checkpoint(path: Path) -> tuple[dict, dict]:
    """(arrays, meta) of a charlm checkpoint; ValueError for a corrupt or foreign file."""
    from numbanets import checkpoint

    arrays, meta = checkpoint.load(path)
    if not isinstance(meta, dict) or meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a numbanets character-LM checkpoint")
    for key in ("model", "vocab", "step"):
        if key not in meta:
            raise ValueError(f"{path} is not a complete character-LM checkpoint (no {key!r})")
    return arrays, meta


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    import pandas as pd

    from runner.runs import write_csv

    frame = pd.DataFrame(rows, columns=METRIC_COLUMNS)
    write_csv(run_dir / "metrics.csv", frame, float_format="%.9g")


def _read_metrics(run_dir: Path, upto_step: int) -> list[dict]:
    import pandas as pd

    path = run_dir / "metrics.csv"
    if not path.exists():
        return []
    try:
        frame = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a bad run folder
        raise ValueError(f"{path} cannot be read: {exc}") from None
    missing = [c for c in METRIC_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path} lacks the columns {', '.join(missing)}")
    frame = frame[frame["step"] <= upto_step]
    return frame[METRIC_COLUMNS].to_dict("records")


def _describe_model(trainer: Trainer) -> str:
    o = trainer.opts
    cell = "LSTM" if o["cell"] == "lstm" else f"RNN ({o['activation']})"
    return (f"{cell} {o['layers']} x {o['hidden']}, {trainer.model.num_parameters():,} parameters, "
            f"{trainer.dtype.name} on {trainer.device}")


def _resolve_resume(resume: str, opts: dict, given) -> tuple[Path, dict, dict]:
    from runner.runs import resolve_resume

    run_dir, config, merged = resolve_resume(resume, COMMAND, opts, given, DEFAULTS, RESUME_OVERRIDES)
    if "epochs" in given and "steps" not in given:
        merged["steps"] = None  # the length given now wins over the run's own
    if "steps" in given:
        merged["epochs"] = None
    return run_dir, config, merged


def _throughput(steps: int, chars_per_step: int, seconds: float, first_step_seconds: float) -> str:
    """Characters per second of the training steps, leaving out the first (kernel loading) when there are more."""
    if steps > 1:
        rate = (steps - 1) * chars_per_step / max(seconds - first_step_seconds, 1e-9)
        return f"{rate:,.0f} (training steps after the first, which loads the compiled kernels)"
    return f"{steps * chars_per_step / max(seconds, 1e-9):,.0f} (training steps only)"


def _samples_upto(text: str, step: int) -> str:
    """The blocks of samples.txt written at steps <= `step` (a resumed run rewrites the rest)."""
    import re

    blocks = re.split(r"(?m)^(?==== step \d+)", text)
    keep = [b for b in blocks if b and int(re.match(r"=== step (\d+)", b).group(1)) <= step]
    return "".join(keep)


def train(opts: dict, given=(), resume: str | None = None, echo=None) -> RunResult:
    """Run `nbnets train-charlm` with `opts` (option name -> value); `given` names the
    options the user set explicitly (they must not clash with a resumed run's)."""
    from numbanets.device import resolve
    from runner.runs import new_run_dir, write_config, write_json
    from runner.sample_cmd import generate  # noqa: F401 - fail early if sampling cannot import

    echo = echo or (lambda s: print(s, flush=True))
    config = None
    if resume is not None:
        run_dir, config, opts = _resolve_resume(resume, opts, set(given))
    o = validate(opts)
    corpus = load_corpus(o["corpus"], o["encoding"])
    if config is not None:
        saved_hash = config.get("corpus", {}).get("sha256")
        if saved_hash and saved_hash != corpus.sha256:
            raise ValueError(
                f"--resume: the corpus {corpus.name} has changed since the run started "
                f"(sha256 {corpus.sha256[:12]}..., the run used {saved_hash[:12]}...)"
            )
        ckpt_arrays, ckpt_meta = _load_checkpoint(run_dir / "checkpoint.npz")
        vocab = Vocabulary(ckpt_meta["vocab"])
    else:
        vocab = None
    data = prepare_data(corpus, o["val_frac"], o["batch_size"], o["seq_len"], vocab)
    device = resolve(o["device"])
    trainer = Trainer(o, data, device)
    target = planned_steps(o, trainer.windows)

    if config is None:
        run_dir = new_run_dir(o["out"], COMMAND)
        config = write_config(
            run_dir, COMMAND, o, device=device, corpus=data.describe(),
            model={**trainer.model.config(), "parameters": trainer.model.num_parameters()},
            steps_planned=target, windows_per_epoch=trainer.windows,
            chars_per_step=trainer.chars_per_step,
        )
        rows, samples_text, elapsed0 = [], "", 0.0
    else:
        trainer.load_state_dict(ckpt_arrays, ckpt_meta)
        rows = _read_metrics(run_dir, trainer.step)
        samples_path = run_dir / "samples.txt"
        samples_text = samples_path.read_text(encoding="utf-8") if samples_path.exists() else ""
        samples_text = _samples_upto(samples_text, trainer.step)
        elapsed0 = float(ckpt_meta.get("elapsed_s", rows[-1]["elapsed_s"] if rows else 0.0))
        config.setdefault("resumed", []).append(
            {"at_step": trainer.step, "steps": target, "device": device,
             "options_changed": {k: o[k] for k in given if k in RESUME_OVERRIDES}}
        )
        write_json(run_dir / "config.json", config)

    ent = data.unigram_entropy
    echo(f"corpus  {corpus.name}: {len(corpus.text):,} chars, {len(vocab or data.vocab)} symbols, "
         f"unigram entropy {ent:.4f} nats/char ({ent / LN2:.3f} bits)")
    echo(f"model   {_describe_model(trainer)}")
    start = trainer.step
    echo(f"train   steps {start + 1}..{target} of {o['batch_size']} x {o['seq_len']} chars "
         f"({trainer.windows} steps per epoch), {o['optimizer']} lr {o['lr']:g}, clip {o['clip']:g}")
    echo(f"run     {run_dir}" + (f" (resumed at step {start})" if start else ""))
    if start >= target:
        echo(f"the run is already at step {start} >= --steps {target}: nothing to do")
        return RunResult(run_dir, start, False, {})
    with _cpu_threads(o["threads"]):
        return _train_loop(trainer, o, run_dir, rows, samples_text, elapsed0, target, echo)


class _cpu_threads:
    """Limit BLAS and numba to `n` threads inside the block (None: leave them as they are)."""

    def __init__(self, n):
        self.n = n
        self._limits = self._numba = None

    def __enter__(self):
        if self.n is not None:
            import numba
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=self.n, user_api="blas")
            self._numba = numba.get_num_threads()
            numba.set_num_threads(min(self.n, numba.config.NUMBA_NUM_THREADS))
        return self

    def __exit__(self, *exc):
        if self.n is not None:
            import numba

            self._limits.restore_original_limits()
            numba.set_num_threads(self._numba)
        return False


def _train_loop(trainer, o, run_dir, rows, samples_text, elapsed0, target, echo) -> RunResult:
    from runner.progress import ProgressBar

    start = trainer.step
    ent = trainer.data.unigram_entropy

    def save_samples(step, val, text):
        nonlocal samples_text
        from numbanets.checkpoint import atomic_write_text

        head = f"=== step {step}" + (f", val loss {val:.4f}" if math.isfinite(val) else "") + \
            f", temperature {o['temperature']:g} ===\n"
        samples_text += head + text + "\n\n"
        atomic_write_text(run_dir / "samples.txt", samples_text)

    bar = ProgressBar(target, start=start, enabled=not o["quiet"])
    t_start = time.perf_counter()
    train_seconds = 0.0
    first_step_seconds = 0.0  # the session's first step also loads (or compiles) the kernels
    last_ckpt = trainer.step
    interrupted = timed_out = False
    last_val = math.nan
    with Interrupt() as stop:
        try:
            while trainer.step < target:
                try:
                    row = trainer.train_step()
                except NonFiniteLoss as exc:
                    _write_metrics(run_dir, rows)
                    bar.clear()
                    raise NonFiniteLoss(
                        f"{exc}; the last good checkpoint (step {last_ckpt}) is kept in {run_dir}"
                    ) from None
                step = row.pop("step")
                seconds = row.pop("seconds")
                train_seconds += seconds
                if step == start + 1:
                    first_step_seconds = seconds
                final = step == target
                elapsed = time.perf_counter() - t_start
                will_stop = stop.requested or (o["max_time"] is not None and elapsed >= o["max_time"])
                if step % o["eval_every"] == 0 or final or will_stop:
                    last_val = trainer.evaluate()
                    row["val_loss"], row["val_bpc"] = last_val, last_val / LN2
                    if last_val < trainer.best_val:
                        from numbanets import checkpoint

                        trainer.best_val, trainer.best_step = last_val, step
                        arrays, meta = trainer.weights()
                        meta["val_loss"] = last_val
                        checkpoint.save(run_dir / "best.npz", arrays, meta)
                row["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
                rows.append({"step": step, **row})
                done_chars = (step - start) * trainer.chars_per_step
                rate = done_chars / train_seconds if train_seconds > 0 else 0.0
                eta = (target - step) * (time.perf_counter() - t_start) / (step - start)
                bar.update(step, row["train_loss"], rate, eta)
                if step % o["sample_every"] == 0 or final or will_stop:
                    val_text = (f"val loss {last_val:.4f} nats/char ({last_val / LN2:.3f} bpc)"
                                if math.isfinite(last_val) else "")
                    bar.message(f"step {step:>{len(str(target))}}  train loss {row['train_loss']:.4f}  {val_text}  "
                                f"(unigram entropy {ent:.4f})", echo)
                if o["sample_length"] and (step % o["sample_every"] == 0 or final):
                    save_samples(step, row["val_loss"], trainer.sample(o["sample_length"], o["temperature"]))
                if step % o["eval_every"] == 0 or final or will_stop:
                    _write_metrics(run_dir, rows)
                    _save_checkpoint(trainer, run_dir, row["elapsed_s"])
                    last_ckpt = step
                if will_stop:
                    interrupted, timed_out = stop.requested, not stop.requested
                    break
        finally:
            bar.close()

    if last_ckpt != trainer.step:  # (not reached in practice: every exit path above saves)
        _write_metrics(run_dir, rows)
        _save_checkpoint(trainer, run_dir, rows[-1]["elapsed_s"])

    session = time.perf_counter() - t_start
    final_sample = samples_text.rstrip("\n").rsplit("===\n", 1)[-1] if samples_text else ""
    summary = {
        "run": str(run_dir),
        "steps": f"{trainer.step} (epoch {trainer.step / trainer.windows:.2f})",
        "time": f"{session:.1f} s" + (f" this session, {elapsed0 + session:.1f} s in all" if elapsed0 else ""),
        "chars/s": _throughput(trainer.step - start, trainer.chars_per_step, train_seconds, first_step_seconds),
        "train loss": f"{rows[-1]['train_loss']:.4f} nats/char ({rows[-1]['train_bpc']:.3f} bpc)",
        "val loss": f"{last_val:.4f} nats/char ({last_val / LN2:.3f} bpc)",
        "best val loss": f"{trainer.best_val:.4f} at step {trainer.best_step} (best.npz)",
        "unigram entropy": f"{ent:.4f} nats/char ({ent / LN2:.3f} bits)",
    }
    if final_sample:
        echo("\nsample:\n" + final_sample + "\n")
    width = max(map(len, summary))
    echo("\n".join(f"{k:<{width}}  {v}" for k, v in summary.items()))
    if interrupted:
        echo(f"interrupted at step {trainer.step}; checkpoint saved. Continue with:\n"
             f"  nbnets train-charlm --resume {run_dir} --steps {target}")
    elif timed_out:
        echo(f"--max-time {o['max_time']:g} s reached at step {trainer.step}; checkpoint saved")
    return RunResult(run_dir, trainer.step, interrupted, summary)
