"""nbnets sweep, the sweep folder: OUT/sweep/<timestamp>-<id>/.

    sweep.json     the command, grid, fixed options, seeds, where it ran (scheduler, dashboard,
                   workers, threads) and the versions of dask, distributed and numbanets
    sweep.csv      one row per finished run: run, the grid values, seed, status (done|failed),
                   resumed_at (the checkpoint's step/epoch a retried run resumed from), wall_s,
                   worker, then the run's headline numbers under analyse's names
    failures.csv   run, error (one line)
    runs/<run>/    each run's own folder, file for file what the command alone writes, plus
                   output.txt (what it printed)

Every file is written atomically; a run folder appears whole (written beside and
renamed) or not at all. A run that was stopped with the sweep (Ctrl-C) may leave
runs/<run>/ holding its last checkpoint only: `--resume` continues it from there.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from runner.analyse.headline import headline
from runner.common import runs as run_files
from runner.sweep.worker import Outcome, unzip_folder, zip_folder

SWEEP_FILE, TABLE_FILE, FAILURES_FILE, RUNS = "sweep.json", "sweep.csv", "failures.csv", "runs"
RUN_COLUMNS = ["seed", "status", "resumed_at", "wall_s", "worker"]


class SweepFolder:
    def __init__(self, path: Path, grid_keys: list[str]):
        self.path = Path(path)
        self.grid_keys = list(grid_keys)
        self.rows: dict[str, dict] = {}      # run name -> its sweep.csv row
        self.failures: dict[str, str] = {}

    @classmethod
    def create(cls, out, grid_keys) -> SweepFolder:
        return cls(run_files.new_run_dir(out, "sweep"), grid_keys)

    @classmethod
    def open(cls, path) -> tuple[SweepFolder, dict]:
        """An existing sweep folder (for --resume) and its sweep.json; ValueError when it is not one."""
        path = Path(path)
        try:
            settings = run_files.read_json(path / SWEEP_FILE)
        except (OSError, ValueError) as exc:
            raise ValueError(f"--resume {path}: not a sweep folder ({SWEEP_FILE}: {exc})") from None
        if settings.get("command") != "sweep" or "grid" not in settings:
            raise ValueError(f"--resume {path}: {SWEEP_FILE} is not from nbnets sweep")
        folder = cls(path, list(settings["grid"]))
        table = path / TABLE_FILE
        if table.is_file():
            frame = pd.read_csv(table, keep_default_na=False, dtype=str)
            for row in frame.to_dict("records"):
                if row.get("status") == "done":
                    folder.rows[row["run"]] = row
        return folder, settings

    def run_dir(self, name: str) -> Path:
        return self.path / RUNS / name

    def write_settings(self, settings: dict) -> None:
        run_files.write_json(self.path / SWEEP_FILE, settings)

    def partial(self, name: str) -> bytes | None:
        """The zipped partial folder of a run stopped with the sweep (its checkpoint), if there is one."""
        folder = self.run_dir(name)
        if name in self.rows or not (folder / "checkpoint.npz").is_file():
            return None
        return zip_folder(folder)

    def save_partial(self, name: str, data: bytes) -> None:
        self._replace(name, lambda staging: unzip_folder(data, staging))

    def _replace(self, name: str, fill) -> None:
        final = self.run_dir(name)
        staging = final.with_name(f".{name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        fill(staging)
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)

    def record(self, outcome: Outcome, point: dict, seed: int) -> dict:
        """Write a finished run's files and its sweep.csv row (with its headline numbers); return the row."""

        def fill(staging: Path):
            for relative, data in outcome.files.items():
                target = staging / relative
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)

        self._replace(outcome.name, fill)
        row = {"run": outcome.name, **point, "seed": seed, "status": outcome.status,
               "resumed_at": outcome.resumed_at, "wall_s": round(outcome.wall_s, 3), "worker": outcome.worker}
        if outcome.status == "done":
            try:
                row.update(headline(self.run_dir(outcome.name)))
            except ValueError as exc:
                outcome.status, outcome.error = "failed", f"its run folder cannot be read: {exc}"
                row["status"] = "failed"
        if outcome.status == "failed":
            self.failures[outcome.name] = outcome.error
        else:
            self.failures.pop(outcome.name, None)
        self.rows[outcome.name] = row
        return row

    def write_tables(self, order: list[str]) -> None:
        """sweep.csv (runs in plan order) and failures.csv."""
        rows = [self.rows[name] for name in order if name in self.rows]
        fixed = ["run", *self.grid_keys, *RUN_COLUMNS]
        metrics = list(dict.fromkeys(k for row in rows for k in row if k not in fixed))
        frame = pd.DataFrame(rows, columns=fixed + metrics)
        run_files.write_csv(self.path / TABLE_FILE, frame, float_format="%.9g")
        failed = [{"run": name, "error": self.failures[name]} for name in order if name in self.failures]
        run_files.write_csv(self.path / FAILURES_FILE, pd.DataFrame(failed, columns=["run", "error"]))

    def counts(self) -> tuple[int, int]:
        done = sum(1 for row in self.rows.values() if row["status"] == "done")
        return done, sum(1 for row in self.rows.values() if row["status"] == "failed")
