"""FP16 and INT8 ONNX: the graph types are what they claim, calibration reads real images at their
natural sizes, every precision is compared with PyTorch FP32 in one table, and the gates hold
(on a narrow trained demo model in the slow test)."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from dlcv.export import ExportConfig, export_onnx
from dlcv.export.fp16 import FP32_OPS, convert_to_fp16, precision_summary, topological_order
from dlcv.export.int8 import calibration_paths, calibration_tensors, int8_scheme
from dlcv.export.onnx_export import write_precisions
from dlcv.export.verify import PrecisionRow
from dlcv.runtime.comparator import CandidateResult, judge
from dlcv.runtime.precision import FP16, FP32, INT8, Gate
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import read_image
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image

from tests.runtime.onnx_fixtures import RECTANGLE_SIZES as SIZES
from tests.runtime.onnx_fixtures import write_rectangles as write_dataset



def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture(scope="module")
def exported(make_checkpoint, tmp_path_factory):
    """One narrow FCN8s (random weights, 3 classes) exported as FP32, FP16 and INT8, calibrated
    on a folder of differently sized images and compared on a labelled dataset."""
    root = write_dataset(tmp_path_factory.mktemp("data") / "set")
    ckpt = make_checkpoint("fcn8s")
    messages: list[str] = []
    config = ExportConfig(
        checkpoint=ckpt, out=tmp_path_factory.mktemp("precisions"), input_size=(48, 48), precisions=("fp16", "int8"),
        calib=root / "train", val=root, eval_count=8,
    )  # fmt: skip
    return config, export_onnx(config, log=messages.append), messages


def test_all_three_files_written_with_their_precision(exported):
    config, result, _ = exported
    paths = result.precision_paths
    assert set(paths) == {"fp32", "fp16", "int8"}
    assert paths["fp16"].name == "fcn8s.fp16.onnx" and paths["int8"].name == "fcn8s.int8.onnx"
    fp32_md = result.metadata
    for precision, path in paths.items():
        model = onnx.load(str(path))
        md = ArtifactMetadata.from_json({p.key: p.value for p in model.metadata_props}[METADATA_KEY])
        assert md == fp32_md.with_(precision=precision)
        onnx.checker.check_model(str(path), full_check=True)
        (inp,), (out,) = model.graph.input, model.graph.output
        assert inp.type.tensor_type.elem_type == out.type.tensor_type.elem_type == TensorProto.FLOAT
        assert dims(inp) == ["batch", 3, "height", "width"] and dims(out) == ["batch", 3, "height", "width"]
    # and the INT8 graph in TensorRT's signed form, for onnxruntime's TensorRT provider
    assert sorted(p.name for p in config.out.iterdir()) == ["fcn8s.fp16.onnx", "fcn8s.int8.onnx", "fcn8s.int8.tensorrt.onnx", "fcn8s.onnx"]


def test_fp16_graph_holds_fp16_weights_and_activations(exported):
    _, result, _ = exported
    model = onnx.load(str(result.precision_paths["fp16"]))
    summary = precision_summary(model)
    assert summary["initializers"].get("FLOAT16", 0) >= 18 and "FLOAT" not in summary["initializers"]
    assert not set(summary["ops"]) & set(FP32_OPS)  # an FCN has none of the ops kept in FP32
    casts = [n for n in model.graph.node if n.op_type == "Cast"]
    assert len(casts) == 2  # input FP32 -> FP16 and logits FP16 -> FP32, nothing in between
    inferred = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.value_info}
    conv_outputs = [n.output[0] for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose")]
    assert conv_outputs and all(types[o] == TensorProto.FLOAT16 for o in conv_outputs)


def test_int8_graph_is_u8s8_qdq_around_every_layer_but_the_logits(exported):
    """uint8 asymmetric activations per tensor, int8 symmetric weights per output channel, FP32
    biases; the logits layer (upscore8) FP32, as Conv + DepthToSpace; the first conv's input padded
    to 4 channels; the scheme recorded beside the metadata."""
    _, result, _ = exported
    model = onnx.load(str(result.precision_paths["int8"]))
    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    convs = {layer_of(graph, n, inits, producer): n for n in graph.node if n.op_type in ("Conv", "ConvTranspose")}
    assert len(convs) == 21 and not [n for n in graph.node if n.op_type == "ConvTranspose" and convs.get("upscore8") is n]
    for layer, conv in convs.items():
        if layer == "upscore8":  # FP32: an FP32 weight, no DequantizeLinear, its output shuffled to the logits
            assert conv.op_type == "Conv" and conv.input[1] in inits and inits[conv.input[1]].dtype == np.float32
            assert producer[conv.input[0]].op_type != "DequantizeLinear"
            continue
        act, weight = producer[conv.input[0]], producer[conv.input[1]]
        assert act.op_type == weight.op_type == "DequantizeLinear", layer
        assert producer[act.input[0]].op_type == "QuantizeLinear"
        assert inits[act.input[1]].shape == () and inits[act.input[2]].dtype == np.uint8  # per tensor, uint8
        w, scale, zero = (inits[x] for x in weight.input)
        assert w.dtype == np.int8 and zero.dtype == np.int8 and not zero.any()
        channel_axis = 1 if conv.op_type == "ConvTranspose" else 0
        assert scale.shape == (w.shape[channel_axis],), "weights are quantized per output channel"
        assert next(a.i for a in weight.attribute if a.name == "axis") == channel_axis
        if len(conv.input) > 2:
            assert conv.input[2] in inits and inits[conv.input[2]].dtype == np.float32  # bias stays FP32
    shuffle = next(n for n in graph.node if n.op_type == "DepthToSpace")
    assert shuffle.input[0] == convs["upscore8"].output[0]
    first = convs["features.0"]
    w = inits[producer[first.input[1]].input[0]]
    assert w.shape[1] == 4 and not w[:, 3].any()  # 3 input channels + a zero one
    assert producer[producer[producer[first.input[0]].input[0]].input[0]].op_type == "Pad"
    scheme = int8_scheme(model)
    assert scheme["fp32_layers"] == ["upscore8"] and scheme["padded_input_channels"] == ["features.0"]
    assert scheme["calibration"] == "minmax" and scheme["activations"].startswith("uint8")


def layer_of(graph, node, inits, producer) -> str:
    name = node.input[1] if node.input[1] in inits else producer[node.input[1]].input[0]
    return name.removesuffix("_quantized").removesuffix(".weight")


def test_one_table_in_task_terms_with_labels(exported):
    _, result, messages = exported
    report = result.precision_report
    assert [r.label for r in report.rows] == ["fp32", "fp16", "int8"]
    assert "4 labelled images from the val split" in report.eval_source
    table = report.table()
    assert sum(m == table for m in messages) == 1  # printed once, as one table
    for needle in ("pixel agree", "max abs err", "mean abs err", "mIoU", "delta", "PyTorch FP32 mIoU"):
        assert needle in table
    fp32, fp16, int8 = report.rows
    assert fp32.stats["agreement"] == 1.0 and fp32.stats["max_abs_logit_error"] < 1e-4 and fp32.metric_delta == 0
    assert fp16.passed and fp16.stats["agreement"] >= 0.995 and fp16.stats["max_abs_logit_error"] > 0
    assert int8.gate == Gate(max_metric_drop=0.01) and int8.metric is not None
    assert 0 < int8.stats["max_abs_logit_error"] < fp32.stats["max_abs_reference_logit"]
    record = json.loads(json.dumps(result.to_dict()))
    assert [r["label"] for r in record["precisions"]["rows"]] == ["fp32", "fp16", "int8"]
    assert any(m.startswith("calibrating INT8 (minmax) on 6 images") and "sizes 36x36, 40x48" in m for m in messages)


def test_calibration_reads_real_images_at_their_natural_size(tmp_path):
    root = write_dataset(tmp_path / "set")
    md = ArtifactMetadata(task="segmentation", arch="fcn8s", num_classes=3, class_names=("a", "b", "c"), preprocess=PreprocessSpec())
    paths, where = calibration_paths(root, 4)
    assert "train split" in where and len(paths) == 4 and paths[0].parent.name == "train"
    tensors = calibration_tensors(paths, md)
    assert [p.name for p in paths] == ["000.png", "002.png", "003.png", "005.png"]  # an even spread over 6
    assert [t.shape for t in tensors] == [(3, *SIZES[i]) for i in (0, 2, 3, 5)]  # natural, differing sizes
    for path, tensor in zip(paths, tensors):
        np.testing.assert_array_equal(tensor, preprocess_image(read_image(path), md.preprocess)[0])
    plain, where = calibration_paths(root / "val", 10)
    assert len(plain) == 4 and where == str(root / "val")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DlcvError, match="holds no images"):
        calibration_paths(tmp_path / "empty", 4)


def test_missed_gate_warns_or_with_strict_writes_nothing(exported, monkeypatch, tmp_path):
    config, result, _ = exported
    real_run = OnnxRuntimeBackend._run

    def noisy_fp16(self, batch):
        logits = real_run(self, batch)
        if self.precision == "fp16":
            logits = logits + np.random.default_rng(0).normal(0, 1.0, logits.shape).astype(np.float32)
        return logits

    monkeypatch.setattr(OnnxRuntimeBackend, "_run", noisy_fp16)
    out = tmp_path / "out"
    loose = dataclasses.replace(config, out=out, precisions=("fp16",))
    messages: list[str] = []
    paths, report = write_precisions(loose, result.onnx_path, result.checkpoint, result.metadata, result.eval_set, messages.append)
    assert not report.rows[1].passed and "FAIL" in report.table()
    assert any(m.startswith("warning: fcn8s.fp16.onnx misses its gate: label agreement") for m in messages)
    assert paths["fp16"].is_file()
    paths["fp16"].unlink()
    with pytest.raises(DlcvError) as info:
        write_precisions(dataclasses.replace(loose, strict=True), result.onnx_path, result.checkpoint, result.metadata,
                         result.eval_set)  # fmt: skip
    assert "fcn8s.fp16.onnx misses its gate" in str(info.value) and "not written" in str(info.value)
    assert list(out.iterdir()) == []


def test_export_gates_are_the_records_with_the_options_in_place():
    default = ExportConfig(checkpoint="x.pt")
    for precision in (FP32, FP16, INT8):
        for labelled in (True, False):
            assert default.gate(precision, labelled) == precision.default_gate(labelled)
    config = ExportConfig(checkpoint="x.pt", min_agreement=0.9, fp16_min_agreement=0.8, int8_max_drop=0.05)
    assert config.gate("fp32", True) == config.gate("fp32", False) == Gate(min_agreement=0.9)
    assert config.gate("fp16", True) == config.gate("fp16", False) == Gate(min_agreement=0.8)
    assert config.gate("int8", True) == Gate(max_metric_drop=0.05)
    assert config.gate("int8", False) == INT8.default_gate(False)  # no labels: the record's agreement bar stands
    assert default.tie_margin is None  # each precision's own margin


def test_a_precision_row_is_the_comparators_result_with_its_file():
    assert [f.name for f in dataclasses.fields(PrecisionRow)] == [f.name for f in dataclasses.fields(CandidateResult)] + ["artifact"]
    result = CandidateResult("fp16", {"agreement": 0.99}, None, 0.5, 0.6, Gate(min_agreement=0.995), ("agreement",))
    row = PrecisionRow.of(result, "m.fp16.onnx")
    assert (row.label, row.stats, row.artifact, row.passed) == ("fp16", {"agreement": 0.99}, "m.fp16.onnx", False)
    assert abs(row.metric_delta - -0.1) < 1e-12


def test_judge_applies_each_bar_of_a_gate():
    stats = {"nonfinite_logits": 0, "num_logits": 10, "agreement": 0.99, "disagreements": 1, "count": 100,
             "near_tie_disagreements": 0, "max_abs_logit_error": 0.5, "max_abs_reference_logit": 4.0}  # fmt: skip
    assert judge(stats, Gate(min_agreement=0.995)) == ("label agreement 99.000% < 99.5% (1 of 100 labels differ, 0 near ties)",)
    assert judge(stats, Gate(max_metric_drop=0.01), metric_delta=-0.02) == ("mIoU drop 2.00 pt > 1.0 pt",)
    assert judge(stats, Gate(max_metric_drop=0.01), metric_delta=-0.01) == ()
    assert judge(stats, Gate(max_metric_drop=0.01), metric_delta=+0.03, metric_name="top-1") == ()
    assert judge({**stats, "nonfinite_logits": 3}, Gate()) == ("3 NaN/inf logits",)
    # the error bar is relative beyond logits of magnitude 1: 0.1 x 4.0 = 0.4 < 0.5
    assert judge(stats, Gate(max_abs_error=0.1), where="2x3x8x8") == ("max abs logit error 5.000e-01 > 4.000e-01 at 2x3x8x8",)
    assert judge(stats, Gate(max_abs_error=0.1), reference_scale=5.0) == ()
    assert judge({**stats, "num_logits": 0}, Gate(max_abs_error=0.1)) == ()  # labels only: no logits to bound
    assert judge(stats, Gate(min_agreement=0.9995))[0].startswith("label agreement 99.000% < 99.95%")


def _model(nodes, initializers=()) -> onnx.ModelProto:
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, 4, 4])], list(initializers),
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


TOY = ArtifactMetadata(task="segmentation", arch="toy", num_classes=3, class_names=("a", "b", "c"), preprocess=PreprocessSpec())


def _shared_fp32_consumers() -> onnx.ModelProto:
    """input -> Relu -> r, and r feeds two ops kept in FP32 (Exp, Sqrt)."""
    return _model([
        helper.make_node("Relu", ["input"], ["r"]), helper.make_node("Exp", ["r"], ["e"]),
        helper.make_node("Sqrt", ["r"], ["q"]), helper.make_node("Mul", ["e", "half"], ["m"]),
        helper.make_node("Add", ["m", "q"], ["logits"]),
    ], [numpy_helper.from_array(np.float32(0.5).reshape(1), "half")])  # fmt: skip


def _assert_valid_ordered_graph(model: onnx.ModelProto) -> None:
    """What dlcv promises of every graph it writes: one producer per tensor name, every node
    after the producers of its inputs, and onnx.checker's full check passes."""
    outputs = [o for n in model.graph.node for o in n.output]
    assert len(outputs) == len(set(outputs)), sorted(o for o in outputs if outputs.count(o) > 1)
    available = {i.name for i in model.graph.input} | {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        missing = [x for x in node.input if x and x not in available]
        assert not missing, f"{node.op_type} reads {missing} before they are produced"
        available.update(node.output)
    onnx.checker.check_model(model, full_check=True)


def test_fp16_conversion_of_shared_fp32_consumers_is_valid_and_correct():
    """Whatever the installed converter does with a tensor that feeds two blocked ops (older
    onnxruntime releases gave it two identical Casts appended after their consumers), dlcv's
    FP16 graph is valid, ordered, typed as promised and computes the model."""
    fixed = convert_to_fp16(_shared_fp32_consumers(), TOY)
    _assert_valid_ordered_graph(fixed)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(fixed).graph.value_info}
    ops = {n.op_type: n for n in fixed.graph.node}
    assert types["r"] == TensorProto.FLOAT16  # Relu runs in FP16
    for kept in ("Exp", "Sqrt"):  # the kept ops read and write FP32
        assert types[ops[kept].input[0]] == types[ops[kept].output[0]] == TensorProto.FLOAT
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    r = np.maximum(x, 0)
    np.testing.assert_allclose(_run(fixed, x), 0.5 * np.exp(r) + np.sqrt(r), rtol=2e-3, atol=2e-3)  # FP16 rounding of r only


def test_repair_casts_fixes_duplicate_casts_appended_after_their_consumers():
    """The converter defect, built by hand so the repair stays covered whatever onnxruntime is
    installed: r (FP16) gets two identical Casts to FP32 (one output name twice), both appended
    after the nodes that read them, plus an FP32 -> FP16 -> FP32 round trip between two kept ops."""
    f32, f16 = TensorProto.FLOAT, TensorProto.FLOAT16
    cast = lambda src, dst, to: helper.make_node("Cast", [src], [dst], to=to)  # noqa: E731
    nodes = [
        cast("input", "x16", f16), helper.make_node("Relu", ["x16"], ["r"]),
        helper.make_node("Exp", ["r32"], ["e"]), helper.make_node("Sqrt", ["r32"], ["q"]),
        cast("e", "e16", f16), cast("e16", "e32", f32), helper.make_node("Log", ["e32"], ["l"]),
        helper.make_node("Add", ["l", "q"], ["logits"]),
        cast("r", "r32", f32), cast("r", "r32", f32),  # the duplicate, after its consumers
    ]  # fmt: skip
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", f32, ["batch", 3, 4, 4])],
        [helper.make_tensor_value_info("logits", f32, ["batch", 3, 4, 4])],
        value_info=[helper.make_tensor_value_info("e", f32, ["batch", 3, 4, 4])],
    )  # fmt: skip
    broken = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    with pytest.raises(onnx.checker.ValidationError):
        onnx.checker.check_model(broken, full_check=True)
    from dlcv.export.fp16 import repair_casts

    repair_casts(broken.graph)
    _assert_valid_ordered_graph(broken)
    assert [n.op_type for n in broken.graph.node].count("Cast") == 2  # input->FP16, r->FP32; the round trip is gone
    assert next(n for n in broken.graph.node if n.op_type == "Log").input[0] == "e"  # reads FP32 e itself
    x = np.random.default_rng(0).normal(size=(2, 3, 4, 4)).astype(np.float32)
    r = np.maximum(x.astype(np.float16), 0).astype(np.float32)
    np.testing.assert_allclose(_run(broken, x), r + np.sqrt(r), rtol=1e-5, atol=1e-5)  # log(exp(r)) == r


def test_ops_kept_fp32_are_the_ones_fp16_range_breaks():
    """A variance normalisation as exporters decompose LayerNorm, on activations of ~300: its
    squares pass 65504, so FP16 arithmetic (TensorRT's, in an FP16 layer) gives inf. With
    FP32_OPS the squaring, mean and root are FP32 in the graph, and the result matches numpy.
    (onnxruntime's CPU provider cannot show the overflow itself: it runs ops that lack FP16
    kernels in FP32 and drops the Casts between them.)"""

    def graph():
        return _model([
            helper.make_node("ReduceMean", ["input", "axis"], ["mean"]), helper.make_node("Sub", ["input", "mean"], ["d"]),
            helper.make_node("Pow", ["d", "two"], ["sq"]), helper.make_node("ReduceMean", ["sq", "axis"], ["var"]),
            helper.make_node("Sqrt", ["var"], ["std"]), helper.make_node("Div", ["d", "std"], ["logits"]),
        ], [numpy_helper.from_array(np.array([1], np.int64), "axis"), numpy_helper.from_array(np.float32(2).reshape(1), "two")])  # fmt: skip

    x = (300 * np.random.default_rng(0).normal(size=(2, 3, 4, 4))).astype(np.float32)
    d = x - x.mean(1, keepdims=True)
    with np.errstate(over="ignore"):
        assert np.isinf(d.astype(np.float16) ** np.float16(2)).any()  # what an FP16 Pow layer computes
    fixed = convert_to_fp16(graph(), TOY)
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(fixed).graph.value_info}
    for node in fixed.graph.node:
        if node.op_type in ("Pow", "ReduceMean", "Sqrt"):
            assert types.get(node.output[0], TensorProto.FLOAT) == TensorProto.FLOAT, node.op_type
    assert types["d"] == TensorProto.FLOAT16  # the subtraction stays FP16 (|d| < 65504)
    want = d / np.sqrt((d**2).mean(1, keepdims=True))
    np.testing.assert_allclose(_run(fixed, x), want, atol=5e-3)


def test_topological_order_is_stable_and_detects_cycles():
    a = helper.make_node("Relu", ["x"], ["a"])
    b = helper.make_node("Relu", ["a"], ["b"])
    c = helper.make_node("Relu", ["x"], ["c"])
    assert topological_order([b, a, c], {"x"}) == [a, c, b]
    loop = helper.make_node("Add", ["b", "x"], ["a"])
    with pytest.raises(DlcvError, match="cycle"):
        topological_order([loop, b], {"x"})


# --------------------------------------------------------------------------- trained demo model


@pytest.fixture(scope="module")
def trained_fcn(tmp_path_factory):
    from dlcv.train.config import TrainConfig
    from dlcv.train.data.demo import DemoSizes, demo_root
    from dlcv.train.loop import train

    root = demo_root("segmentation", tmp_path_factory.mktemp("demo"), DemoSizes(seg=(64, 24, 16)))
    out = tmp_path_factory.mktemp("run")
    result = train(TrainConfig(model="fcn8s", data=str(root), out=out, epochs=2, width=0.0625, lr=1e-3, batch_size=8,
                               progress=False, overlays=0, tensorboard=False))  # fmt: skip
    return root, result.best


@pytest.mark.slow
def test_trained_demo_model_passes_the_fp16_and_int8_gates(trained_fcn, tmp_path):
    root, ckpt = trained_fcn
    config = ExportConfig(checkpoint=ckpt, out=tmp_path, precisions=("fp16", "int8"), calib=root, val=root, strict=True)
    result = export_onnx(config)
    fp32, fp16, int8 = result.precision_report.rows
    assert result.precision_report.rows and all(r.passed for r in result.precision_report.rows)
    assert fp16.stats["agreement"] >= 0.995
    assert int8.metric is not None and int8.metric_delta >= -0.01
    assert fp32.stats["max_abs_reference_logit"] > 0.1  # trained logits, not the untrained zeros


WRITERS_ALONE = r"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dlcv.export.fp16 import convert_to_fp16
from dlcv.export.int8 import quantize_all
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec

md = ArtifactMetadata(task="segmentation", arch="toy", num_classes=3, class_names=("a", "b", "c"), preprocess=PreprocessSpec())
weight = numpy_helper.from_array(np.random.default_rng(0).normal(size=(3, 3, 1, 1)).astype(np.float32), "w")
graph = helper.make_graph(
    [helper.make_node("Conv", ["input", "w"], ["logits"])], "g",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
    [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3, "height", "width"])], [weight],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
fp16 = convert_to_fp16(model, md)
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "toy.onnx"
    onnx.save(model, str(path))
    int8 = quantize_all(path, md, [np.random.default_rng(1).normal(size=(3, 8, 8)).astype(np.float32)]).finish(md)
loaded = sorted(m for m in sys.modules if m.startswith("dlcv.") or m == "torch")
precisions = [ArtifactMetadata.from_json({p.key: p.value for p in m.metadata_props}["dlcv"]).precision for m in (fp16, int8)]
print("precisions:", *precisions)
print("loaded:", *loaded)
"""


def test_the_precision_writers_run_without_the_orchestration_or_torch():
    """fp16.py/int8.py finish their graphs with graph.py: importing and running them first in a
    fresh interpreter never loads onnx_export (the old import loop) nor torch."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", WRITERS_ALONE], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = {line.split(":")[0]: line.split()[1:] for line in done.stdout.splitlines() if ":" in line}
    assert lines["precisions"] == ["fp16", "int8"]  # both graphs finished, metadata embedded
    assert "dlcv.export.graph" in lines["loaded"]
    assert not {"dlcv.export.onnx_export", "dlcv.export.verify", "dlcv.train", "torch"} & set(lines["loaded"])
