"""matplotlib for the commands' figures: the Agg backend (no display needed), imported on demand.

matplotlib is the optional `plot` extra, so it is imported inside `pyplot()`
only, and its absence is either an error (`nbnets analyse --plot`) or a note
that says how to get the figures (a training run's `--plot` default).
"""

from __future__ import annotations

import io
from pathlib import Path

from numbanets.checkpoint import atomic_write_bytes

PLOT_HINT = "pip install -e '.[plot]'"


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is not installed."""
    try:
        import matplotlib  # optional dependency: the plot extra

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save_png(plt, fig, path: Path, dpi: int = 110) -> Path:
    """Draw `fig` into memory as PNG, close it, and write the file atomically (temporary name, rename)."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)
