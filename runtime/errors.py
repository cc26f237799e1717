"""The toolkit's error types: mistakes a user can act on, reported without a traceback."""

import difflib


class DlcvError(Exception):
    """A user-facing problem: the message names what was wrong, where, and what to do.

    The CLIs turn it into one line on stderr and exit code ``exit_code``.
    """

    exit_code = 1


class DlcvUsageError(DlcvError):
    """Wrong or conflicting command-line options (exit code 2, like click's usage errors)."""

    exit_code = 2


class MissingDependencyError(DlcvError):
    """An optional package (TensorRT, onnxruntime-gpu, torch...) needed for this request is absent."""

    exit_code = 2


class BackendLostError(DlcvError):
    """The model's server, cluster or device went away during a run (a served model gone, a
    connection that stays refused): a failure of the run, not of the images it was given.
    ``dlcv-infer`` stops after the requests in flight and keeps what it wrote."""


def first_line(exc: BaseException, limit: int = 300) -> str:
    """The first non-empty line of an exception's message (its type name when it has none)."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()[:limit]
    return type(exc).__name__


def unknown_choice(kind: str, name: str, known) -> str:
    """``unknown <kind> 'x' (did you mean 'y'?); choose one of: ...`` for a name not in ``known``."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown {kind} {name!r}{hint}; choose one of: {', '.join(known)}"
