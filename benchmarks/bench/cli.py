"""``dlcv-bench CKPT.pt [ARTIFACT ...]``: latency and task-level parity against the PyTorch original.

Thin: parses options, builds a :class:`BenchConfig`, calls :func:`run_benchmark`, prints
the headline table and where the report is.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from dlcv.runtime.backends import backend_names
from dlcv.runtime.cli_support import debug_option, handle_errors, parse_size
from dlcv.runtime.precision import PRECISION_NAMES, RUN_PRECISION_NAMES

from .config import DEFAULT_RESULTS_DIR, TORCH_VARIANT_NAMES, BenchConfig, parse_int_list, parse_name_list


# fmt: off
@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("artifacts", nargs=-1, type=str)
@click.option("--data", default=None, metavar="DIR|demo",
              help="Dataset folder, opened as the checkpoint recorded it (val split, else test, train), a folder of images, or 'demo'. Default: synthetic images.")
@click.option("--backends", "--backend", "backends", default=None, metavar="LIST",
              help=f"Backends to run, from {','.join(backend_names())}. Each model file runs on every one of them that "
                   "opens it: '--backend onnxruntime' runs an .onnx on onnxruntime only, '--backends onnxruntime,openvino' "
                   "on both; 'torch' adds the PyTorch baselines. Default: every PyTorch baseline, and each file on every "
                   "installed backend that opens it and runs on --device (on the CPU an .onnx on onnxruntime and "
                   "OpenVINO). PyTorch eager FP32 always runs: it is the reference.")
@click.option("--torch-variants", default=None, metavar="LIST",
              help="PyTorch baselines besides eager FP32 (default: all; autocast and cuda_graphs need --device cuda): "
                   "channels_last, autocast, cuda_graphs, compile (torch.compile, compiled once per input shape, its "
                   "compile time reported apart). E.g. --torch-variants channels_last skips the compilation.")
@click.option("--batch-sizes", default="1,8", show_default=True, metavar="LIST", help="Batch sizes to time.")
@click.option("--shape", default=None, metavar="HxW",
              help="Latency input size (default: the preprocessing's fixed size, else the first image's, else 224x224).")
@click.option("--warmup", type=int, default=3, show_default=True, help="Untimed calls per backend and batch size.")
@click.option("--iters", type=int, default=20, show_default=True, help="Timed calls per backend and batch size.")
@click.option("--rounds", type=int, default=5, show_default=True, help="Interleaved rounds the timed calls are split into.")
@click.option("--device", default="cpu", show_default=True, help="cpu or cuda[:N] (GPU baselines: autocast, CUDA graphs).")
@click.option("--precisions", default=",".join(PRECISION_NAMES), show_default=True, metavar="LIST",
              help="ONNX precisions to export when no artifact is given, and run precisions: bf16 runs the FP32 "
                   "file in BF16 on each backend that can (OpenVINO, on CPUs with AVX512-BF16 or AMX-BF16).")
@click.option("--images", type=int, default=32, show_default=True, help="Images compared for parity (and INT8 calibration).")
@click.option("--e2e-images", type=int, default=16, show_default=True,
              help="Image files run through the end-to-end split (0: skip).")
@click.option("--bootstrap", type=int, default=1000, show_default=True, help="Bootstrap resamples for the 95% intervals.")
@click.option("--tie-margin", type=float, default=None, help="Near-tie logit margin (default: per precision).")
@click.option("--threads", type=int, default=None, help="Threads for PyTorch and each backend (default: all cores).")
@click.option("--ceiling-size", type=int, default=None, metavar="N",
              help="Matrix size of the FP32 matmul ceiling (default: 2048 on the CPU, 8192 on a GPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for synthetic images and the bootstrap.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_RESULTS_DIR, show_default=True,
              help="Parent folder of the results folder.")
@click.option("--name", default=None, help="Results folder name under --out (default: <arch>-<H>x<W>-<device>).")
@click.option("--note", default=None, help="A sentence added to the report's notes (e.g. 'untrained weights').")
@debug_option
@handle_errors
def main(checkpoint, artifacts, data, backends, torch_variants, batch_sizes, shape, warmup, iters, rounds, device, precisions, images,
         e2e_images, bootstrap, tie_margin, threads, ceiling_size, seed, out, name, note, debug):
    # fmt: on
    """Benchmark CHECKPOINT.pt and its deployed ARTIFACTs (.onnx, .plan, or a served model
    triton://HOST:PORT/NAME): latency, throughput, memory, FLOP/s against the machine's ceiling,
    and parity in task terms against PyTorch FP32. Without ARTIFACTs the ONNX files are exported
    into a temporary folder. By default every installed backend that opens a file runs it (an
    .onnx on onnxruntime and OpenVINO on the CPU), beside every PyTorch baseline; --backends and
    --torch-variants limit them. The report says where a peer beats dlcv's default backend."""
    from .report import headline_table, peer_sentences
    from .run import run_benchmark

    config = BenchConfig(
        checkpoint=checkpoint, artifacts=tuple(artifacts), data=data,
        backends=parse_name_list(backends, "--backends", backend_names()) if backends else None,
        torch_variants=parse_name_list(torch_variants, "--torch-variants", TORCH_VARIANT_NAMES) if torch_variants else None,
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"), shape=parse_size(shape, "--shape"),
        warmup=warmup, iters=iters, rounds=rounds, device=device,
        precisions=parse_name_list(precisions, "--precisions", PRECISION_NAMES + RUN_PRECISION_NAMES), images=images, e2e_images=e2e_images,
        bootstrap=bootstrap, tie_margin=tie_margin, seed=seed, threads=threads, ceiling_size=ceiling_size, out=out,
        name=name, note=note,
    )  # fmt: skip
    command = shlex.join(["dlcv-bench", *sys.argv[1:]]) if Path(sys.argv[0]).name == "dlcv-bench" else None
    result = run_benchmark(config, log=lambda line: click.echo(line, err=True), command=command)
    click.echo(headline_table(result))
    for sentence in peer_sentences(result):
        click.echo(sentence)
    failed = sum(1 for r in result.records if r["error"])
    if failed:
        click.echo(f"{failed} record(s) carry an error; see the report's 'Skipped and failed' section", err=True)
    click.echo(f"wrote {', '.join(str(p) for p in result.files.values())}")


if __name__ == "__main__":  # pragma: no cover
    main()
