"""`nbnets train-charlm`: the training run of a character-level language model.

One-hot characters in, a stack of RNN, LSTM or GRU layers, a linear read-out,
softmax cross-entropy; truncated backpropagation through time over windows of
`seq_len` characters of `batch_size` parallel streams (char-rnn's batching,
numbanets.data.text.BatchStream), the hidden state carried from one window to
the next of the same stream and reset to zero when an epoch starts again.

A run writes `results/train-charlm/<timestamp>-<id>/`:

    config.json                     every option as used (the corpus's absolute path, --steps, --init-scale
                                    and --threads as resolved), device, versions, corpus name/size/SHA-256
    metrics.csv                     one row per step (columns: options.METRIC_COLUMNS)
    samples.txt                     a sample every --sample-every steps and at the end
    checkpoint.npz + .json          weights, vocabulary, optimizer and RNG state, stream
                                    position, hidden state, step: all that exact resume needs (checkpoint.py);
                                    written at step 0 as the folder is made, so every run folder resumes
                                    and samples from its first second, then at every evaluation
    best.npz + best.json            the weights with the lowest validation loss so far

Every file is written to a temporary name and renamed. Ctrl-C finishes the
current step, saves a checkpoint and exits (code 130); `--resume RUN_DIR`
continues from the checkpoint in the same folder and gives the same metrics as
a run that was never stopped; it finds the corpus by its absolute path, or
takes `--corpus` naming a copy with the same SHA-256, and refuses a length
below the step the run has reached (config.json untouched).

Device-dependent work stays inside the model and numbanets.functional: the
trainer hands host integer ids in and gets Python floats back, so the same
loop runs with CUDA device arrays.
"""

from __future__ import annotations

import math
import os
import re
import time

import numba
import numpy as np

from numbanets.checkpoint import atomic_write_text
from numbanets.data.text import BatchStream, Vocabulary, load_corpus
from numbanets.device import resolve
from numbanets.functional import clip_grad_norm
from numbanets.optim import make_optimizer
from runner.charlm import checkpoint, footprint
from runner.charlm.data import Data, prepare_data, val_stream
from runner.charlm.model import build_model
from runner.charlm.options import (
    COMMAND, DEFAULT_STEPS, LN2, METRIC_COLUMNS, RELOCATABLE, RESUME_OVERRIDES, planned_steps, resolve_resume,
    validate,
)
from runner.charlm.sample import default_prime, generate
from runner.common.progress import ProgressBar
from runner.common.runs import Interrupt, lock_run, new_run_dir, write_config, with_run_locks
from runner.common.threads import Threads
from runner.common.training import CHECKPOINT_FILE, NonFiniteLoss, RunResult, read_metrics, record_resume, write_metrics

__all__ = ["DEFAULT_STEPS", "METRIC_COLUMNS", "BatchStream", "NonFiniteLoss", "RunResult", "Trainer",
           "planned_steps", "prepare_data", "train", "validate"]


class Trainer:
    """The model, its optimizer, the batch streams and everything exact resume needs.

    `train_step()` runs one window of truncated BPTT and returns the step's
    metrics as Python floats; `evaluate()` is the mean loss over the whole
    validation text; `state_dict()` / `load_state_dict()` are the checkpoint.
    """

    def __init__(self, opts: dict, data: Data, device: str = "cpu", dtype=np.float32):
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
        self.model.eval()  # no dropout
        try:
            for x, y in self.val:
                loss, state = self.model.loss(x, y, state)
                total += loss
                count += 1
        finally:
            self.model.train()
        return total / count

    def sample(self, length: int, temperature: float, prime: str | None = None) -> str:
        if prime is None:
            prime = default_prime(self.data.vocab)
        # a generator seeded by (seed, step): the samples of a resumed run match, and
        # sampling never touches the training state
        rng = np.random.default_rng([self.opts["seed"], 1, self.step])
        self.model.eval()  # no dropout
        try:
            return generate(self.model, self.data.vocab, prime, length, temperature, 0, rng)
        finally:
            self.model.train()

    # ----------------------------------------------------------------------- checkpoint

    def weights(self) -> tuple[dict, dict]:
        """(arrays, meta) of the weights alone: what best.npz and `nbnets sample` need."""
        return checkpoint.weights(self.model, self.step, self.data.vocab.chars, self.data.corpus.name)

    def state_dict(self) -> tuple[dict, dict]:
        """(arrays, meta) for numbanets.checkpoint: host arrays and JSON-able facts."""
        return checkpoint.training_state(self)

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore from a checkpoint; ValueError when it does not fit this model."""
        checkpoint.restore(self, arrays, meta)


# --------------------------------------------------------------------------- the run

def _describe_model(trainer: Trainer) -> str:
    o = trainer.opts
    cell = o["cell"].upper() if o["cell"] != "rnn" else f"RNN ({o['activation']})"
    return (f"{cell} {o['layers']} x {o['hidden']}, {trainer.model.num_parameters():,} parameters, "
            f"{trainer.dtype.name} on {trainer.device}")


def _throughput(steps: int, chars_per_step: int, seconds: float, first_step_seconds: float) -> str:
    """Characters per second of the training steps, leaving out the first (kernel loading) when there are more."""
    if steps > 1:
        rate = (steps - 1) * chars_per_step / max(seconds - first_step_seconds, 1e-9)
        return f"{rate:,.0f} (training steps after the first, which loads the compiled kernels)"
    return f"{steps * chars_per_step / max(seconds, 1e-9):,.0f} (training steps only)"


def _samples_upto(text: str, step: int) -> str:
    """The blocks of samples.txt written at steps <= `step` (a resumed run rewrites the rest)."""
    blocks = re.split(r"(?m)^(?==== step \d+)", text)
    keep = [b for b in blocks if b and int(re.match(r"=== step (\d+)", b).group(1)) <= step]
    return "".join(keep)


@with_run_locks  # the run folder is locked from lock_run until train returns
def train(opts: dict, given=(), resume: str | None = None, echo=None, on_checkpoint=None) -> RunResult:
    """Run `nbnets train-charlm` with `opts` (option name -> value); `given` names the
    options the user set explicitly (they must not clash with a resumed run's).
    `on_checkpoint(run_dir)` is called after every checkpoint is written (`nbnets sweep` sends it
    to its client, so a run whose worker dies resumes from there)."""
    on_checkpoint = on_checkpoint or (lambda run_dir: None)
    echo = echo or (lambda s: print(s, flush=True))
    config = None
    if resume is not None:
        run_dir, config, opts = resolve_resume(resume, opts, set(given))
        lock_run(run_dir)  # one process per run folder
    o = validate(opts)
    if config is None and o["corpus"] is not None:
        o["corpus"] = os.path.abspath(o["corpus"])  # so --resume finds it from any working directory
    corpus = load_corpus(o["corpus"], o["encoding"])
    if config is not None:
        _check_corpus(config, corpus, "corpus" in given)
        ckpt_arrays, ckpt_meta = checkpoint.load(run_dir / CHECKPOINT_FILE)
        vocab = Vocabulary(ckpt_meta["vocab"])
    else:
        vocab = None
    data = prepare_data(corpus, o["val_frac"], o["batch_size"], o["seq_len"], vocab)
    device = resolve(o["device"])
    footprint.check(o, len(data.vocab), device)  # before the model: a run too big for the memory is refused
    trainer = Trainer(o, data, device)
    target = planned_steps(o, trainer.windows)
    asked = (f"--epochs {o['epochs']:g} (step {target})" if o["steps"] is None and o["epochs"] is not None
             else f"--steps {target}")
    threads = Threads(o["threads"], clamp=True)
    # config.json records the options as used: the step count and thread count they resolve to
    o["steps"], o["threads"] = target, threads.numba_threads or numba.get_num_threads()

    if config is None:
        run_dir = lock_run(new_run_dir(o["out"], COMMAND))
        config = write_config(
            run_dir, COMMAND, o, device=device, corpus=data.describe(),
            model={**trainer.model.config(), "parameters": trainer.model.num_parameters()},
            steps_planned=target, windows_per_epoch=trainer.windows,
            chars_per_step=trainer.chars_per_step,
        )
        checkpoint.save(run_dir, trainer, 0.0)  # step 0: the folder resumes and samples from its first second
        rows, samples_text, elapsed0 = [], "", 0.0
    else:
        trainer.load_state_dict(ckpt_arrays, ckpt_meta)
        if trainer.step > target:
            raise ValueError(f"--resume {resume}: the run is already at step {trainer.step}, past {asked}; "
                             f"give --steps above {trainer.step} to train on")
        rows = read_metrics(run_dir, METRIC_COLUMNS, "step", trainer.step)
        samples_path = run_dir / "samples.txt"
        samples_text = samples_path.read_text(encoding="utf-8") if samples_path.exists() else ""
        samples_text = _samples_upto(samples_text, trainer.step)
        elapsed0 = float(ckpt_meta.get("elapsed_s", rows[-1]["elapsed_s"] if rows else 0.0))
        if trainer.step < target:  # a resume that trains nothing leaves config.json as it is
            record_resume(run_dir, config, o, given, RESUME_OVERRIDES, RELOCATABLE,
                          {"at_step": trainer.step, "steps": target, "device": device})

    ent = data.unigram_entropy
    echo(f"corpus  {corpus.name}: {len(corpus.text):,} chars, {len(vocab or data.vocab)} symbols, "
         f"unigram entropy {ent:.4f} nats/char ({ent / LN2:.3f} bits)")
    echo(f"model   {_describe_model(trainer)}")
    start = trainer.step
    if start >= target:
        echo(f"run     {run_dir} (at step {start})")
        echo(f"the run is already at step {start} ({asked}): nothing to do")
        return RunResult(run_dir, interrupted=False, step=start)
    echo(f"train   steps {start + 1}..{target} of {o['batch_size']} x {o['seq_len']} chars "
         f"({trainer.windows} steps per epoch), {o['optimizer']} lr {o['lr']:g}, clip {o['clip']:g}")
    echo(f"run     {run_dir}" + (f" (resumed at step {start})" if start else ""))
    with threads:
        return _train_loop(trainer, o, run_dir, rows, samples_text, elapsed0, target, echo, on_checkpoint)


def _check_corpus(config: dict, corpus, given: bool) -> None:
    """ValueError unless the corpus has the SHA-256 config.json records for the run."""
    saved = (config.get("corpus") or {}).get("sha256")
    if saved and saved != corpus.sha256:
        what = (f"--corpus {corpus.name} is not the run's corpus" if given
                else f"the corpus {corpus.name} has changed since the run started")
        raise ValueError(f"--resume: {what} (sha256 {corpus.sha256[:12]}..., the run used {saved[:12]}...)")


def _train_loop(trainer, o, run_dir, rows, samples_text, elapsed0, target, echo, on_checkpoint) -> RunResult:
    start = trainer.step
    ent = trainer.data.unigram_entropy

    def save_samples(step, val, text):
        nonlocal samples_text

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
                    write_metrics(run_dir, rows, METRIC_COLUMNS)
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
                evaluate = step % o["eval_every"] == 0 or final or will_stop
                if evaluate:
                    last_val = trainer.evaluate()
                    row["val_loss"], row["val_bpc"] = last_val, last_val / LN2
                    if last_val < trainer.best_val:
                        trainer.best_val, trainer.best_step = last_val, step
                        checkpoint.save_best(run_dir, trainer, last_val)
                row["elapsed_s"] = elapsed0 + time.perf_counter() - t_start
                rows.append({"step": step, **row})
                done_chars = (step - start) * trainer.chars_per_step
                rate = done_chars / train_seconds if train_seconds > 0 else 0.0
                eta = (target - step) * (time.perf_counter() - t_start) / (step - start)
                bar.update(step, row["train_loss"], rate, eta)
                if evaluate:  # a line per evaluation: what metrics.csv's val_loss column holds
                    bar.message(f"step {step:>{len(str(target))}}  train loss {row['train_loss']:.4f}  "
                                f"val loss {last_val:.4f} nats/char ({last_val / LN2:.3f} bpc)  "
                                f"(unigram entropy {ent:.4f})", echo)
                if o["sample_length"] and (step % o["sample_every"] == 0 or final):
                    save_samples(step, row["val_loss"], trainer.sample(o["sample_length"], o["temperature"]))
                if evaluate:
                    write_metrics(run_dir, rows, METRIC_COLUMNS)
                    checkpoint.save(run_dir, trainer, row["elapsed_s"])
                    last_ckpt = step
                    on_checkpoint(run_dir)
                if will_stop:
                    interrupted, timed_out = stop.requested, not stop.requested
                    break
        finally:
            bar.close()

    if last_ckpt != trainer.step:  # (not reached in practice: every exit path above saves)
        write_metrics(run_dir, rows, METRIC_COLUMNS)
        checkpoint.save(run_dir, trainer, rows[-1]["elapsed_s"])

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
    return RunResult(run_dir, interrupted=interrupted, summary=summary, step=trainer.step)
