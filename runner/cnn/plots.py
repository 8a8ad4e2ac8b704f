"""train-cnn's figures: what the network learned and what it sees.

    filters.png       the first conv layer's filters, one tile per feature map (RGB for 3 input channels)
    activations.png   the feature maps of a few test images, layer by layer

matplotlib is the optional plot extra: without it the run writes no figure and
says how to get them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from numbanets import functional as F
from numbanets.device import to_host
from runner.cnn.model import move_to
from runner.common.plots import PLOT_HINT, pyplot, save_png


def write_plots(run_dir: Path, trainer) -> list[str]:
    """filters.png and activations.png; returns notes for the user (why a plot is missing)."""
    plt = pyplot()
    if plt is None:
        return [f"filters.png and activations.png not written: matplotlib is not installed "
                f"(get the plots with {PLOT_HINT})"]
    notes = []
    first_conv = next(((l, m) for l, m in trainer.model.arch_layers if l.kind == "conv"), None)
    if first_conv is None:
        notes.append("filters.png not written: the network has no conv layer")
    else:
        save_png(plt, _filters_figure(plt, *first_conv, trainer.epoch), run_dir / "filters.png")
    save_png(plt, _activations_figure(plt, trainer), run_dir / "activations.png")
    return notes


def _filters_figure(plt, layer, module, epoch):
    """One tile per feature map of the first conv layer, on one shared colour scale
    (or as RGB, each filter stretched to 0..1, for 3 input channels)."""
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
        h = move_to(x, trainer.device)
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
