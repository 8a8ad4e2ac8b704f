"""train-charlm's options: defaults, ranges, what --resume may change, and the run length.

`validate` is the one place an option's range is checked (click checks types;
this checks what a Python caller or a resumed config.json can also bring).
"""

from __future__ import annotations

import math
from pathlib import Path

from runner.common.runs import latest_target
from runner.common.runs import resolve_resume as resolve_run

COMMAND = "train-charlm"
LN2 = math.log(2.0)

METRIC_COLUMNS = [
    "step", "epoch", "train_loss", "val_loss", "train_bpc", "val_bpc",
    "grad_norm", "clipped", "lr", "chars_per_s", "elapsed_s",
]

CELLS = ("lstm", "gru", "rnn")
ACTIVATIONS = ("tanh", "sigmoid", "relu")
OPTIMIZERS = ("rmsprop", "adagrad", "adam", "sgd")
DEVICES = ("auto", "cpu", "cuda")
INITS = ("uniform", "normal", "orthogonal", "identity")  # numbanets.nn.init.RECURRENT_INITS

# The no-option run: char-rnn's model and optimizer settings, and a step count that
# finishes in about 3 minutes on a 2-core CPU (docs/commands/train-charlm.md gives the measured time).
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
    "dropout": 0.0,
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
# runs.resume_rule turns this list into the refusal's words, and docs/commands/train-charlm.md
# states the same words (tests/test_newcomer_training.py checks they agree).
RESUME_OVERRIDES = ("steps", "epochs", "max_time", "device", "threads", "quiet", "out")
# The file option that may name a moved copy on --resume -> the config.json section with its SHA-256.
RELOCATABLE = {"corpus": "corpus"}


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
    need(0 <= o["dropout"] < 1, f"--dropout must be in [0, 1), got {o['dropout']}")
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
    o["init_scale"] = init_scale(o)  # as used, so config.json records it
    return o


def planned_steps(opts: dict, windows_per_epoch: int) -> int:
    """--steps, else --epochs worth of windows, else DEFAULT_STEPS."""
    if opts.get("steps") is not None:
        return int(opts["steps"])
    if opts.get("epochs") is not None:
        return max(1, int(math.ceil(opts["epochs"] * windows_per_epoch)))
    return DEFAULT_STEPS


def init_scale(opts: dict) -> float:
    """--init-scale, else char-rnn's 0.08 for uniform and numbanets.nn.init.recurrent's own default
    otherwise (normal: 1/sqrt(hidden); orthogonal, identity: 1), the very value it would pick."""
    if opts.get("init_scale") is not None:
        return float(opts["init_scale"])
    if opts["init"] == "uniform":
        return 0.08
    return 1.0 / math.sqrt(opts["hidden"]) if opts["init"] == "normal" else 1.0


def resolve_resume(resume: str, opts: dict, given) -> tuple[Path, dict, dict]:
    """The run folder, its config.json and the options to continue it with (see runner.common.runs).

    The length given now (--steps or --epochs) wins over the run's own; without
    one the run continues up to the length its last session aimed at."""
    run_dir, config, merged = resolve_run(resume, COMMAND, opts, given, DEFAULTS, RESUME_OVERRIDES, RELOCATABLE)
    if "epochs" in given and "steps" not in given:
        merged["steps"] = None
    elif "steps" in given:
        merged["epochs"] = None
    elif latest_target(config, "steps") is not None:
        merged["steps"], merged["epochs"] = latest_target(config, "steps"), None
    return run_dir, config, merged
