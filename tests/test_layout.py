"""The layout issue's guarantees: the import contract holds and can fail, no oversized runner module,
and every command's --help is the one it had before the layout change plus its manual's path."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from runner.cli import main

ROOT = Path(__file__).resolve().parents[1]
HELP = Path(__file__).parent / "fixtures" / "help"
LINT_IMPORTS = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")

# Options renamed for consistency across commands (the old spelling still works, hidden from --help).
RENAMED = {"grad-decay": {"--batch INTEGER RANGE": "--batch-size INTEGER RANGE"}}


def _lint(cwd: Path, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = None
    if extra_path is not None:
        import os

        env = {**os.environ, "PYTHONPATH": str(extra_path)}
    return subprocess.run([LINT_IMPORTS], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_contract_names_every_layer_and_package():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = {c["type"]: c for c in config["contracts"]}
    layers = contracts["layers"]["layers"]
    assert layers[0] == "runner.cli" and layers[-2:] == ["runner.common", "numbanets"]
    commands = {p.name for p in (ROOT / "runner").iterdir() if (p / "__init__.py").is_file()} - {"common", "cli"}
    named = {name.strip().removeprefix("runner.") for layer in layers[1:-2] for name in layer.split("|")}
    assert commands <= named, f"command packages missing from the contract: {commands - named}"
    assert set(contracts["independence"]["modules"]) == {"numbanets.kernels.cpu", "numbanets.kernels.cuda"}
    assert set(contracts["acyclic_siblings"]["ancestors"]) == {"runner", "numbanets"}


def test_lint_imports_passes():
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


@pytest.mark.parametrize("plant, broken", [
    ("runner/common/runs.py", "runner: cli >"),                           # common importing upward
    ("runner/charlm/options.py", "no import cycles"),                     # a cycle inside a package
])
def test_lint_imports_fails_on_a_planted_violation(tmp_path, plant, broken):
    copy = tmp_path / "tree"
    copy.mkdir()
    shutil.copy(ROOT / "pyproject.toml", copy)
    for package in ("numbanets", "runner"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    target = copy / plant
    line = "import runner.cli  # planted\n" if "common" in plant else "import runner.charlm.train  # planted\n"
    target.write_text(target.read_text() + "\n" + line)
    done = _lint(copy, extra_path=copy)
    assert done.returncode != 0
    assert broken in done.stdout and "BROKEN" in done.stdout


def test_no_runner_module_is_oversized():
    sizes = {str(p.relative_to(ROOT)): len(p.read_text().splitlines()) for p in (ROOT / "runner").rglob("*.py")}
    assert sizes, "no runner modules found"
    assert {p: n for p, n in sizes.items() if n > 420} == {}


def _normal(line: str) -> str:
    return " ".join(line.split())


@pytest.mark.parametrize("command", [None, *sorted(main.commands)])
def test_help_is_unchanged_but_for_the_manual_line(command):
    name = command or "nbnets"
    before = (HELP / f"{name}.txt").read_text().splitlines()
    for old, new in RENAMED.get(name, {}).items():
        before = [line.replace(old, new) for line in before]
    result = CliRunner().invoke(main, ([command] if command else []) + ["--help"], terminal_width=80)
    assert result.exit_code == 0
    after = result.output.splitlines()
    if command is not None:
        assert after[-1].strip() == f"Manual: docs/commands/{command}.md"
        assert (ROOT / "docs" / "commands" / f"{command}.md").is_file()
    # every line of the old help, in order, is still there (whitespace aside): options may be added, none lost
    remaining = iter(_normal(line) for line in after)
    missing = [line for line in before if _normal(line) and not any(_normal(line) == got for got in remaining)]
    assert missing == []


def test_old_option_spellings_still_work(tmp_path):
    result = CliRunner().invoke(main, ["grad-decay", "--batch", "2", "--steps", "2", "--cells", "rnn-tanh",
                                       "--hidden", "3", "--no-plot", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = next(tmp_path.glob("grad-decay/*/config.json")).read_text()
    assert '"batch": 2' in config


def test_errors_name_the_option_as_help_shows_it():
    result = CliRunner().invoke(main, ["grad-decay", "--batch", "0"])
    assert result.exit_code == 2
    assert "'--batch-size'" in result.output and "'--batch'" not in result.output
