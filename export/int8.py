"""FP32 ONNX -> ``<arch>.int8.onnx``: explicit INT8 quantization (QuantizeLinear/DequantizeLinear).

TensorRT 11 has no INT8 builder flag or calibrator: INT8 is decided by Q/DQ nodes in the graph
(docs/architecture.md contract 5). The graph is written for the CPU runtimes that run the file as it is
(onnxruntime, OpenVINO) and converted for TensorRT when an engine is built from it
(:func:`dlcv.export.qdq.tensorrt_qdq`: same ranges, signed symmetric encoding). The CPU form,
made by onnxruntime's ``quantize_static`` in QDQ format from one calibration:

- activations **uint8, asymmetric, per tensor**; weights **int8, symmetric (zero point 0), per
  output channel** (axis 0 for Conv/Gemm, 1 for ConvTranspose and MatMul). U8S8 is what
  onnxruntime's fastest x86 kernels take (its symmetric "indirect" convolution, with AVX2,
  AVX-VNNI and AVX512-VNNI code paths); int8 activations are never fused on x86. It is also the
  more exact choice after a ReLU: [0, max] gets all 256 levels, not 128;
- Q/DQ around :data:`QUANTIZED_OPS`: the weighted layers, and the ReLU, max-pooling and
  addition between them, so each convolution + ReLU becomes one integer kernel (the ReLU folds
  into the uint8 quantization with zero point 0) and the FCN skip additions and pools run on
  uint8 without leaving the integer domain; biases stay FP32 (onnxruntime quantizes them when
  it fuses; TensorRT adds them inside the fused layer);
- before quantizing, the FP32 graph gets the exact rewrite :func:`~dlcv.export.qdq.pad_input_channels`
  (the first convolution's 3 input channels padded to 4 for the integer kernel);
- the layers that compute the logits (:func:`~dlcv.export.qdq.logits_layers`; for FCN8s the final
  8x upsampling) stay FP32 unless ``fp32_layers`` says otherwise: quantizing their input
  quantizes the logits themselves to 256 levels. On the trained demo FCN8s (150 val images)
  that one layer was 0.42 of the 0.51 mIoU points all-INT8 lost; no other layer was worth more
  than 0.13 (``dlcv-export --int8-sensitivity`` measures it for any model). It costs almost no
  speed: onnxruntime has no integer ConvTranspose and runs it in FP32 either way.

The activation ranges are calibrated on real images, read and preprocessed exactly as
deployment does (:func:`dlcv.runtime.imageio.read_image` +
:func:`dlcv.runtime.preprocess.preprocess_image` with the checkpoint's preprocessing), one image
per calibration batch, so images keep their natural (and differing) sizes when the
preprocessing keeps the image size. The calibration folder is a plain folder of images or a
dataset in the layout the model was trained on (then its train split is used, opened as the
checkpoint recorded it). Methods: ``minmax``, ``percentile`` (99.999th percentile of each side,
from histograms), ``entropy`` (KL divergence); the default and the measurements behind it are
in :data:`dlcv.export.config.DEFAULT_CALIBRATION_METHOD`'s comment.

How the file was quantized is recorded beside the dlcv metadata, under ``metadata_props``
key :data:`SCHEME_KEY` (JSON: types, calibration, the layers kept FP32, the layers padded).
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import onnx

from dlcv.runtime.datasets import DatasetRecord, evenly_spread, open_split, recognise_layout
from dlcv.runtime.errors import DlcvError, first_line
from dlcv.runtime.imageio import is_image_file, read_image
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import preprocess_image

from .config import DEFAULT_CALIBRATION_METHOD, ExportConfig
from .graph import EXTERNAL_DATA_THRESHOLD, finalize_graph, weights_bytes
from .qdq import keep_fp32, layer_names, logits_layers, pad_input_channels, tensorrt_qdq
from .qdq import transposed_as_conv as rewrite_transposed

QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Relu", "MaxPool", "Add")
PER_CHANNEL_AXIS = {"Conv": 0, "ConvTranspose": 1, "Gemm": 0, "MatMul": 1}
PERCENTILE = 99.999
SCHEME_KEY = "dlcv.int8"
ACTIVATIONS = "uint8, asymmetric, per tensor"
WEIGHTS = "int8, symmetric, per output channel"

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def calibration_paths(folder: str | os.PathLike, count: int, record: DatasetRecord | None = None) -> tuple[list[Path], str]:
    """Up to ``count`` image paths spread evenly over ``folder``, and a description of where they
    came from. A dataset folder calibrates on its train split, opened as ``record`` (the model's
    :class:`~dlcv.runtime.datasets.DatasetRecord`; its layout is recognised when None) says
    (:func:`~dlcv.runtime.datasets.open_split`); a plain folder of images on its images."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DlcvError(f"{folder}: calibration folder not found")
    if recognise_layout(folder, record) is not None:
        split = open_split(folder, record, "train").subset(count)
        return [s.image for s in split.samples], split.describe()
    paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    if not paths:
        raise DlcvError(f"{folder}: holds no images to calibrate INT8 with (.png, .jpg, ...)")
    return evenly_spread(paths, count), str(folder)


def calibration_tensors(paths: Sequence[Path], metadata: ArtifactMetadata, log: Log = _silent) -> list[np.ndarray]:
    """Each image as the model input it becomes in deployment (float32 3×H×W); unreadable
    images are skipped with a warning."""
    tensors = []
    for path in paths:
        try:
            tensor, _ = preprocess_image(read_image(path), metadata.preprocess)
        except DlcvError as exc:
            log(f"warning: skipping calibration image {exc}")
            continue
        tensors.append(tensor)
    if not tensors:
        raise DlcvError(f"none of the {len(paths)} calibration images could be read")
    return tensors


@contextlib.contextmanager
def _root_logging_quiet():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _reader(tensors: Sequence[np.ndarray], input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class ImageReader(CalibrationDataReader):
        """One preprocessed image per calibration batch. With ``CalibStridedMinMax=1`` the
        quantizer asks for one image at a time (``set_range``) and merges each image's ranges or
        histograms: images of different sizes never meet in one array, and the activations of
        only one image are held in memory."""

        def __init__(self) -> None:
            self.position, self.end = 0, len(tensors)

        def __len__(self) -> int:
            return len(tensors)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.position, self.end = start_index, min(end_index, len(tensors))

        def get_next(self):
            if self.position >= self.end:
                return None
            self.position += 1
            return {input_name: tensors[self.position - 1][None]}

        def rewind(self) -> None:
            self.position, self.end = 0, len(tensors)

    return ImageReader()


@dataclass(frozen=True)
class Quantized:
    """One calibration's result: the FP32 graph as quantized (after the exact rewrites) and its
    QDQ graph with every layer INT8. :meth:`finish` keeps layers FP32 on a copy; the sensitivity
    sweep makes one copy per layer from the same calibration."""

    fp32: onnx.ModelProto
    qdq: onnx.ModelProto
    method: str
    images: int
    padded: tuple[str, ...]

    def layers(self) -> tuple[str, ...]:
        """The weighted layers, in graph order."""
        return tuple(layer_names(self.fp32).values())

    def default_fp32_layers(self) -> tuple[str, ...]:
        return logits_layers(self.fp32)

    def with_fp32(self, layers: Sequence[str]) -> onnx.ModelProto:
        """A copy of the QDQ graph with ``layers`` computed in FP32 (an unknown layer is a DlcvError)."""
        proto = _copy(self.qdq)
        try:
            keep_fp32(proto, self.fp32, layers)
        except KeyError as exc:
            raise DlcvError(f"--int8-fp32: {exc.args[0]}") from None
        return proto

    def finish(self, metadata: ArtifactMetadata, fp32_layers: Sequence[str] | None = None, *,
               transposed_as_conv: bool = True) -> onnx.ModelProto:  # fmt: skip
        """The INT8 file's graph: ``fp32_layers`` (None: :meth:`default_fp32_layers`) in FP32 (FP32
        ConvTransposes rewritten as Conv + DepthToSpace unless ``transposed_as_conv`` is False), the
        scheme recorded under :data:`SCHEME_KEY`, finalised with ``metadata`` (precision int8)."""
        kept = self.default_fp32_layers() if fp32_layers is None else tuple(dict.fromkeys(fp32_layers))
        proto = self.with_fp32(kept)
        rewritten = rewrite_transposed(proto) if transposed_as_conv else []
        scheme = {
            "activations": ACTIVATIONS, "weights": WEIGHTS, "calibration": self.method,
            "calibration_images": self.images, "fp32_layers": list(kept), "padded_input_channels": list(self.padded),
            "transposed_as_conv": rewritten,
        }  # fmt: skip
        entry = proto.metadata_props.add()
        entry.key, entry.value = SCHEME_KEY, json.dumps(scheme)
        return finalize_graph(proto, metadata.with_(precision="int8"))


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def int8_scheme(proto: onnx.ModelProto) -> dict | None:
    """How an INT8 file was quantized (:data:`SCHEME_KEY`), or None for a file without the record."""
    value = next((p.value for p in proto.metadata_props if p.key == SCHEME_KEY), None)
    return None if value is None else json.loads(value)


def quantize_all(fp32_path: str | os.PathLike, metadata: ArtifactMetadata, tensors: Sequence[np.ndarray], *,
                 method: str = DEFAULT_CALIBRATION_METHOD, ops: Sequence[str] = QUANTIZED_OPS,
                 pad_channels: bool = True) -> Quantized:  # fmt: skip
    """Calibrate on ``tensors`` and quantize every layer of the FP32 file ``fp32_path`` (see the
    module docstring); ``pad_channels`` False skips :func:`~dlcv.export.qdq.pad_input_channels`
    (for measuring what it buys)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile, "entropy": CalibrationMethod.Entropy}
    options = {
        "ActivationSymmetric": False,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        "QDQOpTypePerChannelSupportToAxis": {op: PER_CHANNEL_AXIS[op] for op in ops if op in PER_CHANNEL_AXIS},
        # a weighted layer's output is quantized only by a quantized consumer: ReLUs stay explicit
        # (Conv -> Relu -> Q, which onnxruntime fuses into one kernel) and the logits stay FP32
        "OpTypesToExcludeOutputQuantization": [op for op in ops if op in PER_CHANNEL_AXIS],
        "CalibPercentile": PERCENTILE,
        "CalibTensorRangeSymmetric": False,
        "CalibStridedMinMax": 1,  # one image per collection step (see _reader)
    }
    fp32 = onnx.load(str(fp32_path))
    padded = pad_input_channels(fp32) if pad_channels else []
    with tempfile.TemporaryDirectory(prefix="dlcv-int8-") as tmp:
        source, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        if weights_bytes(fp32) > EXTERNAL_DATA_THRESHOLD:  # saving with external data empties the proto's tensors
            onnx.save_model(_copy(fp32), str(source), save_as_external_data=True, location="fp32.onnx.data")
        else:
            onnx.save_model(fp32, str(source))
        try:  # the quantizer prints progress and root-logger advice; keep the export's output readable
            with contextlib.redirect_stdout(io.StringIO()), _root_logging_quiet():
                quantize_static(
                    str(source), str(out), _reader(tensors, metadata.input_name), quant_format=QuantFormat.QDQ,
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    op_types_to_quantize=list(ops), calibrate_method=methods[method], extra_options=options,
                )  # fmt: skip
        except DlcvError:
            raise
        except Exception as exc:  # onnxruntime's quantizer raises assorted types
            raise DlcvError(f"{metadata.arch}: INT8 quantization failed ({type(exc).__name__}: {first_line(exc)})") from None
        qdq = onnx.load(str(out))
    return Quantized(fp32, qdq, method, len(tensors), tuple(padded))


def quantize_int8(
    fp32_path: str | os.PathLike,
    metadata: ArtifactMetadata,
    tensors: Sequence[np.ndarray],
    *,
    method: str = DEFAULT_CALIBRATION_METHOD,
    fp32_layers: Sequence[str] | None = None,
) -> onnx.ModelProto:
    """The INT8 graph of the FP32 ONNX file ``fp32_path``, calibrated on ``tensors``, with
    ``fp32_layers`` (None: the logits layers) in FP32, finalised with ``metadata`` (precision int8)."""
    return quantize_all(fp32_path, metadata, tensors, method=method).finish(metadata, fp32_layers)


def write_int8(fp32_path: str | os.PathLike, metadata: ArtifactMetadata, config: ExportConfig, log: Log = _silent) -> onnx.ModelProto:
    """The INT8 writer: the FP32 file quantized, calibrated on ``config.calib`` (up to
    ``calib_count`` images, ``calib_method``), ``config.int8_fp32_layers`` kept FP32; with
    ``config.int8_sensitivity`` the per-layer sweep runs on the same calibration first."""
    if config.calib is None:
        raise DlcvError("INT8 needs calibration images (--calib DIR)")
    paths, where = calibration_paths(config.calib, config.calib_count, metadata.dataset)
    tensors = calibration_tensors(paths, metadata, log)
    sizes = sorted({"x".join(map(str, t.shape[1:])) for t in tensors})
    log(f"calibrating INT8 ({config.calib_method}) on {len(tensors)} images from {where} "
        f"(size{'s' if len(sizes) > 1 else ''} {', '.join(sizes[:4])}{', ...' if len(sizes) > 4 else ''})")  # fmt: skip
    quantized = quantize_all(fp32_path, metadata, tensors, method=config.calib_method)
    if config.int8_sensitivity:
        from .int8_sensitivity import write_sensitivity

        write_sensitivity(quantized, metadata, config, log)
    proto = quantized.finish(metadata, config.int8_fp32_layers)
    scheme = int8_scheme(proto) or {}
    padded = f"; input channels padded to 4: {', '.join(scheme['padded_input_channels'])}" if scheme["padded_input_channels"] else ""
    log(f"  int8: activations {ACTIVATIONS}, weights {WEIGHTS}; FP32 layers: {', '.join(scheme['fp32_layers']) or 'none'}{padded}")
    return proto


@contextlib.contextmanager
def tensorrt_int8_file(path: str | os.PathLike, log: Log = _silent) -> Iterator[Path]:
    """The INT8 file ``path`` in the form TensorRT parses (:func:`dlcv.export.qdq.tensorrt_qdq`:
    signed, zero-point-0 Q/DQ), written to a temporary file that lives as long as the context.
    A file whose Q/DQ are already signed is yielded as it is."""
    path = Path(path)
    proto = onnx.load(str(path))
    with tempfile.TemporaryDirectory(prefix="dlcv-int8-tensorrt-") as tmp:
        pairs = tensorrt_qdq(proto)
        if not pairs:
            yield path
            return
        out = Path(tmp) / f"{path.stem}.tensorrt.onnx"
        onnx.save_model(proto, str(out))
        log(f"{path.name}: {pairs} uint8 Q/DQ pairs rewritten as TensorRT's signed INT8 (same ranges) for the build")
        yield out
