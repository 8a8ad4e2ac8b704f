"""runner.charlm and runner.sample_cmd: the trainer, exact resume, parity with torch, sampling.

The gradient of the whole CharLM against finite differences (rnn and lstm, 1
and 2 layers) lives in tests/test_nn.py; here the trainer around it is tested.
Shapes are tiny: every test runs in well under a second once numba's cache is warm.
"""

from __future__ import annotations

import math
import signal

import numpy as np
import pandas as pd
import pytest

from numbanets.data.text import Corpus, Vocabulary
from runner.charlm import checkpoint as charlm_checkpoint
from runner.charlm import sample as sample_cmd
from runner.charlm import train as charlm

TEXT = "the quick brown fox jumps over the lazy dog; " * 60  # 2,700 characters, 28 symbols

TINY = {"hidden": 12, "layers": 2, "seq_len": 8, "batch_size": 4, "eval_every": 5, "sample_every": 10,
        "sample_length": 20, "lr": 0.01, "quiet": True}


def _data(opts, text=TEXT):
    return charlm.prepare_data(Corpus("test", text), opts["val_frac"], opts["batch_size"], opts["seq_len"])


def _trainer(dtype=np.float32, **kw):
    opts = charlm.validate({**TINY, **kw})
    return charlm.Trainer(opts, _data(opts), "cpu", dtype=dtype)


# --------------------------------------------------------------------------- data and options

def test_prepare_data_splits_and_rejects_short_text():
    opts = charlm.validate(TINY)
    data = _data(opts)
    assert data.train_ids.size + data.val_ids.size == len(TEXT)
    assert data.val_ids.size == round(len(TEXT) * 0.05)
    assert 0 < data.unigram_entropy < math.log(len(data.vocab))
    with pytest.raises(ValueError, match="too short for one batch of --batch-size 4 x --seq-len 8"):
        _data(opts, TEXT[:40])
    with pytest.raises(ValueError, match="--val-frac"):  # enough for training, none left for validation
        charlm.prepare_data(Corpus("t", TEXT[:200]), 0.01, 4, 8)


def test_validate_names_the_option():
    with pytest.raises(ValueError, match="--clip must be >= 0"):
        charlm.validate({"clip": -1.0})
    with pytest.raises(ValueError, match="--cell must be one of"):
        charlm.validate({"cell": "transformer"})
    assert charlm.planned_steps(charlm.validate({}), 100) == charlm.DEFAULT_STEPS
    assert charlm.planned_steps(charlm.validate({"epochs": 1.5}), 100) == 150


def test_lr_decays_per_epoch_and_state_resets_at_a_new_epoch():
    tr = _trainer(lr_decay=0.5)
    assert tr.lr_at(1) == tr.lr_at(tr.windows) == 0.01
    assert tr.lr_at(tr.windows + 1) == 0.005
    for _ in range(tr.windows):
        row = tr.train_step()
    assert tr.state is not None and row["epoch"] == pytest.approx(1.0)
    tr.train_step()  # first window of epoch 2 (its zero state: test_hidden_state_resets_when_an_epoch_starts_over)
    assert tr.optimizer.lr == 0.005


def _arrays(tree):
    if isinstance(tree, (list, tuple)):
        return [a for t in tree for a in _arrays(t)]
    return [np.asarray(tree)]


def test_hidden_state_resets_when_an_epoch_starts_over():
    # after a whole epoch, step windows + 1 must be the step a fresh trainer with the same weights and
    # optimizer state takes first: the same window from a zero state (a carried state changes the loss)
    a = _trainer(np.float64, lr_decay=1.0)
    for _ in range(a.windows):
        a.train_step()
    assert a.stream.position == 0 and a.state is not None
    assert max(float(np.abs(s).max()) for s in _arrays(a.state)) > 0.01  # a state that would matter
    b = _trainer(np.float64, lr_decay=1.0)
    b.model.load_state_dict(a.model.state_dict())
    b.optimizer.load_state_dict(a.optimizer.state_dict())
    row_a, row_b = a.train_step(), b.train_step()
    assert row_a["epoch"] == pytest.approx(1 + 1 / a.windows)
    assert row_a["train_loss"] == row_b["train_loss"]
    assert row_a["grad_norm"] == row_b["grad_norm"]
    for k, w in a.model.state_dict().items():
        np.testing.assert_array_equal(w, b.model.state_dict()[k], err_msg=k)


def test_train_step_learns_and_reports_clipping():
    tr = _trainer(clip=0.05)
    rows = [tr.train_step() for _ in range(30)]
    assert rows[0]["clipped"] == 1 and rows[0]["grad_norm"] > 0.05
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert all(math.isnan(r["val_loss"]) for r in rows)
    assert tr.evaluate() < rows[0]["train_loss"]


# --------------------------------------------------------------------------- torch parity

def _torch_lstm_from(torch, model):
    cfg = model.config()
    lstm = torch.nn.LSTM(cfg["vocab_size"], cfg["hidden"], cfg["layers"]).double()
    head = torch.nn.Linear(cfg["hidden"], cfg["vocab_size"]).double()
    w = model.state_dict()
    with torch.no_grad():
        for k in range(cfg["layers"]):
            getattr(lstm, f"weight_ih_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.w_ih"]))
            getattr(lstm, f"weight_hh_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.w_hh"]))
            getattr(lstm, f"bias_ih_l{k}").copy_(torch.from_numpy(w[f"rnn.l{k}.b"]))
            getattr(lstm, f"bias_hh_l{k}").zero_()
            getattr(lstm, f"bias_hh_l{k}").requires_grad_(False)  # numbanets has one bias per gate
        head.weight.copy_(torch.from_numpy(w["head.w"]))
        head.bias.copy_(torch.from_numpy(w["head.b"]))
    params = [p for p in list(lstm.parameters()) + list(head.parameters()) if p.requires_grad]
    return lstm, head, params


def _torch_weights(lstm, head, layers):
    w = {"head.w": head.weight, "head.b": head.bias}
    for k in range(layers):
        w[f"rnn.l{k}.w_ih"] = getattr(lstm, f"weight_ih_l{k}")
        w[f"rnn.l{k}.w_hh"] = getattr(lstm, f"weight_hh_l{k}")
        w[f"rnn.l{k}.b"] = getattr(lstm, f"bias_ih_l{k}")
    return {k: v.detach().numpy() for k, v in w.items()}


def test_first_20_steps_match_torch_lstm_in_float64(torch):
    # the README's claim (agreement to ~4e-16 per step in float64): losses, gradient norms and every
    # weight after each step to 1e-12, a margin for 20 steps of accumulated rounding, far below any bug
    tr = _trainer(np.float64, clip=0.2, init_scale=0.3)
    lstm, head, params = _torch_lstm_from(torch, tr.model)
    opt = torch.optim.RMSprop(params, lr=0.01, alpha=0.95, eps=1e-8)
    stream = charlm.BatchStream(tr.data.train_ids, 4, 8)
    V, state, clipped = len(tr.data.vocab), None, 0
    for step in range(1, 21):
        row = tr.train_step()
        x, y, wrapped = stream.next()
        state = None if wrapped else state
        opt.zero_grad()
        out, state = lstm(torch.nn.functional.one_hot(torch.from_numpy(x), V).double(), state)
        loss = torch.nn.functional.cross_entropy(head(out.reshape(-1, out.shape[-1])), torch.from_numpy(y).reshape(-1))
        loss.backward()
        norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in params))
        if norm > 0.2:
            for p in params:
                p.grad.mul_(0.2 / norm)
        opt.step()
        state = tuple(s.detach() for s in state)
        clipped += row["clipped"]
        assert row["train_loss"] == pytest.approx(loss.item(), rel=1e-12), f"loss at step {step}"
        assert row["grad_norm"] == pytest.approx(norm, rel=1e-12), f"gradient norm at step {step}"
        ours, theirs = tr.model.state_dict(), _torch_weights(lstm, head, tr.model.config()["layers"])
        assert set(theirs) <= set(ours)
        for k, w in theirs.items():
            np.testing.assert_allclose(ours[k], w, rtol=1e-12, atol=1e-14, err_msg=f"{k} after step {step}")
    assert clipped >= 5  # clipping really was on


# --------------------------------------------------------------------------- run folder, resume, Ctrl-C

def _run(tmp_path, corpus, **kw):
    opts = {**TINY, "corpus": str(corpus), "out": str(tmp_path / "out"), **kw}
    return charlm.train(opts, given=set(opts), echo=lambda s: None)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


LOSS_COLUMNS = ["step", "epoch", "train_loss", "val_loss", "grad_norm", "clipped", "lr"]


def _metrics(run_dir):
    return pd.read_csv(run_dir / "metrics.csv")


def _assert_same_from(full, resumed, k):
    a = full[full.step > k][LOSS_COLUMNS].reset_index(drop=True)
    b = resumed[resumed.step > k][LOSS_COLUMNS].reset_index(drop=True)
    assert len(a) == len(b) > 0
    pd.testing.assert_frame_equal(a, b, rtol=1e-6, atol=1e-9)


def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tmp_path, corpus):
    full = _run(tmp_path / "a", corpus, steps=24)
    part = _run(tmp_path / "b", corpus, steps=13)
    assert part.step == 13
    again = charlm.train({"steps": 24}, given={"steps"}, resume=str(part.run_dir), echo=lambda s: None)
    assert again.run_dir == part.run_dir and again.step == 24
    m_full, m_res = _metrics(full.run_dir), _metrics(part.run_dir)
    assert list(m_res.step) == list(range(1, 25))
    _assert_same_from(m_full, m_res, 13)
    # samples after the resume point are the same text too
    tail = lambda p: (p / "samples.txt").read_text().split("=== step 20")[1]  # noqa: E731
    assert tail(full.run_dir) == tail(part.run_dir)


def test_resume_across_an_epoch_boundary_is_exact(tmp_path, corpus):
    # an epoch of these settings is 80 windows. Against an uninterrupted run: stopped at 75 and resumed
    # across the boundary, and stopped at 80, the epoch's last window, whose checkpoint holds the hidden
    # state that the first window of epoch 2 must not receive. Those runs would agree with each other just
    # as well if none of them reset the state, so step 81 is also checked against its definition: the
    # step-80 weights and optimizer state on the first window from a zero state.
    settings = {"eval_every": 15, "sample_every": 45}
    full = _run(tmp_path / "a", corpus, steps=90, **settings)
    part = _run(tmp_path / "b", corpus, steps=75, **settings)
    edge = _run(tmp_path / "c", corpus, steps=80, **settings)
    assert part.step == 75 and edge.step == 80
    arrays, meta = charlm_checkpoint.load(edge.run_dir / "checkpoint.npz")
    assert meta["step"] == 80 and meta["stream_position"] == 0 and meta["hidden_state"] is not None
    for run in (part, edge):
        again = charlm.train({"steps": 90}, given={"steps"}, resume=str(run.run_dir), echo=lambda s: None)
        assert again.step == 90
    m_full = _metrics(full.run_dir)
    assert m_full.epoch.max() > 1.0 and m_full.epoch[m_full.step == 80].item() == pytest.approx(1.0)
    _assert_same_from(m_full, _metrics(part.run_dir), 75)
    _assert_same_from(m_full, _metrics(edge.run_dir), 80)

    fresh = _trainer()  # the same settings and data, restored from the step-80 checkpoint
    fresh.load_state_dict(arrays, meta)
    assert fresh.stream.position == 0 and fresh.state is not None  # the checkpoint's carried state
    x, y, _ = charlm.BatchStream(fresh.data.train_ids, TINY["batch_size"], TINY["seq_len"]).next()
    loss_zero, loss_carried = fresh.model.loss(x, y)[0], fresh.model.loss(x, y, fresh.state)[0]
    assert abs(loss_carried - loss_zero) > 1e-4 * loss_zero  # the state would show in the loss
    row81 = m_full[m_full.step == 81].iloc[0]
    assert row81.train_loss == pytest.approx(loss_zero, rel=1e-6)


def test_resume_refuses_changed_settings(tmp_path, corpus):
    part = _run(tmp_path, corpus, steps=5)
    with pytest.raises(ValueError, match="--hidden 20 \\(the run has 12\\)"):
        charlm.train({"steps": 9, "hidden": 20}, given={"steps", "hidden"}, resume=str(part.run_dir))


def test_ctrl_c_saves_a_checkpoint_and_resume_continues_exactly(tmp_path, corpus, monkeypatch):
    full = _run(tmp_path / "a", corpus, steps=20)
    original = charlm.Trainer.train_step

    def interrupted_at_7(self):
        row = original(self)
        if self.step == 7:
            signal.raise_signal(signal.SIGINT)  # the handler only sets a flag: the step completes
        return row

    monkeypatch.setattr(charlm.Trainer, "train_step", interrupted_at_7)
    stopped = _run(tmp_path / "b", corpus, steps=20)
    assert stopped.interrupted and stopped.step == 7
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    monkeypatch.setattr(charlm.Trainer, "train_step", original)
    charlm.train({"steps": 20}, given={"steps"}, resume=str(stopped.run_dir), echo=lambda s: None)
    _assert_same_from(_metrics(full.run_dir), _metrics(stopped.run_dir), 7)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, corpus, monkeypatch):
    original = charlm.Trainer.train_step

    def poisoned(self):
        if self.step == 7:
            self.model.head.params["b"][0] = np.nan
        return original(self)

    monkeypatch.setattr(charlm.Trainer, "train_step", poisoned)
    with pytest.raises(charlm.NonFiniteLoss, match=r"became nan at step 8 \(gradient norm before clipping nan\).*"
                                                  r"last good checkpoint \(step 5\)"):
        _run(tmp_path, corpus, steps=20)
    run_dir = next((tmp_path / "out" / "train-charlm").iterdir())
    arrays, meta = charlm_checkpoint.load(run_dir / "checkpoint.npz")
    assert meta["step"] == 5 and np.isfinite(arrays["param/head.b"]).all()
    assert list(_metrics(run_dir).step) == list(range(1, 8))


# --------------------------------------------------------------------------- sampling

def test_choose_temperature_zero_is_argmax_and_top_k_restricts():
    rng = np.random.default_rng(0)
    logits = np.array([0.1, 2.0, -1.0, 1.9])
    assert sample_cmd.choose(logits, 0.0, 0, rng) == 1
    p = sample_cmd.probabilities(logits, 1.0, top_k=2)
    assert p[0] == p[2] == 0 and p.sum() == pytest.approx(1.0)
    draws = {sample_cmd.choose(logits, 5.0, 2, rng) for _ in range(200)}
    assert draws == {1, 3}


def test_generate_is_deterministic_by_seed_and_greedy_at_temperature_zero():
    tr = _trainer()
    for _ in range(20):
        tr.train_step()
    vocab, model = tr.data.vocab, tr.model
    gen = lambda seed, t=1.0: sample_cmd.generate(model, vocab, "the ", 40, t, 0,  # noqa: E731
                                                  np.random.default_rng(seed))
    assert gen(1) == gen(1) and gen(1) != gen(2)
    greedy = gen(1, 0.0)
    assert greedy == gen(2, 0.0)  # argmax ignores the seed
    logits, state = model.next_logits(vocab.encode("the "))
    text = "the "
    for _ in range(40):
        nxt = int(np.argmax(logits))
        text += vocab.chars[nxt]
        logits, state = model.next_logits(np.array([nxt]), state)
    assert greedy == text


def test_prime_outside_the_vocabulary_is_listed():
    vocab = Vocabulary.from_text("abc ")
    with pytest.raises(ValueError, match="not in the model's vocabulary: 'x' 'Z'"):
        sample_cmd.generate(None, vocab, "abxZx", 5, 1.0, 0, np.random.default_rng(0))


# --------------------------------------------------------------------------- ids input of the first recurrent layer

def test_lstm_ids_input_is_the_one_hot_input_without_the_gemm(rng):
    from numbanets import functional as F

    T, N, D, H = 5, 3, 7, 4
    ids = rng.integers(0, D, (T, N))
    onehot = np.eye(D)[ids]
    w_ih, w_hh, b = rng.standard_normal((4 * H, D)), rng.standard_normal((4 * H, H)), rng.standard_normal(4 * H)
    h0, c0 = rng.standard_normal((N, H)), rng.standard_normal((N, H))
    hs_a, (h_a, c_a), cache_a = F.lstm_forward(onehot, h0, c0, w_ih, w_hh, b)
    hs_b, (h_b, c_b), cache_b = F.lstm_forward(ids, h0, c0, w_ih, w_hh, b)
    np.testing.assert_array_equal(hs_a, hs_b)  # a gather of 1 * w: the very same numbers
    np.testing.assert_array_equal(c_a, c_b)
    dhs = rng.standard_normal((T, N, H))
    ga = F.lstm_backward(dhs, cache_a)
    gb = F.lstm_backward(dhs, cache_b)
    assert gb[0] is None  # no gradient into the ids
    for a, b_, name in zip(ga[1:], gb[1:], ("dh0", "dc0", "dw_ih", "dw_hh", "db")):
        np.testing.assert_allclose(b_, a, rtol=1e-12, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="ids must lie in 0..6"):
        F.lstm_forward(ids + 1, h0, c0, w_ih, w_hh, b)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_rnn_ids_input_is_the_one_hot_input_without_the_gemm(rng, activation):
    from numbanets import functional as F

    T, N, D, H = 5, 3, 7, 4
    ids = rng.integers(0, D, (T, N))
    onehot = np.eye(D)[ids]
    w_ih, w_hh, b = rng.standard_normal((H, D)), 0.5 * rng.standard_normal((H, H)), rng.standard_normal(H)
    h0 = rng.standard_normal((N, H))
    hs_a, cache_a = F.rnn_forward(onehot, h0, w_ih, w_hh, b, activation)
    hs_b, cache_b = F.rnn_forward(ids, h0, w_ih, w_hh, b, activation)
    np.testing.assert_array_equal(hs_a, hs_b)  # a gather of 1 * w: the very same numbers
    dhs = rng.standard_normal((T, N, H))
    ga = F.rnn_backward(dhs, cache_a)
    gb = F.rnn_backward(dhs, cache_b)
    assert gb[0] is None  # no gradient into the ids
    for a, b_, name in zip(ga[1:], gb[1:], ("dh0", "dw_ih", "dw_hh", "db")):
        np.testing.assert_allclose(b_, a, rtol=1e-12, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="ids must lie in 0..6"):
        F.rnn_forward(ids + 1, h0, w_ih, w_hh, b, activation)


def test_progress_bar_line_and_quiet(tmp_path):
    import io

    from runner.common.progress import ProgressBar

    out = io.StringIO()
    bar = ProgressBar(200, stream=out, force=True, interval=0)
    bar.update(50, 1.23456, 45_600.0, 75)
    assert "step  50/200" in bar.line() and "loss 1.2346" in bar.line() and "45.6k chars/s" in bar.line()
    assert "eta 1:15" in bar.line() and "\r" in out.getvalue()
    silent = io.StringIO()
    ProgressBar(200, stream=silent, enabled=False, force=True).update(5, 1.0, 1.0)
    assert silent.getvalue() == ""
