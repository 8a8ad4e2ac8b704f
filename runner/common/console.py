"""click plumbing every command shares: one-line errors, hidden old spellings, which options were given.

Bad input is one line `Error: ...` and exit code 2, never a traceback:
ValueError/TypeError/DeviceUnavailable/OSError raised by a command become
InputError; click's own usage errors (bad option value, unknown option) are
shortened to one line by the Commands group. So does a MemoryError that gets
past a command's own estimate of what it will allocate (runner.common.footprint).
A second Ctrl-C during training (runs.Interrupt's SecondInterrupt), or one
where no training loop takes it as a request, is one line too, and exit code
130 like the first, not click's "Aborted!" and 1.
"""

from __future__ import annotations

import functools

import click
from click.core import ParameterSource

from numbanets.kernels.settings import SettingError


class InputError(click.ClickException):
    """Bad input: printed as one line `Error: ...`, exit code 2, no traceback."""

    exit_code = 2


class OneLineUsageError(click.UsageError):
    """A click usage error (bad option value, unknown option, missing argument) shown as one line:
    `Error: <what is wrong> (see 'nbnets CMD --help')` instead of click's usage block."""

    def show(self, file=None):
        hint = f" (see '{self.ctx.command_path} --help')" if self.ctx is not None else ""
        click.echo(f"Error: {self.format_message()}{hint}", file=file, err=True)


def _one_line(exc: click.UsageError) -> OneLineUsageError:
    one = OneLineUsageError(exc.format_message(), exc.ctx)
    one.exit_code = exc.exit_code
    return one


class Commands(click.Group):
    """The nbnets group: usage errors of the group and of every command are one line (exit code 2)."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:
            raise _one_line(exc) from None

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except OneLineUsageError:
            raise
        except click.UsageError as exc:  # a command's options are parsed here
            raise _one_line(exc) from None
        except SettingError as exc:  # NUMBANETS_BLAS / NUMBANETS_RECURRENT_GEMM, read when the kernels load
            raise _one_line(click.UsageError(str(exc), ctx)) from None


class AliasedOption(click.Option):
    """An option with old spellings that still work but no longer show in --help (`hidden_aliases`)."""

    def __init__(self, *args, hidden_aliases=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def _shown(self, method, ctx):
        every = self.opts
        self.opts = [name for name in every if name not in self.hidden_aliases]
        try:
            return method(ctx)
        finally:
            self.opts = every

    def get_help_record(self, ctx):
        return self._shown(super().get_help_record, ctx)

    def get_error_hint(self, ctx):
        """Errors name the option as --help shows it, not its hidden old spelling."""
        return self._shown(super().get_error_hint, ctx)


def manual(command: str) -> str:
    """The last line of a command's --help: where its manual is."""
    return f"Manual: docs/commands/{command}.md"


def given_options(ctx: click.Context, options: dict) -> set[str]:
    """The options set on the command line (or by environment), not left at their defaults."""
    return {name for name in options
            if ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)}


STOPPED = "stopped by Ctrl-C: nothing more is saved"


def user_errors(func):
    """Turn ValueError/TypeError/DeviceUnavailable/OSError/MemoryError into one-line exit-2 errors,
    and Ctrl-C that reaches the command (a second one during training: runs.SecondInterrupt;
    one outside a training loop) into one line and exit code 130."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        from numbanets.device import DeviceUnavailable  # start-up time: `nbnets --help` loads click alone

        try:
            return func(*args, **kwargs)
        except (ValueError, TypeError, DeviceUnavailable) as exc:
            raise InputError(str(exc)) from None
        except OSError as exc:  # a missing, unreadable or unwritable path the command was given
            target = f": {exc.filename}" if exc.filename else ""
            raise InputError(f"{exc.strerror or exc}{target}") from None
        except MemoryError as exc:  # numpy's says what it could not allocate
            raise InputError(f"out of memory: {exc}" if str(exc) else "out of memory") from None
        except KeyboardInterrupt as exc:  # Ctrl-C where no runs.Interrupt turns it into a request
            from runner.common.runs import SecondInterrupt  # start-up time: runs loads numpy

            click.echo(str(exc) if isinstance(exc, SecondInterrupt) else STOPPED, err=True)
            raise click.exceptions.Exit(130) from None

    return wrapper
