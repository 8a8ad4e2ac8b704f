"""train-charlm with and without --dropout on a model large enough to overfit: validation loss at the same steps.

    python scripts/dropout_overfit.py --corpus ../shared/data/tinyshakespeare.txt --chars 200000 \\
        --hidden 256 --layers 2 --steps 1200 --dropout 0.3

Takes the first --chars characters of the corpus (into a temporary file: a
short text is what lets a 2-layer LSTM overfit within minutes on a CPU), then
runs `nbnets train-charlm` twice with the same seed and settings, once with
--dropout 0 and once with --dropout P, and prints per evaluation step the
train and validation loss of both, then the best validation loss of each and
the step it was reached. --out keeps the two run folders (default: a
temporary folder).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runner.charlm import train as charlm  # noqa: E402


def run(corpus: Path, out: Path, args, dropout: float) -> pd.DataFrame:
    opts = {"corpus": str(corpus), "hidden": args.hidden, "layers": args.layers, "steps": args.steps,
            "eval_every": args.eval_every, "dropout": dropout, "seed": args.seed, "out": str(out),
            "sample_length": 0, "quiet": True, "threads": args.threads}
    result = charlm.train(opts, given=set(opts), echo=lambda s: None)
    metrics = pd.read_csv(result.run_dir / "metrics.csv")
    return metrics[metrics.val_loss.notna()][["step", "epoch", "train_loss", "val_loss"]]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--chars", type=int, default=200_000, help="the first CHARS characters of the corpus")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--dropout", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=None, help="keep the run folders here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        text = args.corpus.read_text(encoding="utf-8")[: args.chars]
        corpus = Path(tmp) / f"{args.corpus.stem}-first-{len(text)}.txt"
        corpus.write_text(text, encoding="utf-8")
        out = args.out or Path(tmp) / "runs"
        plain = run(corpus, out, args, 0.0)
        dropped = run(corpus, out, args, args.dropout)
    table = plain.merge(dropped, on=["step", "epoch"], suffixes=("", f"_dropout{args.dropout:g}"))
    print(f"{args.corpus.name}, first {len(text):,} chars; {args.layers} x {args.hidden} LSTM, seed {args.seed}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    for name, t in (("--dropout 0", plain), (f"--dropout {args.dropout:g}", dropped)):
        best = t.loc[t.val_loss.idxmin()]
        print(f"{name:>14}: best val loss {best.val_loss:.4f} at step {int(best.step)}, "
              f"final {t.val_loss.iloc[-1]:.4f} (train {t.train_loss.iloc[-1]:.4f})")


if __name__ == "__main__":
    main()
