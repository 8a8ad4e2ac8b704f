"""Dropout between the layers of a CharLM (train-charlm --dropout): the masks, the gradient through them,
evaluation without them, and exact resume with them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gradcheck import assert_close
from numbanets.nn.models import CharLM
from runner.charlm import train as charlm

V, H, T, N = 7, 5, 6, 3


def _model(cell, dropout, layers=2, dtype=np.float64, seed=0):
    return CharLM(V, H, layers, cell=cell, rng=np.random.default_rng(seed), dtype=dtype,
                  dropout=dropout, dropout_rng=np.random.default_rng(seed + 100))


def _batch(rng):
    return rng.integers(0, V, size=(T, N)), rng.integers(0, V, size=(T, N))


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_masks_drop_between_layers_and_before_the_read_out(cell, rng):
    p = 0.4
    model = _model(cell, p, layers=3)
    x, y = _batch(rng)
    model.loss(x, y)
    masks = [d.mask for d in model.rnn.drops] + [model.drop.mask]
    assert len(masks) == 3  # after l0, after l1, and l2's output before the head: never after the head
    for mask in masks:
        assert mask.shape == (T, N, H)
        assert set(np.unique(mask)) <= {0.0, 1.0 / (1.0 - p)}
    dropped = np.mean(np.concatenate([m.ravel() for m in masks]) == 0)
    assert 0.25 < dropped < 0.55  # 270 Bernoulli(0.4) draws


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_eval_mode_is_the_model_without_dropout(cell, rng):
    with_dropout, without = _model(cell, 0.5), _model(cell, 0.0)
    without.load_state_dict(with_dropout.state_dict())
    x, y = _batch(rng)
    trained, _ = with_dropout.loss(x, y)
    with_dropout.eval()
    evaluated, _ = with_dropout.loss(x, y)
    reference, _ = without.loss(x, y)
    assert evaluated == reference
    assert trained != reference  # the masks were there in train mode


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_gradient_through_the_masks_matches_finite_differences(cell, rng):
    model = _model(cell, 0.3)
    x, y = _batch(rng)
    masks_state = model.dropout_rng.bit_generator.state

    def loss():
        model.dropout_rng.bit_generator.state = masks_state  # the same masks for every evaluation
        return model.loss(x, y)[0]

    model.dropout_rng.bit_generator.state = masks_state
    model.loss_and_grad(x, y)
    eps = 1e-6
    for name, p, g in model.named_parameters():
        flat, gflat = p.reshape(-1), g.reshape(-1)
        for i in rng.choice(flat.size, size=min(6, flat.size), replace=False):
            keep = flat[i]
            flat[i] = keep + eps
            up = loss()
            flat[i] = keep - eps
            down = loss()
            flat[i] = keep
            assert_close(np.array([gflat[i]]), np.array([(up - down) / (2 * eps)]), rtol=1e-6, atol=1e-8,
                         name=f"{name}[{i}]")


def test_dropout_needs_its_generator_to_train():
    model = CharLM(V, H, 2, rng=np.random.default_rng(0), dropout=0.2)
    x = np.zeros((2, 1), dtype=np.int64)
    with pytest.raises(RuntimeError, match="needs dropout_rng"):
        model.loss(x, x)
    model.eval().loss(x, x)  # evaluation needs no masks


def test_the_initial_weights_do_not_depend_on_dropout():
    a, b = _model("lstm", 0.0), _model("lstm", 0.5)
    for (name, pa, _), (_, pb, _) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(pa, pb, err_msg=name)


# --------------------------------------------------------------------------- train-charlm --dropout

TEXT = "the quick brown fox jumps over the lazy dog; " * 60
TINY = {"hidden": 12, "layers": 2, "seq_len": 8, "batch_size": 4, "eval_every": 5, "sample_every": 10,
        "sample_length": 20, "lr": 0.01, "quiet": True, "dropout": 0.3}
COLUMNS = ["step", "train_loss", "val_loss", "grad_norm"]


def _run(out, corpus, **kw):
    opts = {**TINY, "corpus": str(corpus), "out": str(out), **kw}
    return charlm.train(opts, given=set(opts), echo=lambda s: None)


def test_resume_with_dropout_equals_the_uninterrupted_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT, encoding="utf-8")
    full = _run(tmp_path / "a", corpus, steps=17)
    part = _run(tmp_path / "b", corpus, steps=8)  # stops between two evaluations: its last checkpoint is step 8
    charlm.train({"steps": 17}, given={"steps"}, resume=str(part.run_dir), echo=lambda s: None)
    a = pd.read_csv(full.run_dir / "metrics.csv")[COLUMNS]
    b = pd.read_csv(part.run_dir / "metrics.csv")[COLUMNS]
    # bit for bit (the part run also evaluated at its last step 8: compare val_loss where both evaluated)
    pd.testing.assert_frame_equal(a[["step", "train_loss", "grad_norm"]], b[["step", "train_loss", "grad_norm"]],
                                  check_exact=True)
    both = a.val_loss.notna()
    assert both.sum() == 4 and (a.val_loss[both] == b.val_loss[both]).all()
    # and the masks mattered: without them the same run trains differently
    plain = _run(tmp_path / "c", corpus, steps=17, dropout=0.0)
    c = pd.read_csv(plain.run_dir / "metrics.csv")[COLUMNS]
    assert not np.allclose(a.train_loss.to_numpy(), c.train_loss.to_numpy())
    assert '"dropout": 0.3' in (full.run_dir / "config.json").read_text()
