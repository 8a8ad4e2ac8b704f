"""train-charlm --cell gru: a short run whose loss falls, exact resume, and sampling from the run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from runner.charlm import sample as sample_cmd
from runner.charlm import train as charlm

TEXT = "the quick brown fox jumps over the lazy dog; " * 60
TINY = {"cell": "gru", "hidden": 16, "layers": 2, "seq_len": 8, "batch_size": 4, "eval_every": 10,
        "sample_every": 20, "sample_length": 20, "lr": 0.01, "quiet": True}


def _run(out, corpus, **kw):
    opts = {**TINY, "corpus": str(corpus), "out": str(out), **kw}
    return charlm.train(opts, given=set(opts), echo=lambda s: None)


def test_gru_char_lm_learns_resumes_exactly_and_samples(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    full = _run(tmp_path / "a", corpus, steps=60)
    metrics = pd.read_csv(full.run_dir / "metrics.csv")
    first, last = metrics.train_loss.iloc[:5].mean(), metrics.train_loss.iloc[-5:].mean()
    assert last < 0.75 * first, (first, last)  # 28 symbols: from about ln 28 = 3.3 nats/char down
    val = metrics.val_loss.dropna()
    assert val.iloc[-1] < val.iloc[0]
    config = json.loads((full.run_dir / "config.json").read_text())
    assert config["model"]["cell"] == "gru"
    # 2 layers of (w_ih 3H x D, w_hh 3H x H, b_ih, b_hh), the read-out V x (H + 1)
    H, V = 16, 28
    assert config["model"]["parameters"] == 3 * H * (V + H + 2) + 3 * H * (H + H + 2) + V * (H + 1)

    part = _run(tmp_path / "b", corpus, steps=30)
    charlm.train({"steps": 60}, given={"steps"}, resume=str(part.run_dir), echo=lambda s: None)
    resumed = pd.read_csv(part.run_dir / "metrics.csv")
    columns = ["step", "train_loss", "grad_norm"]
    pd.testing.assert_frame_equal(resumed[columns], metrics[columns], check_exact=True)

    model, vocab, _ = sample_cmd.load_model(str(full.run_dir), "cpu")
    assert model.cell == "gru" and not model.training
    text = sample_cmd.run(str(full.run_dir), prime="the ", length=30, temperature=0.0, device="cpu")
    assert text.startswith("the ") and len(text) == 34
    beam = sample_cmd.run(str(full.run_dir), prime="the ", length=30, device="cpu", beam=1)
    assert beam == text
    assert np.isfinite(model.next_logits(vocab.encode("the "))[0]).all()
