"""What every dlcv command shares: DlcvError -> one line on stderr and its exit code; --debug for tracebacks."""
from __future__ import annotations

import functools
import re
import sys
from typing import Callable

import click

from .errors import DlcvError, DlcvUsageError

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


def parse_size(text: str | None, option: str = "--input-size") -> tuple[int, int] | None:
    """``"HxW"`` or a single ``"S"`` -> (H, W); None stays None."""
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX×,]\s*(\d+)\s*)?", text)
    if not m or int(m.group(1)) < 1 or (m.group(2) is not None and int(m.group(2)) < 1):
        raise DlcvUsageError(f"{option} must look like HxW (e.g. 224x224) or a single size, not {text!r}")
    h = int(m.group(1))
    return h, int(m.group(2) or h)
