"""nbnets sweep, the plan: --grid, --set and --seeds checked against the command's own click options.

    --grid KEY=V1,V2,...   repeatable; the runs are the product of the grids, in the order given
    --set KEY=V            the same value in every run
    --seeds A-B | A,B,C    every grid point once per seed (the command's --seed)

A KEY is one of the command's option names, with or without "--", "-" or "_"
(batch-size, --batch-size, batch_size). Before anything runs, every value is
parsed by the command's click option (so it is rejected exactly as on the
command line, with click's message naming the valid choices or range), then
every run's whole command line is parsed once more. A value that click accepts
but the command rejects when it runs (an arch spec with a typo) fails only
that run.

File options (--corpus, --data, --init-from) are read here and their bytes sent
with the run, so the workers need no shared file system.
"""

from __future__ import annotations

import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path

import click
from click.core import ParameterSource

from runner.common.lists import parse_seeds
from runner.sweep import worker

EXPERIMENTS = tuple(worker.EXPERIMENTS)  # the commands a sweep runs

# option -> why a sweep refuses it
REFUSED = {
    "out": "every run is written under the sweep's own folder (sweep --out)",
    "resume": "continue a sweep with `nbnets sweep --resume SWEEP_DIR`",
    "quiet": "the sweep shows one progress bar for all its runs (sweep --quiet)",
    "threads": "the sweep sets every run's threads (sweep --threads-per-worker)",
    "seed": "give the seeds with sweep --seeds",
}
# option -> why it may not vary inside one sweep (--set is fine)
NOT_IN_GRID = {"device": "every run of a sweep runs on the same kind of device; use --set device=..."}


@dataclass(frozen=True)
class Run:
    """One run of the sweep: its name (the folder under runs/), its grid values and seed, and the
    command's parameters as click parsed them (`params`), with the names set explicitly (`given`)."""

    index: int
    name: str
    point: dict          # grid key -> value, as given
    seed: int
    params: dict
    given: frozenset


@dataclass
class Plan:
    experiment: str
    grid: dict           # key -> [values], as given
    fixed: dict          # key -> value
    seeds: list
    runs: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)   # file path as given -> its bytes

    def describe(self) -> dict:
        return {"experiment": self.experiment, "grid": self.grid, "fixed": self.fixed, "seeds": self.seeds}


def _split_pair(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = str(text).partition("=")
    if not sep or not key.strip():
        raise ValueError(f"{flag} {text}: expected KEY=VALUE{',VALUE...' if flag == '--grid' else ''}")
    return key.strip(), value.strip()


def _normal(name: str) -> str:
    return name.lstrip("-").replace("_", "-").lower()


def _options(command: click.Command) -> dict[str, click.Option]:
    """Every spelling of every option of `command` (normalised) -> the option."""
    spellings = {}
    for param in command.params:
        if isinstance(param, click.Option) and param.name != "help":
            for name in (*param.opts, param.name):
                spellings[_normal(name)] = param
    return spellings


def canonical_key(command: click.Command, key: str, flag: str) -> tuple[str, click.Option]:
    """(the option's name as --help shows it, without '--'; the option) of a sweep KEY; ValueError if none."""
    spellings = _options(command)
    param = spellings.get(_normal(key))
    if param is None:
        shown = sorted({_normal(p.opts[0]) for p in spellings.values()} - set(REFUSED))
        close = difflib.get_close_matches(_normal(key), shown, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise ValueError(f"{flag} {key}: {command.name} has no option {key!r}{hint}; its options: {', '.join(shown)}")
    name = _normal(param.opts[0])
    if param.name in REFUSED:
        raise ValueError(f"{flag} {key}: --{name} cannot be set in a sweep: {REFUSED[param.name]}")
    if flag == "--grid" and param.name in NOT_IN_GRID:
        raise ValueError(f"--grid {key}: {NOT_IN_GRID[param.name]}")
    return name, param


def _arguments(param: click.Option, value: str) -> list[str]:
    """The command-line words that set `param` to `value`."""
    if param.is_flag and param.is_bool_flag:
        on = click.BOOL.convert(value, param, None)
        if on:
            return [param.opts[0]]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    return [param.opts[0], value]


def _parse(command: click.Command, args: list[str]) -> click.Context:
    """Parse `args` as `command` would. Under the running `nbnets sweep` context (when there is one): click
    caches a command's help option with the first context's help names, so a bare context would leave the
    command without its -h spelling for the rest of the process."""
    return command.make_context(command.name, list(args), parent=click.get_current_context(silent=True))


def _check_value(command, flag, key, param, value):
    try:
        _parse(command, _arguments(param, value))
    except click.BadParameter as exc:
        raise ValueError(f"{flag} {key}={value}: {exc.format_message()}") from None
    except click.ClickException as exc:
        raise ValueError(f"{flag} {key}={value}: {exc.format_message()}") from None


def _run_name(index: int, point: dict, seed: int) -> str:
    words = [f"{key}{value}" for key, value in point.items()] + [f"seed{seed}"]
    name = re.sub(r"[^A-Za-z0-9.+-]+", "_", "-".join(words))[:80].strip("_-")
    return f"{index:03d}-{name}"


def _file_options(command: click.Command) -> set[str]:
    return {p.name for p in command.params
            if isinstance(p, click.Option) and isinstance(p.type, click.Path) and not p.type.dir_okay}


def plan(command: click.Command, grids: tuple[str, ...], sets: tuple[str, ...], seeds: str) -> Plan:
    """Every run of the sweep, each command line parsed by `command`; ValueError on the first bad input."""
    if command.name not in EXPERIMENTS:
        raise ValueError(f"nbnets sweep runs {', '.join(EXPERIMENTS)}, not {command.name}")
    grid, fixed, options = {}, {}, {}
    for text in grids:
        key, values = _split_pair(text, "--grid")
        name, param = canonical_key(command, key, "--grid")
        listed = [v.strip() for v in values.split(",")]
        if not all(listed):
            raise ValueError(f"--grid {text}: an empty value")
        if name in grid:
            raise ValueError(f"--grid {key}: given twice; list every value in one --grid {name}=V1,V2,...")
        grid[name], options[name] = list(dict.fromkeys(listed)), param
    for text in sets:
        key, value = _split_pair(text, "--set")
        name, param = canonical_key(command, key, "--set")
        if name in grid or name in fixed:
            raise ValueError(f"--set {key}: {name} is already set by " + ("--grid" if name in grid else "--set"))
        fixed[name], options[name] = value, param
    seed_list = parse_seeds(seeds)
    for flag, pairs in (("--set", fixed.items()),
                        ("--grid", ((k, v) for k, vs in grid.items() for v in vs))):
        for key, value in pairs:
            _check_value(command, flag, key, options[key], value)

    files = _file_options(command)
    result = Plan(command.name, grid, fixed, seed_list)
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    for index, (point, seed) in enumerate(itertools.product(points, seed_list)):
        args = [word for key, value in {**fixed, **point}.items() for word in _arguments(options[key], value)]
        args += ["--seed", str(seed)]
        try:
            ctx = _parse(command, args)
        except click.ClickException as exc:
            shown = " ".join(f"{k}={v}" for k, v in point.items())
            raise ValueError(f"the run {shown} seed {seed}: {exc.format_message()}") from None
        given = frozenset(n for n in ctx.params if ctx.get_parameter_source(n) == ParameterSource.COMMANDLINE)
        result.runs.append(Run(index, _run_name(index, point, seed), point, seed, dict(ctx.params), given))
        for name in files & given:
            path = ctx.params[name]
            if path not in result.inputs:
                try:
                    result.inputs[path] = Path(path).read_bytes()
                except OSError as exc:
                    raise ValueError(f"--{name.replace('_', '-')} {path}: {exc.strerror or exc}") from None
    return result
