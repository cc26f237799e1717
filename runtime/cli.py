"""``dlcv-infer``: batch inference over an image folder, a video or a camera. Parses options and calls
:func:`run_inference` (folders) or :func:`~dlcv.runtime.video.run_video` (videos, cameras)."""
from __future__ import annotations

import os
from pathlib import Path

import click
import cv2

from .backends import all_devices, backend_names
from .cli_support import debug_option, handle_errors, parse_size
from .errors import DlcvError, DlcvUsageError
from .imageio import DEFAULT_MAX_PIXELS
from .infer import InferConfig, run_inference
from .precision import RUN_PRECISION_NAMES
from .video import VideoConfig, is_video, run_video

DEFAULT_WORKERS = max(1, min(4, os.cpu_count() or 1))


def _ray_address(value: str | None) -> str | None:
    """``--ray`` takes an optional ADDRESS, so ``--ray images/`` would read the folder as one (and
    then miss IMAGES_DIR): a value that is a path, not a Ray address, is refused with the fix."""
    if not value or "://" in value or value == "auto":
        return value
    if os.path.exists(value) or "/" in value or os.sep in value:
        raise click.BadParameter(
            f"{value!r} is a path, not a Ray address (--ray takes an optional ADDRESS: host:port, ray://host:10001, "
            f"auto): put the images folder before --ray (dlcv-infer {value} --engine MODEL --ray), or give the address "
            "as --ray=ADDRESS",
            param_hint="--ray",
        )
    return value


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("images_dir", type=click.Path(path_type=Path), required=False)
@click.option("--engine", required=True, type=str,
              help="The deployed model (.onnx, or an engine with its .json metadata), or a served one "
                   "(triton://HOST:PORT/MODEL); it says what to do.")
@click.option("--labels", type=click.Path(path_type=Path), default=None,
              help="Ground truth to score against: a folder of index-PNG masks (segmentation), or a CSV "
                   "image_name,label / a folder of <label>_<index>.png files (classification).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output folder [default: <IMAGES_DIR>_pred beside the images folder].")
@click.option("--batch-size", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--backend", default=None, metavar="NAME",
              help=f"Run the model on this backend ({', '.join(backend_names())}) instead of the default for its "
                   "suffix, e.g. --backend openvino for an .onnx file.")
@click.option("--device", default="cpu", show_default=True, metavar="DEVICE",
              help=f"Where the model runs: {', '.join(d if d == 'cpu' else d + '[:N]' for d in all_devices())} "
                   "(N: the GPU's index).")
@click.option("--precision", type=click.Choice(RUN_PRECISION_NAMES), default=None,
              help="Run an FP32 .onnx file in a lower precision: bf16 (OpenVINO, on CPUs with AVX512-BF16 or AMX-BF16; "
                   "refused elsewhere). Default: the file's own precision.")
@click.option("--lean-runtime", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="TensorRT engines: the libnvinfer_lean library of the TensorRT version that built a "
                   "version-compatible engine, needed to run it on a later TensorRT.")
@click.option("--trt-max-size", metavar="HxW", default=None,
              help="--device tensorrt on an ONNX model: raise the largest image size of onnxruntime's TensorRT "
                   "optimisation profile (recorded by dlcv-export) to HxW.")
@click.option("--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True,
              help="Threads that decode and preprocess images.")
@click.option("--recursive", is_flag=True, help="Include nested folders (outputs mirror them).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--skip-existing", is_flag=True,
              help="Resume an interrupted run: images whose outputs all exist are not run again (their "
                   "masks or predictions rows are still scored with --labels).")
@click.option("--strict", is_flag=True, help="Exit with code 1 when any image failed.")
@click.option("--max-pixels", type=click.IntRange(min=1), default=DEFAULT_MAX_PIXELS, show_default=True,
              help="Refuse images larger than this many pixels (read from the header, before decoding).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar and no per-file warnings.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              callback=lambda ctx, param, value: _ray_address(value),
              help="Run on a Ray cluster: ADDRESS (host:port, ray://host:10001, auto), or none for the cluster "
                   "RAY_ADDRESS names or a new local one. Writes the same files plus manifest.csv.")
@click.option("--ray-actors", type=click.IntRange(min=1), default=None,
              help="With --ray: actors, each holding one model [default: as many as the CPUs allow, one left for reading].")
@click.option("--ray-gpus-per-actor", type=click.FloatRange(min=0), default=0.0,
              help="With --ray: GPUs each actor holds (with --device cuda/tensorrt).")
@click.option("--camera", type=click.IntRange(min=0), default=None, metavar="N",
              help="Read frames from camera N (OpenCV's device index) instead of IMAGES_DIR; stop with Ctrl-C or --max-frames.")
@click.option("--overlay", is_flag=True,
              help="Video/camera, segmentation: also write overlay.mp4, the colour mask blended over the frames.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Video/camera: stop after this many frames.")
@debug_option
@handle_errors
def main(images_dir: Path | None, engine: str, labels: Path | None, out: Path | None, batch_size: int,
         backend: str | None, device: str, precision: str | None, lean_runtime: Path | None, trt_max_size: str | None,
         workers: int, recursive: bool, overwrite: bool,
         skip_existing: bool, strict: bool, max_pixels: int, quiet: bool, ray_address: str | None,
         ray_actors: int | None, ray_gpus_per_actor: float, camera: int | None, overlay: bool, max_frames: int | None,
         debug: bool) -> None:
    """Run a deployed model over the images in IMAGES_DIR and write masks or predictions.csv.

    IMAGES_DIR may also be a video file (.mp4, .avi, .mkv, .mov...: whatever OpenCV opens), or
    --camera N reads a camera: label frames go to OUT/<video stem>/frame_NNNNNN.png (lossless),
    frames.csv keeps each frame's timestamp, --overlay writes overlay.mp4.

    Segmentation writes <stem>.png (class indices, original size) and <stem>_color.png;
    classification writes predictions.csv. With --labels, metrics.json holds the scores.
    Unreadable images are listed in errors.csv and skipped; the exit code is 0 when any
    image succeeded (1 with --strict when any failed). Outputs are written atomically: a
    killed run is resumed with --skip-existing.
    """
    if not debug:  # OpenCV's own decoder warnings would duplicate the per-file messages
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    if camera is not None or (images_dir is not None and images_dir.is_file() and is_video(images_dir)):
        if camera is not None and images_dir is not None:
            raise DlcvUsageError(f"give IMAGES_DIR or --camera, not both (got {images_dir} and --camera {camera})")
        folder_only = [name for name, used in (("--ray", ray_address is not None), ("--skip-existing", skip_existing),
                                               ("--recursive", recursive), ("--strict", strict)) if used]  # fmt: skip
        if folder_only:
            raise DlcvUsageError(f"{', '.join(folder_only)} apply to image folders, not to a video or camera")
        video = VideoConfig(engine=engine, source=camera if camera is not None else images_dir, out=out, labels=labels,
                            overlay=overlay, batch_size=batch_size, device=device, backend=backend, overwrite=overwrite,
                            progress=False if quiet else None, max_frames=max_frames, lean_runtime=lean_runtime)  # fmt: skip
        for line in run_video(video).lines():
            click.echo(line)
        return
    if images_dir is None:
        raise DlcvUsageError("give IMAGES_DIR (a folder of images, or a video file) or --camera N")
    if overlay or max_frames is not None:
        raise DlcvUsageError("--overlay and --max-frames apply to a video or camera, not to an image folder")
    config = InferConfig(
        engine=engine,
        images=images_dir,
        out=out,
        labels=labels,
        batch_size=batch_size,
        device=device,
        backend=backend,
        precision=precision,
        lean_runtime=lean_runtime,
        trt_max_size=parse_size(trt_max_size, "--trt-max-size"),
        workers=workers,
        recursive=recursive,
        overwrite=overwrite,
        skip_existing=skip_existing,
        strict=strict,
        progress=False if quiet else None,
        max_pixels=max_pixels,
        debug=debug,
    )

    def log(message: str) -> None:
        if not quiet:
            click.echo(message, err=True)

    if ray_address is None:
        if ray_actors is not None or ray_gpus_per_actor:
            raise DlcvUsageError("--ray-actors and --ray-gpus-per-actor only apply with --ray")
        summary = run_inference(config, log=log)
    else:
        from .ray_infer import RayConfig, run_ray_inference  # imports Ray only when asked for

        ray_config = RayConfig(address=ray_address or None, actors=ray_actors, gpus_per_actor=ray_gpus_per_actor)
        summary = run_ray_inference(config, ray_config, log=log)
    for line in summary.lines():
        click.echo(line)
    if summary.exit_code:
        raise DlcvError(summary.failure_message or "the run failed")


if __name__ == "__main__":  # pragma: no cover
    main()
