"""`nbnets analyse` through click's CliRunner, on run folders made by tiny real runs.

Every summary value is recomputed here from the CSVs with pandas and compared with
what analyse prints (read back from --format csv); the three formats parse; the
figures are written; every bad input is one line `Error: ...` with exit code 2.
"""

from __future__ import annotations

import io
import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from runner.analyse import read as analyse
from runner.cli import main

CHARLM = ["--steps", "12", "--layers", "1", "--seq-len", "8", "--batch-size", "4", "--eval-every", "5",
          "--sample-length", "0", "--quiet"]
CNN = ["--arch", "conv4x3x3-relu-pool2-fc4", "--epochs", "2", "--batch-size", "8", "--no-plot", "--quiet"]
BENCH_CASES = [("conv2d", "8x3x32x32", 1.5, 1.7, 12.0), ("lstm", "T50xN32xH128", 4.0, 0.8, 30.0)]


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def only_run(folder: Path) -> Path:
    (run,) = [p for p in folder.iterdir() if p.is_dir()]
    return run


def write_bench(folder: Path, cases, config: bool = True) -> Path:
    """A bench run folder with the documented columns: numbanets, numpy and torch rows per case."""
    folder.mkdir(parents=True)
    rows = []
    for case, shape, ms, vs_torch, vs_numpy in cases:
        common = dict(case=case, shape=shape, device="cpu", threads=2, peak_rss_mb=200.0)
        rows.append(dict(common, impl="numbanets", median_ms=ms, min_ms=0.9 * ms, max_ms=1.2 * ms, gflops=8.0,
                         fraction_of_peak=0.25, speedup_vs_torch=vs_torch, speedup_vs_numpy=vs_numpy))
        for impl, factor in (("numpy", vs_numpy), ("torch", vs_torch)):
            rows.append(dict(common, impl=impl, median_ms=ms * factor, min_ms=ms * factor, max_ms=ms * factor,
                             gflops=8.0 / factor, fraction_of_peak=0.25 / factor, speedup_vs_torch=math.nan,
                             speedup_vs_numpy=math.nan))
    pd.DataFrame(rows, columns=analyse.BENCH_COLUMNS).to_csv(folder / "bench.csv", index=False)
    if config:
        (folder / "config.json").write_text(json.dumps({"command": "bench", "created_utc": "2026-01-01T00:00:00",
                                                        "options": {"repeat": 5}, "versions": {}}))
    return folder


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """results/ with two train-charlm runs (hidden 8 and 12), one train-cnn run, one grad-decay
    run and two hand-made bench runs; plus a tiny corpus and image set beside it."""
    root = tmp_path_factory.mktemp("analyse")
    out = root / "results"
    corpus = root / "corpus.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 60)
    rng = np.random.default_rng(0)
    np.savez(root / "images.npz", x=rng.normal(size=(40, 1, 8, 8)).astype(np.float32), y=np.arange(40) % 4)
    for hidden in (8, 12):
        ok("train-charlm", "--corpus", corpus, "--hidden", hidden, "--out", out / "charlm" / str(hidden), *CHARLM)
    ok("train-cnn", "--data", root / "images.npz", "--out", out, *CNN)
    ok("grad-decay", "--steps", "5", "--hidden", "6", "--batch", "2", "--no-plot", "--out", out)
    write_bench(out / "bench" / "20260101-000000-aaaaaa", BENCH_CASES)
    slower = [(case, shape, 2 * ms, vs_torch / 2, vs_numpy / 2) for case, shape, ms, vs_torch, vs_numpy in BENCH_CASES]
    write_bench(out / "bench" / "20260102-000000-bbbbbb", slower)
    return out


def charlm_runs(results):
    return [only_run(results / "charlm" / h / "train-charlm") for h in ("8", "12")]


def sections(*args) -> dict[str, pd.DataFrame]:
    """analyse --format csv, read back with pandas and split by the `section` column."""
    result = ok("analyse", *args, "--format", "csv")
    frame = pd.read_csv(io.StringIO(result.stdout))
    assert frame.columns[0] == "section"
    out = {}
    for kind, part in frame.groupby("section", sort=False):
        part = part.drop(columns="section").dropna(axis=1, how="all")
        out[kind] = part.set_index("run", drop=False) if "run" in part else part
    return out


def test_expected_columns_are_the_writers_columns():
    from numbanets import gradstats
    from runner.charlm import options as charlm
    from runner.cnn import options as cnn

    assert analyse.CHARLM_COLUMNS == charlm.METRIC_COLUMNS
    assert analyse.CNN_COLUMNS == cnn.METRIC_COLUMNS
    assert analyse.DECAY_METRICS == list(gradstats.SUMMARY_COLUMNS)
    assert set(analyse.GRAD_DECAY_COLUMNS) - {"cell", "seed", "phase", "steps", "t"} <= set(gradstats.STEP_COLUMNS)


def test_charlm_summary_values_and_differing_options(results):
    table = sections(results / "charlm")["train-charlm"]
    assert len(table) == 2
    assert "hidden" in table and "layers" not in table and "seq_len" not in table  # only what differs
    for run, hidden in zip(charlm_runs(results), (8, 12)):
        m = pd.read_csv(run / "metrics.csv")
        row = table.loc[run.name]
        assert row["hidden"] == hidden
        assert row["steps"] == m["step"].iloc[-1] == 12
        assert row["final_train_loss"] == pytest.approx(m["train_loss"].iloc[-1], rel=1e-12)
        assert row["final_val_loss"] == pytest.approx(m["val_loss"].dropna().iloc[-1], rel=1e-12)
        assert row["best_val_loss"] == pytest.approx(m["val_loss"].min(), rel=1e-12)
        assert row["best_step"] == m.loc[m["val_loss"].idxmin(), "step"]
        assert row["chars_per_s"] == pytest.approx(m["chars_per_s"].median(), rel=1e-12)
        assert row["elapsed_s"] == pytest.approx(m["elapsed_s"].iloc[-1], rel=1e-12)


def test_cnn_summary_values(results):
    run = only_run(results / "train-cnn")
    m = pd.read_csv(run / "metrics.csv")
    row = sections(run)["train-cnn"].loc[run.name]
    assert (row["epochs"], row["steps"]) == (2, m["step"].iloc[-1])
    for column in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert row[f"final_{column}"] == pytest.approx(m[column].iloc[-1], rel=1e-12)
    assert row["best_test_loss"] == pytest.approx(m["test_loss"].min(), rel=1e-12)
    assert row["best_loss_epoch"] == m.loc[m["test_loss"].idxmin(), "epoch"]
    assert row["best_test_acc"] == pytest.approx(m["test_acc"].max(), rel=1e-12)
    assert row["best_acc_epoch"] == m.loc[m["test_acc"].idxmax(), "epoch"]
    assert row["images_per_s"] == pytest.approx(m["images_per_s"].median(), rel=1e-12)
    assert row["elapsed_s"] == pytest.approx(m["elapsed_s"].iloc[-1], rel=1e-12)


def test_grad_decay_rows_and_the_summary_derived_from_grad_decay_csv(results):
    run = only_run(results / "grad-decay")
    summary = pd.read_csv(run / "summary.csv")
    table = sections(run)["grad-decay"].reset_index(drop=True)
    assert list(table["cell"]) == list(summary["cell"]) == ["rnn-tanh", "rnn-sigmoid", "rnn-relu", "lstm"]
    for column in ("rho", "lambda1", "lambda1_gamma", "effective_rate", "decay_factor", "steps_to_1e-3"):
        assert np.allclose(table[column], summary[column], rtol=1e-12, equal_nan=True), column
    assert np.isnan(table.loc[3, "rho"]) and table.loc[1, "gamma"] == 0.25
    # grad_decay.csv alone: the decay fit and effective rate, recomputed as gradstats defines them
    steps = pd.read_csv(run / "grad_decay.csv")
    alone = sections(run / "grad_decay.csv")["grad-decay"].reset_index(drop=True)
    assert alone["rho"].isna().all() if "rho" in alone else True
    for i, cell in enumerate(summary["cell"]):
        g = steps[steps["cell"] == cell].sort_values("t")
        slope = np.polyfit(g["t"], np.log10(g["grad_norm"]), 1)[0]
        assert alone.loc[i, "decay_factor"] == pytest.approx(10 ** -slope, rel=1e-9)
        assert alone.loc[i, "effective_rate"] == pytest.approx(g["jac_spec"].iloc[0] ** (1 / 4), rel=1e-12)
        assert alone.loc[i, "effective_rate"] == pytest.approx(summary.loc[i, "effective_rate"], rel=1e-9)


def test_bench_speedups_one_run_and_side_by_side(results):
    a, b = sorted((results / "bench").iterdir())
    one = sections(a / "bench.csv")["bench"]
    raw = pd.read_csv(a / "bench.csv")
    mine = raw[raw["impl"] == "numbanets"].reset_index(drop=True)
    assert list(one["case"]) == list(mine["case"])
    for column in ("median_ms", "speedup_vs_torch", "speedup_vs_numpy", "gflops", "fraction_of_peak"):
        assert np.allclose(one[column], mine[column]), column
    both = sections(results / "bench")["bench"]
    raw_b = pd.read_csv(b / "bench.csv").query("impl == 'numbanets'").reset_index(drop=True)
    assert len(both) == 2 and list(both["case"]) == ["conv2d", "lstm"]
    for column in ("median_ms", "speedup_vs_torch", "speedup_vs_numpy"):
        assert np.allclose(both[f"{column}@aaaaaa"], mine[column]) and np.allclose(both[f"{column}@bbbbbb"],
                                                                                  raw_b[column])


def test_group_by_an_option_aggregates_the_runs(results):
    runs = charlm_runs(results)
    metrics = [pd.read_csv(r / "metrics.csv") for r in runs]
    best = [m["val_loss"].min() for m in metrics]
    by_cell = sections(results / "charlm", "--group-by", "cell")["train-charlm"].reset_index(drop=True)
    assert list(by_cell["cell"]) == ["lstm"] and by_cell.loc[0, "count"] == 2  # same in both: still a key
    assert by_cell.loc[0, "best_val_loss_mean"] == pytest.approx(np.mean(best), rel=1e-12)
    assert by_cell.loc[0, "best_val_loss_min"] == pytest.approx(min(best), rel=1e-12)
    assert by_cell.loc[0, "best_val_loss_max"] == pytest.approx(max(best), rel=1e-12)
    by_hidden = sections(results / "charlm", "--group-by", "hidden")["train-charlm"].reset_index(drop=True)
    assert list(by_hidden["hidden"]) == [8, 12] and list(by_hidden["count"]) == [1, 1]
    assert np.allclose(by_hidden["final_val_loss_mean"], [m["val_loss"].dropna().iloc[-1] for m in metrics])


def test_whole_results_folder_all_formats(results):
    everything = sections(results, results / "train-cnn")  # the cnn run reached twice counts once
    assert list(everything) == ["train-charlm", "train-cnn", "grad-decay", "bench"]
    assert [len(everything[k]) for k in everything] == [2, 1, 4, 2]
    run_names = [r.name for r in charlm_runs(results)]
    table = ok("analyse", results).stdout
    assert "train-charlm: 2 runs" in table and all(name in table for name in run_names)
    lines = table.splitlines()
    head = lines.index(next(line for line in lines if line.startswith("run ") and "hidden" in line))
    assert len({len(line) for line in lines[head:head + 3]}) <= 2  # aligned rows
    markdown = ok("analyse", results, "--format", "markdown").stdout
    tables = [block for block in markdown.split("\n\n") if block.startswith("|")]
    assert len(tables) == 4
    for block in tables:
        rows = [[c.strip() for c in line.strip("|").split("|")] for line in block.strip().splitlines()]
        assert all(len(r) == len(rows[0]) for r in rows) and set("".join(rows[1])) <= set("-:")
    charlm_md = pd.DataFrame([r for r in [[c.strip() for c in line.strip("|").split("|")]
                                          for line in tables[0].splitlines()[2:]]],
                             columns=[c.strip() for c in tables[0].splitlines()[0].strip("|").split("|")])
    assert sorted(charlm_md["hidden"]) == ["12", "8"] and set(charlm_md["run"]) == set(run_names)


def test_plots_are_written(results, tmp_path):
    plots = tmp_path / "figures"
    result = ok("analyse", results, "--plot", plots)
    names = ["train-charlm_loss.png", "train-cnn_loss.png", "grad-decay.png", "bench_speedup.png"]
    for name in names:
        data = (plots / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000, name
        assert f"wrote {plots / name}" in result.stdout
    assert sorted(p.name for p in plots.iterdir()) == sorted(names)  # no temporary files left
    as_csv = ok("analyse", results / "bench", "--plot", tmp_path / "more", "--format", "csv")
    assert "wrote" in as_csv.stderr and "wrote" not in as_csv.stdout  # stdout stays one CSV
    assert len(pd.read_csv(io.StringIO(as_csv.stdout))) == 2


@pytest.fixture
def bad(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "foreign.csv").write_text("a,b\n1,2\n")
    (tmp_path / "blank.csv").write_text("")
    (tmp_path / "binary.csv").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text(json.dumps({"command": "shapes"}))
    return tmp_path


@pytest.mark.parametrize("args, needle", [
    (["{bad}/missing"], "no such file or folder"),
    (["{bad}/empty"], "no numbanets runs found"),
    (["{bad}/foreign.csv"], "is not a numbanets table (expected"),
    (["{bad}/blank.csv"], "cannot read"),
    (["{bad}/binary.csv"], "cannot read"),
    (["{bad}/other"], "not one analyse reads"),
    (["{results}/train-cnn", "--group-by", "nope"], "--group-by nope: no such column; available:"),
])
def test_bad_input_is_one_line_exit_2(bad, results, args, needle):
    result = invoke("analyse", *[a.format(bad=bad, results=results) for a in args])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], result.output
    assert "Traceback" not in result.output


def test_plot_without_matplotlib_is_one_line_exit_2(results, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    result = invoke("analyse", results / "bench", "--plot", tmp_path / "figures")
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "pip install -e '.[plot]'" in result.output and not (tmp_path / "figures").exists()


def test_a_broken_run_inside_a_results_folder_is_skipped_with_a_note(tmp_path):
    broken = tmp_path / "train-charlm" / "20260101-000000-cccccc"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text(json.dumps({"command": "train-charlm", "options": {}}))
    only_broken = invoke("analyse", tmp_path)
    assert only_broken.exit_code == 2 and "1 skipped" in only_broken.stderr, only_broken.output
    write_bench(tmp_path / "bench" / "20260101-000000-dddddd", BENCH_CASES)
    result = ok("analyse", tmp_path)
    assert "skipped:" in result.stderr and "without its metrics.csv" in result.stderr
    assert "bench: 1 run" in result.stdout and "train-charlm" not in result.stdout


def test_single_csvs_are_recognised_by_their_columns(results, tmp_path):
    run = charlm_runs(results)[0]
    from_folder = sections(run)["train-charlm"]
    from_csv = sections(run / "metrics.csv")["train-charlm"]  # joins its folder's config.json
    pd.testing.assert_frame_equal(from_folder, from_csv)
    loose = tmp_path / "my-cnn-metrics.csv"
    loose.write_bytes((only_run(results / "train-cnn") / "metrics.csv").read_bytes())
    table = sections(loose)["train-cnn"]
    assert list(table["run"]) == ["my-cnn-metrics.csv"] and table["epochs"].iloc[0] == 2


@pytest.mark.skipif("bench" not in main.commands, reason="nbnets bench is not there yet")
def test_a_real_bench_run(tmp_path):
    ok("bench", "--tiny", "--repeat", "1", "--out", tmp_path)
    run = only_run(tmp_path / "bench")
    raw = pd.read_csv(run / "bench.csv").query("impl == 'numbanets'").reset_index(drop=True)
    table = sections(run)["bench"].reset_index(drop=True)
    assert list(table["case"]) == list(raw["case"])
    assert np.allclose(table["median_ms"], raw["median_ms"])
    assert np.allclose(table["speedup_vs_numpy"], raw["speedup_vs_numpy"], equal_nan=True)
    assert ok("analyse", run, "--plot", tmp_path / "figures").exit_code == 0


def _cnn_run(folder: Path, run_id: str, init_from: str, lr: float) -> Path:
    run = folder / f"20261204-100000-{run_id}"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"command": "train-cnn", "options": {
        "arch": "digits", "init_from": init_from, "lr": lr, "epochs": 2, "seed": 0}}))
    rows = [{"epoch": e, "step": 45 * e, "train_loss": 1.0 / (e + 1), "train_acc": 0.5 + 0.1 * e,
             "test_loss": 1.1 / (e + 1), "test_acc": 0.5 + 0.1 * e, "images_per_s": 1000.0, "elapsed_s": e + 0.5}
            for e in range(3)]
    pd.DataFrame(rows).to_csv(run / "metrics.csv", index=False)
    return run


def test_figure_legends_stay_inside_the_figure_with_long_labels(tmp_path):
    """Runs that differ by a long --init-from path: the legend sits under the axes, inside the figure, and
    names each run by its id and the file name (the newcomer's figure had its legend off the left edge)."""
    pytest.importorskip("matplotlib")
    from runner.analyse import plots, summary

    deep = "/home/someone/experiments/2026/december/very-long-folder-name-for-the-snapshots/"
    runs = [_cnn_run(tmp_path, f"{i:06x}", f"{deep}model-{i}.json", 1e-3 * (i + 1)) for i in range(4)]
    sections = summary.build_sections(analyse.collect([str(r) for r in runs], note=lambda s: None))
    (cnn,) = [s for s in sections if s.kind == "train-cnn"]
    assert all(len(r.legend) < 60 and deep not in r.legend and "model-" in r.legend for r in cnn.runs)
    plt = plots.pyplot()
    fig = plots._cnn(plt, cnn, note=lambda s: None)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends
    box = fig.bbox
    for legend in legends:
        extent = legend.get_window_extent(renderer)
        assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1 and box.y0 - 1 <= extent.y0, (extent, box)
        for ax in fig.axes:  # and it covers no axes
            assert not extent.overlaps(ax.get_window_extent(renderer)) or legend in [ax.get_legend()]
    plt.close(fig)
