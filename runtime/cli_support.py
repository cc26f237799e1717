"""What every dlcv command shares: DlcvError -> one line on stderr and its exit code; --debug for tracebacks."""
from __future__ import annotations

import functools
import sys
from typing import Callable

import click

from .errors import DlcvError

debug_option = click.option("--debug", is_flag=True, help="Show the full traceback on errors.")


def handle_errors(func: Callable) -> Callable:
    """Wrap a click command body: a DlcvError becomes ``error: <message>`` and exit 1 (2 for usage).

    The wrapped function must accept a ``debug`` keyword (add :data:`debug_option`).
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        debug = kwargs.get("debug", False)
        try:
            return func(*args, **kwargs)
        except DlcvError as exc:
            if debug:
                raise
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
