"""``dlcv-serve REPO``: serve a ``dlcv-export --triton`` repository on the local tritonserver.

The server is the one ``make install-triton`` installs (the nvidia-pytriton wheel's binary,
CPU, Python backend only), started by :class:`~dlcv.runtime.triton.local_server.LocalTritonServer`,
which supplies what the bare binary needs (a backend folder, the library path, the stub's numpy<2
environment). Before it starts, every model's backend is checked against the ones this server
has; a model it cannot load is refused with the export flag that fits. It runs until Ctrl-C or
SIGTERM; a server that dies on its own ends the command with exit code 1, and in every case its
Python-backend stubs are ended with it.
"""
from __future__ import annotations

import signal
from pathlib import Path

import click

from ..cli_support import debug_option, handle_errors
from ..errors import DlcvError
from .local_server import LocalTritonServer, check_repository

DEFAULT_HTTP_PORT = 8000


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("repository", type=click.Path(file_okay=False, path_type=Path))
@click.option("--http-port", type=click.IntRange(min=1, max=65535), default=DEFAULT_HTTP_PORT, show_default=True,
              help="The HTTP port (dlcv-infer --engine triton://HOST:PORT/<arch>).")
@click.option("--http-address", default="127.0.0.1", show_default=True,
              help="The address to listen on (0.0.0.0: every interface).")
@click.option("--ready-timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds to wait for every model to load.")
@click.option("--log-verbose", type=click.IntRange(min=0), default=0, show_default=True,
              help="tritonserver's --log-verbose level (its log is shown when it fails).")
@debug_option
@handle_errors
def main(repository: Path, http_port: int, http_address: str, ready_timeout: float, log_verbose: int,
         debug: bool) -> None:  # fmt: skip
    """Serve the Triton model REPOSITORY (written by dlcv-export --triton) on the local tritonserver
    that `make install-triton` installs, until Ctrl-C."""
    models = check_repository(repository, LocalTritonServer.BACKENDS)
    server = LocalTritonServer(repository, http_port=http_port, http_address=http_address,
                               ready_timeout_s=ready_timeout, log_verbose=log_verbose)  # fmt: skip

    def stop(_signum, _frame) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        server.start()
        steps = [name for name, backend in models.items() if backend != "ensemble" and not name.endswith(("_preprocess", "_postprocess"))]
        click.echo(f"serving {len(models)} models of {repository} at http://{server.url} ({', '.join(sorted(models))})")
        for name in steps:
            click.echo(f"  dlcv-infer --engine triton://{server.url}/{name} IMAGES_DIR")
        click.echo("Ctrl-C stops the server", err=True)
        code = server.wait()
        raise DlcvError(f"tritonserver exited on its own (code {code}); its Python-backend stubs were ended:\n{server.log_tail()}")
    except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (stop)
        click.echo("stopping tritonserver", err=True)
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    main()
