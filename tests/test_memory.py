"""nbnets memory: the task generators, training on them, the hand-set LSTM that remembers 1,000 steps,
the distance search on a fake trainer, the Dask grid against the same runs one at a time, the command."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets.gradstats import CELLS
from runner.cli import main
from runner.common.cluster import Where
from runner.memory.runs import Runs
from runner.memory.search import search
from runner.memory.tasks import ANSWER_WORDS, CONTEXT_WORDS, Adding, Recall
from runner.memory.train import MemoryNet, RunSpec, fit


# --------------------------------------------------------------------------- the generators

def test_recall_sequences_end_in_the_query_and_ask_for_the_context():
    task = Recall(distance=7, symbols=5, fillers=4)
    x, y = task.batch(np.random.default_rng(0), 200)
    assert x.shape == (9, 200) and y.shape == (200,) and task.vocab == 11 and task.outputs == 5
    assert (x[0] == y).all() and (x[0] < 5).all()                      # the answer is the context's
    assert ((x[1:-1] >= 5) & (x[1:-1] < 9)).all()                      # fillers only in between
    assert (x[-1] == task.query).all()
    assert set(np.unique(y)) == set(range(5))


def test_forget_answers_follow_the_latest_context():
    task = Recall(distance=12, symbols=6, fillers=3, forget=True)
    x, y = task.batch(np.random.default_rng(1), 500)
    switched = 0
    for i in range(500):
        seq = x[:, i]
        contexts = [t for t, s in enumerate(seq) if s < 6]
        eols = [t for t, s in enumerate(seq) if s == task.eol]
        assert y[i] == seq[contexts[-1]]
        assert len(eols) <= 1 and len(contexts) == 1 + len(eols)
        if eols:
            switched += 1
            assert contexts[-1] == eols[0] + 1 and eols[0] >= 1 and contexts[-1] <= len(seq) - 2
    assert 200 < switched < 300   # about half


def test_adding_target_is_the_sum_of_the_two_marked_values():
    task = Adding(distance=20)
    x, y = task.batch(np.random.default_rng(2), 300)
    assert x.shape == (20, 300, 2) and y.dtype == np.float32
    marks = x[:, :, 1]
    assert (marks.sum(axis=0) == 2).all()
    assert (marks[:10].sum(axis=0) == 1).all() and (marks[10:].sum(axis=0) == 1).all()
    np.testing.assert_allclose(y, (x[:, :, 0] * marks).sum(axis=0), rtol=1e-6)
    # predicting the mean, 1, scores about 1/6
    assert abs(np.mean((Adding(50).batch(np.random.default_rng(3), 20000)[1] - 1.0) ** 2) - 1 / 6) < 0.01


def test_generators_are_reproducible_from_the_seed():
    for task in (Recall(9, forget=True), Adding(9)):
        a, b = task.batch(np.random.default_rng([4, 1]), 16), task.batch(np.random.default_rng([4, 1]), 16)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


def test_render_shows_the_words():
    task = Recall(3, symbols=8, fillers=10)
    x = np.array([0, 8, 9, 10, task.query])
    assert task.render(x, 0) == f"{CONTEXT_WORDS[0]} the of and ? -> {ANSWER_WORDS[0]}"


@pytest.mark.parametrize("args", [
    dict(distance=0), dict(distance=3, symbols=1), dict(distance=2, forget=True)])
def test_bad_task_settings_are_value_errors(args):
    with pytest.raises(ValueError):
        Recall(**args)


# --------------------------------------------------------------------------- training

@pytest.mark.parametrize("cell", [c for c in CELLS if c != "rnn-sigmoid"])
def test_every_cell_solves_recall_at_distance_2(cell):
    rows, summary = fit(RunSpec(cell, "recall", 2, seed=0, max_steps=1500, eval_every=50))
    assert summary["solved"], (cell, rows[-1])
    assert rows[0]["step"] == 0 and rows[-1]["test_metric"] >= 0.99


def test_the_sigmoid_rnn_solves_recall_at_distance_2_for_some_seeds():
    """The sigmoid RNN learns slowly (sigma' <= 1/4 at every step): seed 1 solves distance 2 in 600 steps,
    seeds 0 and 2 are at 0.87 and 0.70 after 3,000. A sigmoid RNN written in PyTorch with the same init,
    Adam and clipping does no better (solved in 1,500 steps for seed 0, not in 3,000 for seeds 1 and 2),
    so this is the cell, not the kernel (whose gradients tests/test_rnn.py checks)."""
    solved = [fit(RunSpec("rnn-sigmoid", "recall", 2, seed=s, max_steps=3000, eval_every=100))[1]["solved"]
              for s in (0, 1)]
    assert any(solved)


def test_a_hand_set_lstm_remembers_1000_steps_without_training():
    """Forget gate saturated open, input gate open at the context symbols only, g writes one unit per context,
    output gate open: the cell carries the context across 1,000 fillers through the library's LSTM kernel."""
    K, distance = 8, 1000
    task = Recall(distance, symbols=K, fillers=10)
    net = MemoryNet("lstm", task.vocab, K, K, forget_bias=0.0, rng=np.random.default_rng(0))
    p = net.recurrent.params
    for name in ("w_ih", "w_hh", "b"):
        p[name][...] = 0
    H = K
    p["w_ih"][0:H, :] = -30.0            # input gate shut ...
    p["w_ih"][0:H, 0:K] = 30.0           # ... except at a context symbol
    p["b"][H:2 * H] = 30.0               # forget gate: sigmoid(30) = 1 in float32
    p["w_ih"][2 * H:3 * H, 0:K] = 30.0 * np.eye(K, dtype=np.float32)   # g: the context's own unit -> 1
    p["b"][3 * H:4 * H] = 30.0           # output gate open
    net.readout.params["w"][...] = 10.0 * np.eye(K, dtype=np.float32)
    net.readout.params["b"][...] = 0
    x, y = task.batch(np.random.default_rng(5), 64)
    logits = net.forward(x)
    assert x.shape[0] == distance + 2
    assert (np.argmax(logits, axis=1) == y).all()
    _, (h_T, c_T) = net.recurrent.forward(x)
    np.testing.assert_array_equal(c_T, np.eye(K, dtype=np.float32)[y] * np.tanh(np.float32(30)))


def test_adding_is_learned_at_a_short_distance():
    rows, summary = fit(RunSpec("lstm", "adding", 6, seed=0, max_steps=3000, eval_every=100, lr=1e-2))
    assert summary["solved"] and rows[-1]["test_metric"] <= 0.01


# --------------------------------------------------------------------------- the search

def test_the_search_finds_a_known_threshold_exactly():
    thresholds = {"a": 37, "b": 5, "c": 1, "d": 5000}
    calls = []

    def fake(specs):
        calls.append(len(specs))
        # seed 2 is a bad seed that never learns: the majority (2 of 3) decides
        return [d <= thresholds[cell] and seed != 2 for cell, d, seed in specs]

    states = search(["a", "b", "c", "d"], [0, 1, 2], fake, min_distance=2, max_distance=1024, resolution=1)
    assert {c: s.best for c, s in states.items()} == {"a": 37, "b": 5, "c": 0, "d": 1024}
    assert states["d"].failed is None and states["a"].failed == 38
    assert states["a"].per_seed([0, 1, 2]) == {0: 37, 1: 37, 2: 0}
    assert all(n % 3 == 0 for n in calls)
    coarse = search(["a"], [0], lambda specs: [d <= 37 for _, d, _ in specs], 2, 1024, resolution=8)["a"]
    assert coarse.best <= 37 < coarse.failed and coarse.failed - coarse.best <= 8


# --------------------------------------------------------------------------- Dask against one at a time

@pytest.mark.slow
def test_the_grid_on_dask_equals_the_runs_one_at_a_time():
    specs = [RunSpec(cell, "recall", d, seed, max_steps=200, eval_every=50)
             for cell in ("rnn-tanh", "lstm") for d in (3, 6) for seed in (0, 1)]
    import os

    pool = os.environ.get("NUMBA_NUM_THREADS")
    alone = Runs(Where(None, 1, 1, 10.0, 0), quiet=True, echo=lambda s: None)
    swept = Runs(Where(None, 2, 1, 10.0, 0), quiet=True, echo=lambda s: None)
    try:
        one, many = alone.map(specs), swept.map(specs)
    finally:
        swept.close()
    assert swept.facts["cluster"] == "local" and alone.facts["cluster"].startswith("none")
    # starting the local cluster leaves this process's numba pool variable as it was (a changed
    # NUMBA_NUM_THREADS makes numba's next compilation fail under a running pool)
    assert os.environ.get("NUMBA_NUM_THREADS") == pool
    for (rows_a, sum_a), (rows_b, sum_b) in zip(one, many):
        pd.testing.assert_frame_equal(pd.DataFrame(rows_a), pd.DataFrame(rows_b), check_exact=True)
        assert {k: v for k, v in sum_a.items() if k != "wall_s"} == {k: v for k, v in sum_b.items() if k != "wall_s"}


# --------------------------------------------------------------------------- the command

def _memory(tmp_path, *args):
    return CliRunner().invoke(main, ["memory", "--workers", "1", "--out", str(tmp_path), "--quiet", *args])


def test_the_command_writes_its_tables_figure_and_table(tmp_path):
    result = _memory(tmp_path, "--cells", "rnn-tanh,lstm", "--distances", "2,4", "--seeds", "0-1",
                     "--max-steps", "300", "--eval-every", "50", "--show", "2")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "memory").iterdir()
    evals, summary = pd.read_csv(run / "memory.csv"), pd.read_csv(run / "summary.csv")
    assert list(evals.columns) == ["cell", "task", "distance", "seed", "step", "train_loss", "test_accuracy",
                                   "grad_ratio_context"]
    assert len(summary) == 8 and set(summary["cell"]) == {"rnn-tanh", "lstm"}
    assert {"solved", "steps_to_solve", "final_test_accuracy", "grad_ratio_init", "wall_s"} <= set(summary.columns)
    assert result.output.count("example ") == 2 and " -> " in result.output
    assert "d=2" in result.output and "2/2" in result.output
    assert json.loads((run / "config.json").read_text())["command"] == "memory"
    pytest.importorskip("matplotlib")
    assert (run / "memory.png").stat().st_size > 10_000


def test_adding_forget_and_search_through_the_command(tmp_path):
    result = _memory(tmp_path / "a", "--task", "adding", "--cells", "lstm", "--distances", "4", "--seeds", "0",
                     "--max-steps", "100", "--no-plot")
    assert result.exit_code == 0, result.output
    assert "test_mse" in pd.read_csv(next((tmp_path / "a" / "memory").iterdir()) / "memory.csv").columns
    result = _memory(tmp_path / "f", "--forget", "--cells", "rnn-tanh", "--distances", "4", "--seeds", "0",
                     "--max-steps", "100", "--no-plot")
    assert result.exit_code == 0, result.output
    result = _memory(tmp_path / "s", "--search", "--cells", "rnn-relu", "--seeds", "0", "--min-distance", "2",
                     "--max-distance", "8", "--max-steps", "500", "--eval-every", "50", "--no-plot")
    assert result.exit_code == 0, result.output
    best = pd.read_csv(next((tmp_path / "s" / "memory").iterdir()) / "max_distance.csv")
    assert list(best.columns[:3]) == ["cell", "max_distance", "reached_limit"] and "seed_0" in best.columns
    assert "largest distance learned" in result.output


@pytest.mark.parametrize("args, words", [
    (["--distances", "0,5"], "--distances 0,5"),
    (["--symbols", "1"], "--symbols must be >= 2"),
    (["--cells", "rnn-tanh,transformer"], "unknown cell 'transformer'"),
    (["--solved", "0"], "--solved must lie in (0, 1]"),
    (["--solved", "1.5"], "--solved must lie in (0, 1]"),
    (["--task", "adding", "--distances", "1"], "distance >= 2"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, args, words):
    result = _memory(tmp_path, *args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1
    assert words in result.output
    assert not (tmp_path / "memory").exists()
