"""The end-to-end split: where a file-to-file run spends its time, stage by stage.

Runs the runtime's own functions in order on real image files, one thread, timing each:
decode (:func:`read_image`), preprocess (:func:`preprocess_image`), inference
(``backend.infer_outputs`` on a batch of one size), postprocess (labels, from numpy's argmax of
the logits or from an in-graph head, restored to the image size and colourised, or top-5) and write (index and colour PNGs, or prediction lines). The
first batch is a warm-up and is not counted. Users see whether the model or the pipeline
limits them; ``dlcv-infer`` overlaps decoding with inference in worker threads, so its
wall-clock time can be lower than this sum.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import numpy as np

from dlcv.runtime.backends.base import Backend
from dlcv.runtime.imageio import read_image, write_png
from dlcv.runtime.postprocess import colorize, palette_array, predicted_labels, predicted_topk
from dlcv.runtime.preprocess import preprocess_image, restore_label_map
from dlcv.runtime.task import get_task

from .records import E2E_STAGES

TOP_K = 5


class _Clock:
    def __init__(self) -> None:
        self.seconds = dict.fromkeys(E2E_STAGES, 0.0)
        self.images = 0

    def add(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] += now - start
        return now


def _run_batch(backend: Backend, files: Sequence[Path], out: Path, clock: _Clock, palette: np.ndarray) -> None:
    md = backend.metadata
    t = time.perf_counter()
    images = [read_image(f) for f in files]
    t = clock.add("decode", t)
    prepared = [preprocess_image(image, md.preprocess) for image in images]
    t = clock.add("preprocess", t)
    # one call per input size: a batch never mixes sizes
    groups: dict[tuple, list[int]] = {}
    for i, (x, _) in enumerate(prepared):
        groups.setdefault(x.shape, []).append(i)
    outputs: dict[int, dict[str, np.ndarray]] = {}  # per image: each output with a batch axis of one
    for indices in groups.values():
        out_batch = backend.infer_outputs(np.stack([prepared[i][0] for i in indices]))
        outputs.update((i, {name: value[j : j + 1] for name, value in out_batch.items()}) for j, i in enumerate(indices))
    t = clock.add("inference", t)
    results = []
    for i, (_, geometry) in enumerate(prepared):
        if get_task(md.task).per_pixel:
            labels = restore_label_map(predicted_labels(outputs[i], md)[0], geometry)
            results.append((labels, colorize(labels, palette)))
        else:
            results.append(predicted_topk(outputs[i], md, TOP_K))
    t = clock.add("postprocess", t)
    if get_task(md.task).per_pixel:
        for f, (labels, colour) in zip(files, results):
            write_png(out / f"{f.stem}.png", labels)
            write_png(out / f"{f.stem}_color.png", colour)
    else:
        with open(out / "predictions.csv", "a", encoding="utf-8") as csv_file:
            for f, (classes, probs) in zip(files, results):
                csv_file.write(",".join([f.name] + [f"{c}:{p:.6f}" for c, p in zip(classes[0], probs[0])]) + "\n")
    clock.add("write", t)
    clock.images += len(files)


def time_pipeline(backend: Backend, files: Sequence[Path], batch_size: int, out: Path) -> dict:
    """Per-image milliseconds of each stage over ``files`` (after one warm-up batch), as record fields."""
    out.mkdir(parents=True, exist_ok=True)
    md = backend.metadata
    palette = palette_array(md.palette, md.num_classes) if get_task(md.task).per_pixel else np.zeros((0, 3), np.uint8)
    batches = [list(files[i : i + batch_size]) for i in range(0, len(files), batch_size)]
    _run_batch(backend, batches[0], out, _Clock(), palette)  # warm-up
    clock = _Clock()
    for batch in batches:
        _run_batch(backend, batch, out, clock, palette)
    per_image = {stage: 1000.0 * s / clock.images for stage, s in clock.seconds.items()}
    total = sum(per_image.values())
    fields = {f"e2e_{stage}_ms_per_image": value for stage, value in per_image.items()}
    fields.update(
        e2e_batch_size=batch_size,
        e2e_images=clock.images,
        e2e_total_ms_per_image=total,
        e2e_throughput_img_s=1000.0 / total if total > 0 else None,
    )
    return fields
