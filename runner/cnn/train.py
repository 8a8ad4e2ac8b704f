"""`nbnets train-cnn`: the training run of a small convolutional network on real images.

The network comes from an --arch spec (numbanets.nn.arch: conv, pool,
relu/tanh/sigmoid, fc, dropout), the data from scikit-learn's handwritten
digits (default, no download) or an .npz file (numbanets.data.images), the loss
is softmax cross-entropy over the last layer's outputs.

A run writes `results/train-cnn/<timestamp>-<id>/`:

    config.json              every option as resolved (--data as an absolute path), device, data set
                             (with the file's SHA-256), network, versions
    metrics.csv              one row per epoch (columns: options.METRIC_COLUMNS); epoch 0 = before training
    confusion.csv            test-set confusion matrix, long format: true, predicted, count
    checkpoint.npz + .json   weights, optimizer state, RNG state, epoch: all that exact resume needs (checkpoint.py);
                             written at epoch 0 as the folder is made (so every run folder resumes), then per epoch
    filters.png, activations.png  with the plot extra (plots.py)

Every file is written to a temporary name and renamed, so a failed or stopped
run never leaves half a file over a good one. `--resume RUN_DIR` continues from
the checkpoint in the same folder (up to --epochs) and gives the same numbers
as a run that was never stopped; it finds --data by its absolute path, or takes
`--data` naming a copy with the same SHA-256, and refuses an --epochs below the
run's epoch (config.json untouched).

Device-dependent work stays in the model and numbanets.functional: the trainer
moves each host batch to the device, and brings back the loss (a float) and
the batch's logits (N x classes, a few hundred numbers) to count correct answers.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import click
import numpy as np
import pandas as pd

from numbanets import functional as F
from numbanets.device import resolve, to_host
from numbanets.optim import make_optimizer
from runner.cnn import checkpoint, export_json, footprint
from runner.cnn.model import build_model, check_fit, load_data, move_to
from runner.cnn.options import (
    COMMAND, METRIC_COLUMNS, RELOCATABLE, RESUME_OVERRIDES, resolve_arch, resolve_resume, validate,
)
from runner.cnn.plots import write_plots
from runner.common.runs import Interrupt, lock_run, new_run_dir, write_config, write_csv, with_run_locks
from runner.common.training import CHECKPOINT_FILE, NonFiniteLoss, RunResult, read_metrics, record_resume, write_metrics

EVAL_BATCH = 500  # test images per forward pass in evaluate()


def _correct(logits, y_host) -> tuple[int, np.ndarray]:
    """(number of correct answers, predictions) of a batch: logits (N, K) come back to the host."""
    pred = to_host(logits).argmax(axis=1)
    return int((pred == y_host).sum()), pred


class Trainer:
    """Model, optimizer, data and RNG; `train_epoch()` and `evaluate()` return floats."""

    def __init__(self, o: dict, spec: str, data, device: str = "cpu", dtype=np.float32):
        self.o, self.spec, self.data, self.device = o, spec, data, device
        self.dtype = np.dtype(dtype)
        self.classes = check_fit(spec, data)
        self.model, self.rng = build_model(spec, data.image_shape, o["seed"], self.dtype, device)
        kw = {"weight_decay": o["weight_decay"]}
        if o["optimizer"] == "sgd":
            kw["momentum"] = o["momentum"]
        self.optimizer = make_optimizer(o["optimizer"], self.model, lr=o["lr"], **kw)
        n = data.x_train.shape[0]
        self.steps_per_epoch = -(-n // o["batch_size"])
        self.epoch = 0
        self.step = 0

    def train_epoch(self, on_batch=None) -> dict:
        """One pass over the shuffled training set; mean loss/accuracy of its batches (train mode)."""
        x, y, bs = self.data.x_train, self.data.y_train, self.o["batch_size"]
        order = self.rng.permutation(x.shape[0])
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            xb, yb = x[idx], y[idx]
            self.model.zero_grad()
            logits = self.model.forward(move_to(xb, self.device))
            loss, dlogits = F.softmax_cross_entropy(logits, move_to(yb, self.device))
            if not math.isfinite(loss):
                raise NonFiniteLoss(
                    f"the training loss became {loss} at step {self.step + 1} (epoch {self.epoch + 1}); "
                    f"lower --lr (now {self.optimizer.lr:g})"
                )
            self.model.backward(dlogits)
            self.optimizer.step()
            self.step += 1
            hits, _ = _correct(logits, yb)
            total_loss += loss * len(idx)
            correct += hits
            seen += len(idx)
            if on_batch is not None:
                on_batch(total_loss / seen, correct / seen)
        seconds = time.perf_counter() - t0
        self.epoch += 1
        return {"train_loss": total_loss / seen, "train_acc": correct / seen,
                "images_per_s": seen / seconds if seconds > 0 else math.nan, "seconds": seconds}

    def evaluate(self, x, y) -> tuple[float, float, np.ndarray]:
        """(mean loss, accuracy, host predictions) over x, y in eval mode (dropout off)."""
        self.model.eval()
        total_loss, correct, preds = 0.0, 0, []
        try:
            for start in range(0, x.shape[0], EVAL_BATCH):
                xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
                logits = self.model.forward(move_to(xb, self.device))
                loss, _ = F.softmax_cross_entropy(logits, move_to(yb, self.device))
                hits, pred = _correct(logits, yb)
                total_loss += loss * len(yb)
                correct += hits
                preds.append(pred)
        finally:
            self.model.train()
        n = x.shape[0]
        return total_loss / n, correct / n, np.concatenate(preds)

    # ----------------------------------------------------------------------- checkpoint

    def state_dict(self) -> tuple[dict, dict]:
        """(arrays, meta) for numbanets.checkpoint (checkpoint.py's format)."""
        return checkpoint.training_state(self)

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        """Restore from a checkpoint; ValueError when it does not fit this network."""
        checkpoint.restore(self, arrays, meta)


# --------------------------------------------------------------------------- the run

def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def _write_confusion(run_dir: Path, matrix: np.ndarray) -> None:
    k = matrix.shape[0]
    t, p = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    frame = pd.DataFrame({"true": t.ravel(), "predicted": p.ravel(), "count": matrix.ravel()})
    write_csv(run_dir / "confusion.csv", frame)


def render_confusion(matrix: np.ndarray) -> str:
    """The confusion matrix as aligned text, zeros shown as dots."""
    k = matrix.shape[0]
    width = max(3, len(str(int(matrix.max(initial=0)))) + 1, len(str(k - 1)) + 1)
    head = "true\\pred" + "".join(f"{j:>{width}}" for j in range(k))
    lines = [head]
    for i in range(k):
        row = "".join(f"{int(v):>{width}}" if v else f"{'.':>{width}}" for v in matrix[i])
        lines.append(f"{i:>9}" + row)
    return "\n".join(lines)


class _EpochBar:
    """click.progressbar over one epoch's batches on stderr (only on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.text = ""

    def start(self, epoch: int, epochs: int, steps: int):
        if not self.enabled:
            return
        width = len(str(epochs))
        self.text = ""
        self.bar = click.progressbar(length=steps, label=f"epoch {epoch:>{width}}/{epochs}", file=sys.stderr,
                                     show_eta=True, item_show_func=lambda _: self.text, width=24)
        self.bar.__enter__()

    def update(self, loss: float, acc: float):
        if self.bar is not None:
            self.text = f"loss {loss:.4f}  acc {acc:6.2%}"
            self.bar.update(1)

    def finish(self):
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None


def _describe(trainer: Trainer, label: str) -> str:
    rows_total = trainer.model.num_parameters()
    return (f"{label} {trainer.spec}: {rows_total:,} parameters, {trainer.classes} outputs, "
            f"{trainer.dtype.name} on {trainer.device}")


@with_run_locks  # the run folder is locked from lock_run until train returns
def train(opts: dict, given=(), resume: str | None = None, echo=None, on_checkpoint=None) -> RunResult:
    """Run `nbnets train-cnn` with `opts` (option name -> value); `given` names the options
    the user set explicitly (they must not clash with a resumed run's or an --init-from file's).
    `on_checkpoint(run_dir)` is called after every checkpoint is written (`nbnets sweep` sends it
    to its client, so a run whose worker dies resumes from there)."""
    on_checkpoint = on_checkpoint or (lambda run_dir: None)
    t_command = time.perf_counter()
    echo = echo or (lambda s: print(s, flush=True))
    config = None
    if resume is not None:
        run_dir, config, opts = resolve_resume(resume, opts, set(given))
        lock_run(run_dir)  # one process per run folder
        ckpt_arrays, ckpt_meta = checkpoint.load(run_dir / CHECKPOINT_FILE)
    o = validate(opts)
    if config is None and o["data"] is not None:
        o["data"] = os.path.abspath(o["data"])  # so --resume finds it from any working directory
    snapshot = None
    if config is not None:
        spec, label = ckpt_meta["arch"], config.get("network", {}).get("label", "custom")
    elif o["init_from"] is not None:
        snapshot = export_json.read(o["init_from"])
        spec, label = snapshot.arch, "from " + Path(o["init_from"]).name
        if "arch" in given:
            wanted, _ = resolve_arch(o["arch"])
            if wanted != spec:
                raise ValueError(f"--arch {o['arch']!r} differs from the network in --init-from "
                                 f"{o['init_from']} ({spec!r}); drop --arch")
        o["arch"] = spec
    else:
        spec, label = resolve_arch(o["arch"])

    data = load_data(o)
    if config is not None:
        saved_hash = config.get("data", {}).get("sha256")
        if saved_hash and saved_hash != data.info.get("sha256"):
            what = "is not the run's data" if "data" in given else "has changed since the run started"
            raise ValueError(f"--resume: the data file {o['data']} {what} (sha256 "
                             f"{str(data.info.get('sha256'))[:12]}..., the run used {saved_hash[:12]}...)")
    if snapshot is not None and tuple(snapshot.input_shape) != data.image_shape:
        raise ValueError(
            f"--init-from {o['init_from']}: the network takes {'x'.join(map(str, snapshot.input_shape))} "
            f"images, the data has {'x'.join(map(str, data.image_shape))}"
        )
    device = resolve(o["device"])
    footprint.check(o, spec, data.image_shape, device, EVAL_BATCH)  # a run too big for the memory is refused
    trainer = Trainer(o, spec, data, device)
    if snapshot is not None:
        export_json.load_into(trainer.model, snapshot, source=o["init_from"])

    target = o["epochs"]
    if config is None:
        run_dir = lock_run(new_run_dir(o["out"], COMMAND))
        config = write_config(
            run_dir, COMMAND, o, device=device, data=data.describe(),
            network={"arch": spec, "label": label, "input_shape": list(data.image_shape),
                     "classes": trainer.classes, "parameters": trainer.model.num_parameters(),
                     "dtype": trainer.dtype.name},
            steps_per_epoch=trainer.steps_per_epoch,
        )
        checkpoint.save(run_dir, trainer, 0.0)  # epoch 0: the folder resumes from its first second
        rows, elapsed0 = [], 0.0
    else:
        trainer.load_state_dict(ckpt_arrays, ckpt_meta)
        if trainer.epoch > target:
            raise ValueError(f"--resume {resume}: the run is already at epoch {trainer.epoch}, past --epochs "
                             f"{target}; give --epochs above {trainer.epoch} to train on")
        rows = read_metrics(run_dir, METRIC_COLUMNS, "epoch", trainer.epoch)
        elapsed0 = float(ckpt_meta.get("elapsed_s", rows[-1]["elapsed_s"] if rows else 0.0))
        if trainer.epoch < target:  # a resume that trains nothing leaves config.json as it is
            record_resume(run_dir, config, o, given, RESUME_OVERRIDES, RELOCATABLE,
                          {"at_epoch": trainer.epoch, "epochs": target, "device": device})

    d = data
    echo(f"data    {d.name}: {d.x_train.shape[0]:,} train / {d.x_test.shape[0]:,} test images of "
         f"{'x'.join(map(str, d.image_shape))}, {d.classes} classes ({d.info.get('split', '')} split)")
    echo(f"model   {_describe(trainer, label)}")
    extra = f" momentum {o['momentum']:g}" if o["optimizer"] == "sgd" else ""
    wd = f" weight decay {o['weight_decay']:g}" if o["weight_decay"] else ""
    epochs = (f"epochs {trainer.epoch + 1}..{target} of {trainer.steps_per_epoch} steps" if target > trainer.epoch
              else "no epoch to train")
    echo(f"train   {epochs} (batch {o['batch_size']}), "
         f"{o['optimizer']} lr {o['lr']:g}{extra}{wd}, seed {o['seed']}")
    echo(f"run     {run_dir}" + (f" (resumed at epoch {trainer.epoch})" if trainer.epoch else ""))

    t_start = time.perf_counter()
    if not rows:  # epoch 0: the untrained (or --init-from) network on the test set
        test_loss, test_acc, _ = trainer.evaluate(d.x_test, d.y_test)
        rows.append({"epoch": 0, "step": 0, "train_loss": math.nan, "train_acc": math.nan,
                     "test_loss": test_loss, "test_acc": test_acc, "images_per_s": math.nan,
                     "elapsed_s": time.perf_counter() - t_start})
        write_metrics(run_dir, rows, METRIC_COLUMNS)
        checkpoint.save(run_dir, trainer, rows[-1]["elapsed_s"])
        on_checkpoint(run_dir)
    if trainer.epoch >= target and trainer.epoch > 0:
        echo(f"the run is already at epoch {trainer.epoch} (--epochs {target}): nothing to train")

    bar = _EpochBar(not o["quiet"])
    train_seconds, trained_images = 0.0, 0
    interrupted = False
    width = len(str(target))
    with Interrupt() as stop:
        while trainer.epoch < target and not stop.requested:
            bar.start(trainer.epoch + 1, target, trainer.steps_per_epoch)
            try:
                row = trainer.train_epoch(on_batch=bar.update)
            except NonFiniteLoss as exc:
                bar.finish()
                raise NonFiniteLoss(f"{exc}; the last good checkpoint (epoch {trainer.epoch}) is kept in "
                                    f"{run_dir}") from None
            finally:
                bar.finish()
            train_seconds += row.pop("seconds")
            trained_images += d.x_train.shape[0]
            row["test_loss"], row["test_acc"], _ = trainer.evaluate(d.x_test, d.y_test)
            row.update(epoch=trainer.epoch, step=trainer.step, elapsed_s=elapsed0 + time.perf_counter() - t_start)
            rows.append(row)
            write_metrics(run_dir, rows, METRIC_COLUMNS)
            checkpoint.save(run_dir, trainer, row["elapsed_s"])
            on_checkpoint(run_dir)
            echo(f"epoch {trainer.epoch:>{width}}/{target}  train loss {row['train_loss']:.4f} acc "
                 f"{row['train_acc']:6.2%}  test loss {row['test_loss']:.4f} acc {row['test_acc']:6.2%}  "
                 f"{row['images_per_s']:,.0f} img/s  {row['elapsed_s']:.1f} s")
        interrupted = stop.requested and trainer.epoch < target

    test_loss, test_acc, pred = trainer.evaluate(d.x_test, d.y_test)
    matrix = confusion(d.y_test, pred, trainer.classes)
    _write_confusion(run_dir, matrix)
    notes = []
    if o["plot"]:
        notes = write_plots(run_dir, trainer)
    summary = {
        "run": str(run_dir),
        "epochs": f"{trainer.epoch} ({trainer.step:,} steps)",
        "train time": (f"{train_seconds:.1f} s in training steps this session "
                       f"({trained_images / train_seconds:,.0f} images/s)" if train_seconds > 0
                       else "none this session (no epoch to train)"),
        "test loss": f"{test_loss:.4f}",
        "test accuracy": f"{test_acc:.2%} ({int(round(test_acc * len(d.y_test)))}/{len(d.y_test)})",
        "wall time": f"{time.perf_counter() - t_command:.1f} s (data loading, compilation, evaluation and plots included)",
    }
    echo("\nconfusion matrix (test set; rows: true class, columns: predicted):")
    echo(render_confusion(matrix))
    for note in notes:
        echo(note)
    key_width = max(map(len, summary))
    echo("\n".join(f"{k:<{key_width}}  {v}" for k, v in summary.items()))
    if interrupted:
        echo(f"interrupted after epoch {trainer.epoch}; checkpoint saved. Continue with:\n"
             f"  nbnets train-cnn --resume {run_dir} --epochs {target}")
    return RunResult(run_dir, interrupted=interrupted, summary=summary, epoch=trainer.epoch, test_acc=test_acc)
