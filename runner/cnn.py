"""`nbnets train-cnn`: a small convolutional network trained on real images.

The network comes from an --arch spec (numbanets.nn.arch: conv, pool,
relu/tanh/sigmoid, fc, dropout), the data from scikit-learn's handwritten
digits (default, no download) or an .npz file (numbanets.data.images), the loss
is softmax cross-entropy over the last layer's outputs.

A run writes `results/train-cnn/<timestamp>-<id>/`:

    config.json              every option as resolved, device, data set, network, versions
    metrics.csv              one row per epoch (columns: METRIC_COLUMNS); epoch 0 = before training
    confusion.csv            test-set confusion matrix, long format: true, predicted, count
    checkpoint.npz + .json   weights, optimizer state, RNG state, epoch: all that exact resume needs
    filters.png              first-layer filters            (with the plot extra: matplotlib)
    activations.png          feature maps of a few test images, layer by layer

Every file is written to a temporary name and renamed, so a failed or stopped
run never leaves half a file over a good one. `--resume RUN_DIR` continues from
the checkpoint in the same folder (up to --epochs) and gives the same numbers
as a run that was never stopped.

Device-dependent work stays in the model and numbanets.functional: the trainer
moves each host batch to the device, and brings back the loss (a float) and
the batch's logits (N x classes, a few hundred numbers) to count correct answers.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from runner.runs import Interrupt, save_figure

COMMAND = "train-cnn"
CHECKPOINT_KIND = "numbanets-cnn"
PLOT_HINT = "pip install -e '.[plot]'"

METRIC_COLUMNS = ["epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "images_per_s", "elapsed_s"]

OPTIMIZERS = ("adam", "sgd", "rmsprop", "adagrad")
DEVICES = ("auto", "cpu", "cuda")

# The no-option run (measured in the README): >= 97% test accuracy on digits in well under 60 s on 2 CPU cores.
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
RESUME_OVERRIDES = ("epochs", "device", "out", "plot", "quiet")

EVAL_BATCH = 500


class NonFiniteLoss(ValueError):
    """The training loss became NaN or infinite."""


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
    from numbanets.nn import arch

    if text in arch.BUILTIN:
        spec, label = arch.BUILTIN[text][0], text
    else:
        spec, label = text, "custom"
    arch.parse(spec)
    return spec, label


# --------------------------------------------------------------------------- data and network

def load_data(o: dict, dtype=np.float32):
    from numbanets.data import images

    if o["data"] is None:
        return images.load_digits(o["test_fraction"], split_seed=0, dtype=dtype)
    return images.load_npz(o["data"], o["test_fraction"], split_seed=0, dtype=dtype)


def check_fit(spec: str, data) -> int:
    """The number of outputs K of the network on data's images; ValueError unless the
    network ends in a flat layer (fcK) whose K covers every label."""
    from numbanets.nn import arch

    layers = arch.parse(spec)
    rows = arch.plan(layers, data.image_shape)  # names the layer whose output would be empty
    out = rows[-1].out_shape
    if len(out) != 1:
        raise ValueError(
            f"--arch must end in a fully connected layer fcK (K = number of classes, {data.classes} here): "
            f"its last layer {rows[-1].token!r} outputs {'x'.join(map(str, out))} on {data.name}'s "
            f"{'x'.join(map(str, data.image_shape))} images"
        )
    k = out[0]
    top = int(max(data.y_train.max(initial=0), data.y_test.max(initial=0)))
    if top >= k:
        raise ValueError(
            f"labels must lie in 0..{k - 1} for a network with {k} outputs (last layer {rows[-1].token!r}), "
            f"but {data.name} has label {top}; end the --arch with fc{top + 1}"
        )
    return k


def build_model(spec: str, input_shape, seed: int, dtype=np.float32, device: str = "cpu"):
    """(model, rng): the network of `spec`, initialised from default_rng(seed), on `device`.

    The same generator then shuffles the batches and draws the dropout masks, so
    its state (saved in every checkpoint) is all the randomness of a run.
    """
    from numbanets.nn import arch

    rng = np.random.default_rng(seed)
    model = arch.build(arch.parse(spec), tuple(input_shape), rng, dtype)
    if device != "cpu":
        model.to(device)
    return model, rng


def _to_device(a, device):
    from numbanets.device import to_device

    return to_device(a) if device == "cuda" else a


def _correct(logits, y_host) -> tuple[int, np.ndarray]:
    """(number of correct answers, predictions) of a batch: logits (N, K) come back to the host."""
    from numbanets.device import to_host

    pred = to_host(logits).argmax(axis=1)
    return int((pred == y_host).sum()), pred


class Trainer:
    """Model, optimizer, data and RNG; `train_epoch()` and `evaluate()` return floats."""

    def __init__(self, o: dict, spec: str, data, device: str = "cpu", dtype=np.float32):
        from numbanets.optim import make_optimizer

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
        from numbanets import functional as F

        x, y, bs = self.data.x_train, self.data.y_train, self.o["batch_size"]
        order = self.rng.permutation(x.shape[0])
        self.model.train()
        total_loss, correct, seen = 0.0, 0, 0
        t0 = time.perf_counter()
        for start in range(0, len(order), bs):
            idx = order[start:start + bs]
            xb, yb = x[idx], y[idx]
            self.model.zero_grad()
            logits = self.model.forward(_to_device(xb, self.device))
            loss, dlogits = F.softmax_cross_entropy(logits, _to_device(yb, self.device))
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
        from numbanets import functional as F

        self.model.eval()
        total_loss, correct, preds = 0.0, 0, []
        try:
            for start in range(0, x.shape[0], EVAL_BATCH):
                xb, yb = x[start:start + EVAL_BATCH], y[start:start + EVAL_BATCH]
                logits = self.model.forward(_to_device(xb, self.device))
                loss, _ = F.softmax_cross_entropy(logits, _to_device(yb, self.device))
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
        arrays = {f"param/{k}": v for k, v in self.model.state_dict().items()}
        arrays.update({f"optim/{k}": v for k, v in self.optimizer.state_dict().items()})
        meta = {
            "kind": CHECKPOINT_KIND,
            "epoch": self.epoch,
            "step": self.step,
            "arch": self.spec,
            "input_shape": list(self.data.image_shape),
            "classes": self.classes,
            "dtype": self.dtype.name,
            "data": self.data.name,
            "normalisation": {"mean": self.data.mean, "std": self.data.std},
            "optimizer": self.o["optimizer"],
            "rng": {"seed": self.o["seed"], "bit_generator": self.rng.bit_generator.state,
                    "use": "numpy default_rng(seed): initial weights, then batch order and dropout masks"},
        }
        return arrays, meta

    def load_state_dict(self, arrays: dict, meta: dict) -> None:
        params = {k[len("param/"):]: v for k, v in arrays.items() if k.startswith("param/")}
        optim = {k[len("optim/"):]: v for k, v in arrays.items() if k.startswith("optim/")}
        try:
            self.model.load_state_dict(params)
            self.optimizer.load_state_dict(optim)
            self.rng.bit_generator.state = meta["rng"]["bit_generator"]
            self.epoch = int(meta["epoch"])
            self.step = int(meta["step"])
        except KeyError as exc:
            raise ValueError(f"the checkpoint lacks {exc.args[0]!r}: not a complete train-cnn checkpoint") from None


# --------------------------------------------------------------------------- run folder

@dataclass
class RunResult:
    run_dir: Path
    epoch: int
    test_acc: float
    interrupted: bool = False
    summary: dict = field(default_factory=dict)


def _write_metrics(run_dir: Path, rows: list[dict]) -> None:
    import pandas as pd

    from runner.runs import write_csv

    write_csv(run_dir / "metrics.csv", pd.DataFrame(rows, columns=METRIC_COLUMNS), float_format="%.9g")


def _read_metrics(run_dir: Path, upto_epoch: int) -> list[dict]:
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
    return frame[frame["epoch"] <= upto_epoch][METRIC_COLUMNS].to_dict("records")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, classes: int) -> np.ndarray:
    """(classes, classes) counts: row = true class, column = predicted class."""
    m = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(m, (y_true, y_pred), 1)
    return m


def _write_confusion(run_dir: Path, matrix: np.ndarray) -> None:
    import pandas as pd

    from runner.runs import write_csv

    k = matrix.shape[0]
    t, p = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    frame = pd.DataFrame({"true": t.ravel(), "predicted": p.ravel(), "count": matrix.ravel()})
    write_csv(run_dir / "confusion.csv", frame)


def render_confusion(matrix: np.ndarray) -> str:
    k = matrix.shape[0]
    width = max(3, len(str(int(matrix.max(initial=0)))) + 1, len(str(k - 1)) + 1)
    head = "true\\pred" + "".join(f"{j:>{width}}" for j in range(k))
    lines = [head]
    for i in range(k):
        row = "".join(f"{int(v):>{width}}" if v else f"{'.':>{width}}" for v in matrix[i])
        lines.append(f"{i:>9}" + row)
    return "\n".join(lines)


def _save_checkpoint(trainer: Trainer, run_dir: Path, elapsed: float) -> None:
    from numbanets import checkpoint

    arrays, meta = trainer.state_dict()
    meta["elapsed_s"] = elapsed
    checkpoint.save(run_dir / "checkpoint.npz", arrays, meta)


def load_checkpoint(path) -> tuple[dict, dict]:
    """(arrays, meta) of a train-cnn checkpoint; ValueError for a corrupt or foreign file."""
    from numbanets import checkpoint

    arrays, meta = checkpoint.load(path)
    if meta.get("kind") != CHECKPOINT_KIND:
        raise ValueError(f"{path} is not a train-cnn checkpoint (kind {meta.get('kind')!r})")
    for key in ("arch", "input_shape", "epoch", "step", "rng"):
        if key not in meta:
            raise ValueError(f"{path} is not a complete train-cnn checkpoint (no {key!r})")
    return arrays, meta


def _resolve_resume(resume: str, opts: dict, given) -> tuple[Path, dict, dict]:
    from runner.runs import resolve_resume

    return resolve_resume(resume, COMMAND, opts, given, DEFAULTS, RESUME_OVERRIDES)


class _EpochBar:
    """click.progressbar over one epoch's batches on stderr (only on a terminal)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled and sys.stderr.isatty()
        self.bar = None
        self.text = ""

    def start(self, epoch: int, epochs: int, steps: int):
        if not self.enabled:
            return
        import click

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


# --------------------------------------------------------------------------- plots

def write_plots(run_dir: Path, trainer: "Trainer") -> list[str]:
    """filters.png and activations.png; returns notes for the user (why a plot is missing)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return [f"filters.png and activations.png not written: matplotlib is not installed "
                f"(get the plots with {PLOT_HINT})"]
    notes = []
    first_conv = next(((l, m) for l, m in trainer.model.arch_layers if l.kind == "conv"), None)
    if first_conv is None:
        notes.append("filters.png not written: the network has no conv layer")
    else:
        save_figure(plt, _filters_figure(plt, *first_conv, trainer.epoch), run_dir / "filters.png")
    save_figure(plt, _activations_figure(plt, trainer), run_dir / "activations.png")
    return notes


def _filters_figure(plt, layer, module, epoch):
    """One tile per feature map of the first conv layer, on one shared colour scale
    (or as RGB, each filter stretched to 0..1, for 3 input channels)."""
    from numbanets.device import to_host

    w = to_host(module.params["w"]).astype(np.float64)  # (F, C/g, KH, KW)
    f, cg = w.shape[:2]
    rgb = cg == 3
    channels = 1 if rgb else min(cg, 8)
    cols = min(8, f)
    rows_per_channel = -(-f // cols)
    rows = rows_per_channel * channels
    fig, axes = plt.subplots(rows, cols, figsize=(max(1.25 * cols + 1.2, 7.5), 1.25 * rows + 0.9), squeeze=False)
    vmax = float(np.abs(w).max()) or 1.0
    image = None
    for ch in range(channels):
        for k in range(rows_per_channel * cols):
            ax = axes[ch * rows_per_channel + k // cols][k % cols]
            ax.set_xticks([])
            ax.set_yticks([])
            if k >= f:
                ax.axis("off")
                continue
            if rgb:
                tile = w[k].transpose(1, 2, 0)
                lo, hi = tile.min(), tile.max()
                ax.imshow((tile - lo) / (hi - lo or 1.0), interpolation="nearest")
            else:
                image = ax.imshow(w[k, ch], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
            label = f"map {k}" + (f", in {ch}" if channels > 1 else "")
            ax.set_title(label, fontsize=8, pad=2)
    more = f" (first {channels} of {cg} input channels)" if cg > channels and not rgb else ""
    fig.suptitle(f"first-layer filters: {layer.token}, {f} maps of {cg}x{w.shape[2]}x{w.shape[3]}, "
                 f"after epoch {epoch}{more}", fontsize=10)
    if image is not None:
        fig.subplots_adjust(right=0.86, top=1 - 0.55 / (1.25 * rows + 0.9), hspace=0.35)
        cax = fig.add_axes([0.89, 0.15, 0.02, 0.7])
        fig.colorbar(image, cax=cax).set_label("weight (red +, blue -)", fontsize=8)
    return fig


def _shown_layers(trainer):
    """[(label, module)]: the input of every block of conv/pool/fc plus the activations after it."""
    pairs = trainer.model.arch_layers
    shown, tokens = [], []
    for i, (layer, module) in enumerate(pairs):
        tokens.append(layer.token)
        last = i + 1 == len(pairs) or pairs[i + 1][0].kind not in ("act", "dropout")
        if last:
            shown.append(("-".join(tokens), module))
            tokens = []
    return shown


def _activations_figure(plt, trainer, n_images: int = 3, max_maps: int = 8):
    """For a few test images (different classes): the image, then up to `max_maps` feature maps
    of every layer block (each map on its own scale, as ConvNetJS shows them), then the class
    probabilities."""
    from numbanets import functional as F
    from numbanets.device import to_host

    d = trainer.data
    picks, seen = [], set()
    for i, label in enumerate(d.y_test):
        if int(label) not in seen:
            picks.append(i)
            seen.add(int(label))
        if len(picks) == n_images:
            break
    x = d.x_test[picks]
    outputs = {}
    trainer.model.eval()
    try:
        h = _to_device(x, trainer.device)
        for child in trainer.model:
            h = child.forward(h)
            outputs[id(child)] = to_host(h)
        probs = to_host(F.softmax(h))
    finally:
        trainer.model.train()
    shown = [(label, outputs[id(m)]) for label, m in _shown_layers(trainer)]
    spatial = [(label, a) for label, a in shown if a.ndim == 4]
    rows = 1 + len(spatial) + 1
    fig = plt.figure(figsize=(2.0 + 5.6 * len(picks), 0.95 * rows + 0.8))
    head, body = fig.subfigures(2, 1, height_ratios=[0.45, 0.95 * rows])
    head.suptitle(f"feature maps after epoch {trainer.epoch}: {len(picks)} test images, the first {max_maps} maps "
                  f"of each layer (each map on its own colour scale), class probabilities (green: true class)",
                  fontsize=10, y=0.5, va="center")
    subfigs = np.atleast_1d(body.subfigures(1, len(picks), wspace=0.0))
    cmap = plt.get_cmap("viridis").with_extremes(bad="white")
    for s, (sub, idx) in enumerate(zip(subfigs, picks)):
        axes = sub.subplots(rows, 1, squeeze=False)[:, 0]
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
        img = x[s]
        axes[0].imshow(img[0] if img.shape[0] != 3 else _rgb(img), cmap="gray_r", interpolation="nearest")
        axes[0].set_anchor("W")
        axes[0].set_ylabel(f"input\n{'x'.join(map(str, img.shape))}", fontsize=7, rotation=0, ha="right",
                           va="center")
        for r, (label, a) in enumerate(spatial, start=1):
            maps = a[s]
            axes[r].imshow(_mosaic(maps[:max_maps]), cmap=cmap, interpolation="nearest", vmin=0, vmax=1)
            axes[r].set_anchor("W")
            shape = "x".join(map(str, maps.shape))
            text = "\n".join(label.split("-")) + f"\n{shape}"
            axes[r].set_ylabel(text, fontsize=7, rotation=0, ha="right", va="center")
        bar_ax = axes[-1]
        p = probs[s]
        true = int(d.y_test[idx])
        bar_ax.bar(np.arange(len(p)), p, color=["tab:green" if k == true else "tab:gray" for k in range(len(p))])
        bar_ax.set_ylim(0, 1)
        bar_ax.set_xticks(np.arange(len(p)))
        bar_ax.set_yticks([0, 0.5, 1])
        bar_ax.tick_params(labelsize=7)
        bar_ax.spines["bottom"].set_visible(True)
        bar_ax.spines["left"].set_visible(True)
        bar_ax.set_ylabel("P(class)", fontsize=7)
        pred = int(np.argmax(p))
        sub.suptitle(f"test image {idx}: true {true}, predicted {pred} ({p[pred]:.0%})", fontsize=9,
                     color="black" if pred == true else "tab:red")
        sub.subplots_adjust(left=0.2, right=0.98, top=0.9, bottom=0.07, hspace=0.3)
    return fig


def _mosaic(maps: np.ndarray) -> np.ndarray:
    """(k, h, w) maps side by side, each stretched to 0..1, with NaN (white) gaps between them."""
    k, h, w = maps.shape
    gap = max(1, w // 4)
    out = np.full((h, k * w + (k - 1) * gap), np.nan)
    for i, m in enumerate(maps.astype(np.float64)):
        lo, hi = m.min(), m.max()
        out[:, i * (w + gap):i * (w + gap) + w] = (m - lo) / (hi - lo) if hi > lo else 0.0
    return out


def _rgb(img):
    t = img.transpose(1, 2, 0)
    lo, hi = t.min(), t.max()
    return (t - lo) / (hi - lo or 1.0)


def train(opts: dict, given=(), resume: str | None = None, echo=None) -> RunResult:
    """Run `nbnets train-cnn` with `opts` (option name -> value); `given` names the options
    the user set explicitly (they must not clash with a resumed run's or an --init-from file's)."""
    from numbanets.device import resolve
    from runner.runs import new_run_dir, write_config, write_json

    t_command = time.perf_counter()
    echo = echo or (lambda s: print(s, flush=True))
    config = None
    if resume is not None:
        run_dir, config, opts = _resolve_resume(resume, opts, set(given))
        ckpt_arrays, ckpt_meta = load_checkpoint(run_dir / "checkpoint.npz")
    o = validate(opts)
    snapshot = None
    if config is not None:
        spec, label = ckpt_meta["arch"], config.get("network", {}).get("label", "custom")
    elif o["init_from"] is not None:
        from runner import cnn_json

        snapshot = cnn_json.read(o["init_from"])
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
            raise ValueError(f"--resume: the data file {o['data']} has changed since the run started")
    if snapshot is not None and tuple(snapshot.input_shape) != data.image_shape:
        raise ValueError(
            f"--init-from {o['init_from']}: the network takes {'x'.join(map(str, snapshot.input_shape))} "
            f"images, the data has {'x'.join(map(str, data.image_shape))}"
        )
    device = resolve(o["device"])
    trainer = Trainer(o, spec, data, device)
    if snapshot is not None:
        from runner import cnn_json

        cnn_json.load_into(trainer.model, snapshot, source=o["init_from"])

    target = o["epochs"]
    if config is None:
        run_dir = new_run_dir(o["out"], COMMAND)
        config = write_config(
            run_dir, COMMAND, o, device=device, data=data.describe(),
            network={"arch": spec, "label": label, "input_shape": list(data.image_shape),
                     "classes": trainer.classes, "parameters": trainer.model.num_parameters(),
                     "dtype": trainer.dtype.name},
            steps_per_epoch=trainer.steps_per_epoch,
        )
        rows, elapsed0 = [], 0.0
    else:
        trainer.load_state_dict(ckpt_arrays, ckpt_meta)
        rows = _read_metrics(run_dir, trainer.epoch)
        elapsed0 = float(ckpt_meta.get("elapsed_s", rows[-1]["elapsed_s"] if rows else 0.0))
        config.setdefault("resumed", []).append(
            {"at_epoch": trainer.epoch, "epochs": target, "device": device,
             "options_changed": {k: o[k] for k in given if k in RESUME_OVERRIDES}})
        write_json(run_dir / "config.json", config)

    d = data
    echo(f"data    {d.name}: {d.x_train.shape[0]:,} train / {d.x_test.shape[0]:,} test images of "
         f"{'x'.join(map(str, d.image_shape))}, {d.classes} classes ({d.info.get('split', '')} split)")
    echo(f"model   {_describe(trainer, label)}")
    extra = f" momentum {o['momentum']:g}" if o["optimizer"] == "sgd" else ""
    wd = f" weight decay {o['weight_decay']:g}" if o["weight_decay"] else ""
    echo(f"train   epochs {trainer.epoch + 1}..{target} of {trainer.steps_per_epoch} steps (batch {o['batch_size']}), "
         f"{o['optimizer']} lr {o['lr']:g}{extra}{wd}, seed {o['seed']}")
    echo(f"run     {run_dir}" + (f" (resumed at epoch {trainer.epoch})" if trainer.epoch else ""))

    t_start = time.perf_counter()
    if not rows:  # epoch 0: the untrained (or --init-from) network on the test set
        test_loss, test_acc, _ = trainer.evaluate(d.x_test, d.y_test)
        rows.append({"epoch": 0, "step": 0, "train_loss": math.nan, "train_acc": math.nan,
                     "test_loss": test_loss, "test_acc": test_acc, "images_per_s": math.nan,
                     "elapsed_s": time.perf_counter() - t_start})
        _write_metrics(run_dir, rows)
        _save_checkpoint(trainer, run_dir, rows[-1]["elapsed_s"])
    if trainer.epoch >= target and trainer.epoch > 0:
        echo(f"the run is already at epoch {trainer.epoch} >= --epochs {target}: nothing to train")

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
            _write_metrics(run_dir, rows)
            _save_checkpoint(trainer, run_dir, row["elapsed_s"])
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
    elapsed = rows[-1]["elapsed_s"]
    summary = {
        "run": str(run_dir),
        "epochs": f"{trainer.epoch} ({trainer.step:,} steps)",
        "train": (f"{train_seconds:.1f} s this session ({trained_images / train_seconds:,.0f} images/s); "
                  f"{elapsed:.1f} s in the run's epochs" if train_seconds > 0 else f"{elapsed:.1f} s in the run's epochs"),
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
    return RunResult(run_dir, trainer.epoch, test_acc, interrupted, summary)
