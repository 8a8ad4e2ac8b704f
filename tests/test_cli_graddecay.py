"""`nbnets grad-decay` through click's CliRunner: files, columns, values read back with pandas,
the README's theory lines reproduced from the command line, and bad input."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from numbanets import gradstats as gs
from runner.cli import main

SMALL = ["--hidden", "6", "--batch", "2", "--no-plot"]
ID_COLUMNS = ["cell", "activation", "init", "scale", "seed", "phase", "steps", "t", "k"]


def invoke(tmp_path, *args):
    result = CliRunner().invoke(main, ["grad-decay", "--out", str(tmp_path), *args])
    return result


def run_dir(tmp_path) -> Path:
    (folder,) = (tmp_path / "grad-decay").iterdir()
    return folder


def frames(tmp_path):
    folder = run_dir(tmp_path)
    return pd.read_csv(folder / "grad_decay.csv"), pd.read_csv(folder / "summary.csv"), folder


def test_files_columns_and_rows(tmp_path):
    result = invoke(tmp_path, "--steps", "4", *SMALL)
    assert result.exit_code == 0, result.output
    steps, summary, folder = frames(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "grad_decay.csv", "summary.csv"]
    assert list(steps.columns) == ID_COLUMNS + list(gs.STEP_COLUMNS)
    assert list(summary.columns) == ID_COLUMNS[:-2] + list(gs.SUMMARY_COLUMNS)
    cells = list(gs.DEFAULT_CELLS)
    assert list(dict.fromkeys(steps["cell"])) == cells and len(steps) == 4 * len(cells)
    assert list(summary["cell"]) == cells
    assert (steps["k"] == 4 - steps["t"]).all() and set(steps["t"]) == {1, 2, 3, 4}
    last = steps[steps["t"] == 4]
    assert np.allclose(last["grad_ratio"], 1.0) and np.allclose(last["jac_spec"], 1.0)
    assert last["step_ratio"].isna().all() and last["jac_step_spec"].isna().all()
    assert steps.loc[steps["cell"] != "lstm", "gate_f"].isna().all()
    assert steps.loc[steps["cell"] == "lstm", "gate_f"].between(0, 1).all()
    assert dict(zip(steps["cell"], steps["activation"]))["rnn-sigmoid"] == "sigmoid"
    gamma = dict(zip(summary["cell"], summary["gamma"]))
    assert gamma["rnn-sigmoid"] == 0.25 and gamma["rnn-tanh"] == 1.0 and math.isnan(gamma["lstm"])
    assert np.allclose(summary["lambda1_gamma"].dropna(), (summary["lambda1"] * summary["gamma"]).dropna())
    # the three RNN cells share W_hh within a seed
    assert summary.loc[summary["cell"] != "lstm", "lambda1"].nunique() == 1
    config = json.loads((folder / "config.json").read_text())
    assert config["command"] == "grad-decay" and config["options"]["steps"] == 4
    assert config["options"]["cells"] == cells and config["device"] in ("cpu", "cuda")
    # the terminal table: cells as rows, t as columns, log10 of grad_ratio
    lines = result.output.splitlines()
    assert "t=1" in lines[1] and "t=4" in lines[1]
    tanh_row = next(line for line in lines if line.startswith("rnn-tanh"))
    ratio = steps.loc[(steps["cell"] == "rnn-tanh") & (steps["t"] == 1), "grad_ratio"].item()
    assert tanh_row.split()[1] == f"{math.log10(ratio):.2f}"
    assert str(folder) in result.output


@pytest.mark.parametrize("args, column, expected", [
    (["--cells", "rnn-tanh", "--init", "identity", "--scale", "0.5"], "jac_spec", lambda k: 0.5 ** k),
    (["--cells", "rnn-tanh", "--init", "orthogonal", "--scale", "1.2"], "jac_spec", lambda k: 1.2 ** k),
    (["--cells", "rnn-sigmoid", "--init", "identity", "--scale", "1", "--bias", "-0.5", "--h0", "0.5"],
     "jac_spec", lambda k: 0.25 ** k),
    (["--cells", "rnn-sigmoid", "--init", "identity", "--scale", "4", "--bias", "-2", "--h0", "0.5"],
     "jac_spec", lambda k: 1.0 + 0 * k),
    (["--cells", "rnn-sigmoid", "--init", "identity", "--scale", "6", "--bias=-3", "--h0", "0.5"],
     "jac_spec", lambda k: 1.5 ** k),
    (["--cells", "rnn-relu", "--init", "identity", "--scale", "1", "--h0", "1"], "jac_spec", lambda k: 1.0 + 0 * k),
    (["--cells", "lstm", "--init", "zero", "--forget-bias", "1"], "dc_norm",
     lambda k: (1 / (1 + math.exp(-1))) ** k),
    (["--cells", "gru", "--init", "zero", "--bias", "1"], "jac_spec", lambda k: (1 / (1 + math.exp(-1))) ** k),
    (["--cells", "gru", "--init", "zero", "--bias=-1"], "grad_ratio", lambda k: (1 / (1 + math.exp(1))) ** k),
])
def test_readme_theory_lines_from_the_command_line(tmp_path, args, column, expected):
    result = invoke(tmp_path, "--steps", "7", "--input", "zero", *SMALL, *args)
    assert result.exit_code == 0, result.output
    steps, summary, _ = frames(tmp_path)
    np.testing.assert_allclose(steps[column], expected(steps["k"].to_numpy(float)), rtol=1e-10, atol=1e-10)
    if column == "dc_norm":
        assert steps.loc[steps["t"] == 1, "dc_norm"].item() == pytest.approx(0.15266, abs=5e-6)


def test_seeds_give_their_own_rows_and_draws(tmp_path):
    result = invoke(tmp_path, "--steps", "3", "--seeds", "2", "--cells", "rnn-tanh,lstm", *SMALL)
    assert result.exit_code == 0, result.output
    steps, summary, _ = frames(tmp_path)
    assert sorted(set(steps["seed"])) == [0, 1] and len(steps) == 2 * 2 * 3
    assert summary.groupby("cell")["lambda1"].nunique().eq(2).all()
    assert "mean of 2 seeds" in result.output


def test_corpus_input_is_one_hot_over_the_vocabulary(tmp_path):
    result = invoke(tmp_path, "--steps", "3", "--cells", "rnn-tanh", "--input", "corpus", *SMALL)
    assert result.exit_code == 0, result.output
    steps, _, folder = frames(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["corpus"]["name"] == "builtin:python-stdlib"
    assert config["input_size"] == config["corpus"]["vocabulary"] > 50
    assert np.isfinite(steps["grad_norm"]).all() and (steps["sens_hidden"] > 0).all()


def test_train_steps_record_phases_from_the_untrained_weights(tmp_path):
    common = ["--steps", "3", "--cells", "rnn-tanh,lstm", *SMALL]
    result = invoke(tmp_path / "trained", "--train-steps", "4", "--record-every", "2", *common)
    assert result.exit_code == 0, result.output
    steps, summary, folder = frames(tmp_path / "trained")
    assert sorted(set(steps["phase"])) == [0, 2, 4] and len(steps) == 3 * 2 * 3
    assert list(summary["cell"]) == ["rnn-tanh", "lstm"] * 3
    assert summary.loc[summary["phase"] == 0, "train_loss"].isna().all()
    assert (summary.loc[summary["phase"] > 0, "train_loss"] > 0).all()
    config = json.loads((folder / "config.json").read_text())
    assert config["options"]["input"] == "corpus" and config["training"]["recorded_at"] == [0, 2, 4]
    assert "rnn-tanh @step 4" in result.output
    # phase 0 is the untrained network of a plain run (weights round-tripped through float32)
    assert invoke(tmp_path / "plain", "--input", "corpus", *common).exit_code == 0
    plain, _, _ = frames(tmp_path / "plain")
    start = steps[steps["phase"] == 0].reset_index(drop=True)
    for column in ("grad_norm", "jac_spec", "sens_out"):
        np.testing.assert_allclose(start[column], plain[column], rtol=1e-4)


def test_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    result = invoke(tmp_path, "--steps", "3", "--hidden", "4", "--batch", "1", "--cells", "rnn-tanh,lstm", "--plot")
    assert result.exit_code == 0, result.output
    png = run_dir(tmp_path) / "grad_decay.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_matplotlib_the_csvs_and_table_still_come_out(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    result = invoke(tmp_path, "--steps", "3", "--hidden", "4", "--batch", "1", "--cells", "rnn-tanh", "--plot")
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in run_dir(tmp_path).iterdir())
    assert names == ["config.json", "grad_decay.csv", "summary.csv"]
    assert "pip install -e '.[plot]'" in result.output and "rnn-tanh" in result.output


@pytest.mark.parametrize("args, needle", [
    (["--steps", "0"], "--steps"),
    (["--cells", "rnn-tanh,transformer"], "unknown cell 'transformer'"),
    (["--hidden", "0"], "--hidden"),
    (["--scale", "0"], "--scale"),
    (["--scale", "-1"], "--scale"),
    (["--scale", "nan"], "--scale"),
    (["--init", "he"], "--init"),
    (["--input", "corpus", "--input-size", "5"], "vocabulary"),
    (["--record-every", "2"], "--train-steps"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, args, needle):
    result = invoke(tmp_path, *args)
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and needle in errors[0], result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "grad-decay").exists()


def test_cuda_without_a_gpu_is_one_error_line(tmp_path):
    from numbanets.device import cuda_status

    if cuda_status()[0]:
        pytest.skip("a GPU (or the simulator) is usable here")
    result = invoke(tmp_path, "--device", "cuda", "--steps", "2", *SMALL)
    assert result.exit_code == 2
    assert result.output.startswith("Error: --device cuda") and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "grad-decay").exists()


def test_cli_choices_match_the_library():
    from runner import cli

    params = {p.name: p for p in cli.main.commands["grad-decay"].params}
    assert tuple(params["init"].type.choices) == gs.INITS
    assert params["cells"].default == ",".join(gs.DEFAULT_CELLS)
