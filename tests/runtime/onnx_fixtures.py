"""Tiny ONNX models built with onnx.helper (no torch) whose answers are known exactly.

A *colour-template* model scores each class by how close a colour is to the class's template
colour: ``logit_c = 2 x·t_c - |t_c|²`` (= ``-|x - t_c|²`` up to a term shared by all classes),
with ``x`` the normalised pixel (mean 0, std 1, so ``x = rgb / 255``). As a 1×1 convolution
it is a segmentation model (per-pixel logits); followed by global average pooling it is a
classifier of the image's mean colour. :func:`expected_labels` and :func:`expected_logits`
compute the same answers with numpy.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlcv.runtime.imageio import write_png
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec

# class index -> template colour (RGB)
SEG_COLOURS = np.array(
    [[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]], dtype=np.uint8
)
SEG_NAMES = ("background", "red", "green", "blue", "white")
# Irregular templates, so no two classes tie on the images the tests use.
CLS_COLOURS = np.array(
    [[10, 20, 30], [200, 40, 60], [50, 210, 90], [70, 80, 220], [230, 200, 40], [240, 235, 250], [120, 110, 130]],
    dtype=np.uint8,
)
CLS_NAMES = ("black", "red", "green", "blue", "yellow", "white", "grey")

PLAIN = dict(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))


def _weights(colours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = colours.astype(np.float32) / np.float32(255.0)
    return (2 * t).astype(np.float32), (-(t**2).sum(axis=1)).astype(np.float32)


def colour_model(
    path: Path,
    task: str = "segmentation",
    *,
    colours: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    preprocess: PreprocessSpec | None = None,
    palette: Sequence[Sequence[int]] | None = None,
    ignore_index: int = 255,
    exclude_classes: Sequence[int] = (),
    metadata: bool = True,
    opset: int = 17,
    input_hw: tuple[int, int] | None = None,
    metadata_class_names: Sequence[str] | None = None,
) -> Path:
    """Write a colour-template model (float32 input N×3×H×W, output ``logits``) to ``path``.

    ``metadata_class_names`` puts other classes into the metadata than the graph computes (a
    model whose metadata does not match it).
    """
    if colours is None:
        colours = SEG_COLOURS if task == "segmentation" else CLS_COLOURS
    if class_names is None:
        class_names = SEG_NAMES if task == "segmentation" else CLS_NAMES
    c = len(colours)
    w, b = _weights(colours)
    inits = [
        numpy_helper.from_array(w.reshape(c, 3, 1, 1), "W"),
        numpy_helper.from_array(b, "B"),
    ]
    hw = list(input_hw) if input_hw is not None else ["H", "W"]  # static H×W on request
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, *hw])
    if task == "segmentation":
        nodes = [helper.make_node("Conv", ["input", "W", "B"], ["logits"])]
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c, *hw])
    else:
        nodes = [
            helper.make_node("Conv", ["input", "W", "B"], ["pixel_logits"]),
            helper.make_node("GlobalAveragePool", ["pixel_logits"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["logits"], axis=1),
        ]
        y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", c])
    graph = helper.make_graph(nodes, f"colour_{task}", [x], [y], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    if metadata:
        names = tuple(metadata_class_names if metadata_class_names is not None else class_names)
        md = ArtifactMetadata(
            task=task,
            arch="colour-templates",
            num_classes=len(names),
            class_names=names,
            preprocess=preprocess or PreprocessSpec(**PLAIN),
            palette=None if palette is None else tuple(tuple(int(v) for v in p) for p in palette),
            ignore_index=ignore_index,
            exclude_classes=tuple(exclude_classes),
        )
        helper.set_model_props(model, {METADATA_KEY: md.to_json()})
    onnx.checker.check_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def expected_logits(image_rgb: np.ndarray, colours: np.ndarray = CLS_COLOURS) -> np.ndarray:
    """The classifier's logits for one image (float64): templates applied to the mean colour."""
    w, b = _weights(colours)
    mean = (image_rgb.astype(np.float64) / 255.0).reshape(-1, 3).mean(axis=0)
    return w.astype(np.float64) @ mean + b.astype(np.float64)


def expected_labels(image_rgb: np.ndarray, colours: np.ndarray = SEG_COLOURS) -> np.ndarray:
    """The segmentation model's label per pixel (exact for images made of template colours)."""
    w, b = _weights(colours)
    x = image_rgb.astype(np.float32) / np.float32(255.0)
    return np.argmax(x @ w.T + b, axis=-1).astype(np.uint8)


def blocks_image(label_grid: np.ndarray, block: tuple[int, int], colours: np.ndarray = SEG_COLOURS) -> np.ndarray:
    """An RGB image made of ``block``-sized squares coloured by ``label_grid``'s class templates."""
    labels = np.kron(label_grid, np.ones(block, dtype=label_grid.dtype))
    return colours[labels]


def save_image(path: Path, image: np.ndarray, quality: int = 95) -> Path:
    """Write RGB (H×W×3), RGBA (H×W×4) or gray (H×W) uint8 by suffix, unicode-safe."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_RGBA2BGRA)
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if path.suffix.lower() in (".jpg", ".jpeg") else []
    ok, buf = cv2.imencode(path.suffix, image, params)
    assert ok, path
    path.write_bytes(buf.tobytes())
    return path


def save_mask(path: Path, labels: np.ndarray) -> Path:
    """Write an index-PNG label map (uint8)."""
    return save_image(path, labels.astype(np.uint8))


def with_external_data(model_path: Path, data_name: str = "weights.bin") -> Path:
    """Move every tensor of a saved model into ``data_name`` beside it (onnx's own writer)."""
    from onnx import external_data_helper

    model = onnx.load(str(model_path))
    external_data_helper.convert_model_to_external_data(
        model, all_tensors_to_one_file=True, location=data_name, size_threshold=0, convert_attribute=True
    )
    onnx.save(model, str(model_path))
    return model_path


def set_external_location(model_path: Path, location: str) -> Path:
    """Rewrite every external tensor's recorded data location, as a crafted file would."""
    model = onnx.load(str(model_path), load_external_data=False)
    for tensor in _graph_tensors(model.graph):
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    Path(model_path).write_bytes(model.SerializeToString())  # onnx.save would refuse (or follow) the location
    return model_path


def _graph_tensors(graph: onnx.GraphProto):
    """Every TensorProto of a graph: initializers, and node attributes down into subgraphs."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _graph_tensors(attr.g)
            for sub in attr.graphs:
                yield from _graph_tensors(sub)


RECTANGLE_SIZES = [(40, 48), (48, 40), (36, 36), (40, 48), (44, 52), (36, 36)]
RECTANGLE_COLOURS = np.array([[40, 90, 40], [230, 60, 50], [50, 70, 230]], np.uint8)


def write_rectangles(root: Path, sizes: Sequence[tuple[int, int]] = RECTANGLE_SIZES, seed: int = 0, val_count: int = 4) -> Path:
    """A 3-class CamVid-layout set (classes.json, train/val) of coloured rectangles on noise,
    images of several sizes (``val_count`` val images cycle through ``sizes``)."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", len(sizes)), ("val", val_count)):
        for i in range(count):
            h, w = sizes[i % len(sizes)]
            labels = np.zeros((h, w), np.uint8)
            for cls in (1, 2):
                top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
                labels[top : top + h // 3, left : left + w // 3] = cls
            image = np.clip(RECTANGLE_COLOURS[labels].astype(int) + rng.integers(-25, 25, (h, w, 3)), 0, 255).astype(np.uint8)
            write_png(root / split / f"{i:03d}.png", image)
            write_png(root / f"{split}annot" / f"{i:03d}.png", labels)
    (root / "classes.json").write_text(json.dumps({"class_names": ["background", "red", "blue"], "ignore_index": 255}))
    return root
