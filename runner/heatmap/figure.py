"""heatmaps.png: one column per image; the image on top, then its overlay for each method.

Every map is shown on one shared scale, its share of its own largest value (0..1; occlusion's negative
drops, where hiding the pixels made the class more likely, are shown as 0), over the image in grey: the
colours are the more opaque the larger the value, and a black line outlines the strokes (the half-ink
level). One colour bar serves the whole figure. Every panel's title gives the true and the predicted class with its
probability (and the class explained, when --target asks for another one).
"""

from __future__ import annotations

import numpy as np

from runner.common.plots import save_png

CMAP = "jet"
ALPHA = 0.75      # opacity of the colours where a map is at its largest
ALPHA_LOW = 0.25  # ... and where it is 0


def _scaled(m: np.ndarray) -> np.ndarray:
    top = float(np.max(m))
    return np.clip(m / top, 0.0, 1.0) if top > 0 else np.zeros_like(m)


def _picture(img: np.ndarray) -> tuple[np.ndarray, str | None]:
    """An image (C, H, W) as something imshow draws: grey (ink dark) or RGB stretched to 0..1."""
    if img.shape[0] == 3:
        t = img.transpose(1, 2, 0).astype(np.float64)
        lo, hi = t.min(), t.max()
        return (t - lo) / (hi - lo or 1.0), None
    return img[0], "gray_r"


def draw(plt, path, images, indices, true, predicted, probability, targets, maps: dict, title: str):
    """Write heatmaps.png: images (n, C, H, W); maps {method: (n, H, W)}; probability = of the prediction."""
    from matplotlib.cm import ScalarMappable  # optional dependency: the plot extra
    from matplotlib.colors import Normalize

    n = len(indices)
    names = list(maps)
    rows = 1 + len(names)
    fig, axes = plt.subplots(rows, n, figsize=(1.6 * n + 1.6, 1.75 * rows + 0.8), squeeze=False)
    cmap = plt.get_cmap(CMAP)
    for col in range(n):
        picture, grey = _picture(images[col])
        t, p, prob, tgt = int(true[col]), int(predicted[col]), float(probability[col]), int(targets[col])
        caption = f"true {t}, pred {p} ({prob:.0%})" + (f", for {tgt}" if tgt != p else "")
        colour = "black" if t == p else "tab:red"
        for row in range(rows):
            ax = axes[row][col]
            ax.set_xticks([])
            ax.set_yticks([])
            ax.imshow(picture, cmap=grey, interpolation="nearest")
            if row == 0:
                ax.set_title(f"test image {indices[col]}\n{caption}", fontsize=7.5, color=colour)
            else:
                share = _scaled(maps[names[row - 1]][col])
                heat = cmap(share)
                heat[..., 3] = ALPHA_LOW + (ALPHA - ALPHA_LOW) * share  # the image shows through where the map is low
                ax.imshow(heat, interpolation="nearest")
                if grey is not None and np.ptp(picture) > 0:  # the strokes' outline over the colours
                    ax.contour(picture, levels=[picture.min() + 0.5 * np.ptp(picture)], colors="black",
                               linewidths=0.8)
                ax.set_title(caption, fontsize=7, color=colour)
            if col == 0:
                ax.set_ylabel("image" if row == 0 else names[row - 1], fontsize=10)
    fig.suptitle(title, fontsize=9.5)
    top = 1 - 0.7 / (1.75 * rows + 0.8)
    fig.subplots_adjust(left=0.05, right=0.89, top=top, bottom=0.03, hspace=0.35, wspace=0.1)
    if names:
        cax = fig.add_axes([0.915, 0.08, 0.014, 0.72 * top])
        fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), cax=cax).set_label(
            "share of each map's largest value (the more, the more opaque)", fontsize=8)
    return save_png(plt, fig, path)
