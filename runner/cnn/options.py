"""train-cnn's options: defaults, ranges, what --resume may change, and the network's spec."""

from __future__ import annotations

import math
from pathlib import Path

from numbanets.nn import arch
from runner.common.runs import latest_target
from runner.common.runs import resolve_resume as resolve_run

COMMAND = "train-cnn"

METRIC_COLUMNS = ["epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "elapsed_s"]

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")
DEVICES = ("auto", "cpu", "cuda")

# The no-option run: >= 97% test accuracy on digits in well under a minute on 2 CPU cores
# (docs/commands/train-cnn.md gives the measured numbers).
DEFAULT_ARCH = "digits"
DEFAULT_EPOCHS = 12
DEFAULT_BATCH_SIZE = 32
DEFAULT_LR = {"adam": 2e-3, "sgd": 0.05, "rmsprop": 1e-3, "adagrad": 0.02}

DEFAULTS = {
    "arch": DEFAULT_ARCH,
    "data": None,
    "test_fraction": 0.2,
    "epochs": DEFAULT_EPOCHS,
    "batch_size": DEFAULT_BATCH_SIZE,
    "optimizer": "adam",
    "lr": None,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "seed": 0,
    "device": "auto",
    "out": "results",
    "init_from": None,
    "plot": True,
    "quiet": False,
}

# Options that --resume lets you change; every other one comes from the run's config.json.
# runs.resume_rule turns this list into the refusal's words, and docs/commands/train-cnn.md
# states the same words (tests/test_newcomer_training.py checks they agree).
RESUME_OVERRIDES = ("epochs", "device", "plot", "quiet", "out")
# The file option that may name a moved copy on --resume -> the config.json section with its SHA-256.
RELOCATABLE = {"data": "data"}


# --------------------------------------------------------------------------- options

def validate(opts: dict) -> dict:
    """Check every option's range; ValueError naming the option. Returns a full, resolved copy."""
    o = {**DEFAULTS, **{k: v for k, v in opts.items() if k in DEFAULTS}}

    def need(cond, msg):
        if not cond:
            raise ValueError(msg)

    need(o["optimizer"] in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {o['optimizer']!r}")
    if o["lr"] is None:
        o["lr"] = DEFAULT_LR[o["optimizer"]]
    need(math.isfinite(o["lr"]) and o["lr"] > 0, f"--lr must be > 0, got {o['lr']}")
    need(isinstance(o["epochs"], int) and o["epochs"] >= 0, f"--epochs must be an integer >= 0, got {o['epochs']!r}")
    need(isinstance(o["batch_size"], int) and o["batch_size"] >= 1,
         f"--batch-size must be an integer >= 1, got {o['batch_size']!r}")
    need(0 <= o["momentum"] < 1, f"--momentum must be in [0, 1), got {o['momentum']}")
    need(math.isfinite(o["weight_decay"]) and o["weight_decay"] >= 0, f"--weight-decay must be >= 0, got {o['weight_decay']}")
    need(0 < o["test_fraction"] < 1, f"--test-fraction must be in (0, 1), got {o['test_fraction']}")
    need(o["device"] in DEVICES, f"--device must be one of {', '.join(DEVICES)}, got {o['device']!r}")
    return o


def resolve_arch(text: str) -> tuple[str, str]:
    """(spec, label): a built-in name (numbanets.nn.arch.BUILTIN) or a spec string, parsed to check it."""
    if text in arch.BUILTIN:
        spec, label = arch.BUILTIN[text][0], text
    else:
        spec, label = text, "custom"
    arch.parse(spec)
    return spec, label


def resolve_resume(resume: str, opts: dict, given) -> tuple[Path, dict, dict]:
    """The run folder, its config.json and the options to continue it with (see runner.common.runs).

    Without --epochs the run continues up to the epoch its last session aimed at."""
    run_dir, config, merged = resolve_run(resume, COMMAND, opts, given, DEFAULTS, RESUME_OVERRIDES, RELOCATABLE)
    if "epochs" not in given and latest_target(config, "epochs") is not None:
        merged["epochs"] = latest_target(config, "epochs")
    return run_dir, config, merged
