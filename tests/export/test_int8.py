"""The INT8 writer's graph rewrites (exact in FP32), its two forms (uint8 for the CPU runtimes, signed
for TensorRT), what onnxruntime makes of the CPU form, OpenVINO on the same file, the layers kept
FP32, and the per-layer sensitivity sweep."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

import dlcv.export.tensorrt_build as build_module
from dlcv.export import ExportConfig, export_onnx
from dlcv.export.cli import parse_layers
from dlcv.export.config import TensorRTConfig
from dlcv.export.int8 import int8_scheme, quantize_all, tensorrt_int8_file
from dlcv.export.int8_sensitivity import ALL_INT8, sensitivity, sensitivity_path
from dlcv.export.qdq import (
    keep_fp32, layer_names, logits_layers, pad_input_channels, qdq_types, tensorrt_qdq, transposed_as_conv,
)  # fmt: skip
from dlcv.export.verify import eval_set_from_dataset
from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.backends.openvino_backend import OpenVINOBackend
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.metadata import read_onnx_metadata
from tests.export.test_precision import write_dataset

RNG = np.random.default_rng(0)


def run(model: onnx.ModelProto, **feeds) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, feeds)[0]


def copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def one_op_model(node, c_in, c_out, inits) -> onnx.ModelProto:
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, c_in, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, c_out, "H", "W"])], inits,
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


# --------------------------------------------------------------------------- exact FP32 rewrites


def test_input_channels_padded_to_four_give_the_same_result():
    w = RNG.normal(size=(5, 3, 3, 3)).astype(np.float32)
    model = one_op_model(helper.make_node("Conv", ["x", "conv.weight"], ["y"], name="conv", pads=[1] * 4), 3, 5,
                         [numpy_helper.from_array(w, "conv.weight")])  # fmt: skip
    padded = copy(model)
    assert pad_input_channels(padded) == ["conv"]
    onnx.checker.check_model(padded, full_check=True)
    assert [n.op_type for n in padded.graph.node] == ["Pad", "Conv"]
    new_w = numpy_helper.to_array(next(t for t in padded.graph.initializer if t.name == "conv.weight"))
    assert new_w.shape == (5, 4, 3, 3) and not new_w[:, 3].any() and np.array_equal(new_w[:, :3], w)
    x = RNG.normal(size=(2, 3, 9, 11)).astype(np.float32)
    np.testing.assert_allclose(run(padded, x=x), run(model, x=x), atol=1e-5)
    assert pad_input_channels(padded) == []  # 4 channels: nothing left to pad


@pytest.mark.parametrize("c_in, c_out, kernel, stride, bias", [(12, 12, 16, 8, False), (5, 7, 4, 2, True), (3, 4, 6, 2, True)])
def test_transposed_convolution_as_conv_and_depth_to_space_gives_the_same_result(c_in, c_out, kernel, stride, bias):
    inits = [numpy_helper.from_array(RNG.normal(size=(c_in, c_out, kernel, kernel)).astype(np.float32), "up.weight")]
    if bias:
        inits.append(numpy_helper.from_array(RNG.normal(size=c_out).astype(np.float32), "up.bias"))
    node = helper.make_node("ConvTranspose", ["x", *(i.name for i in inits)], ["y"], name="up", strides=[stride] * 2)
    model = one_op_model(node, c_in, c_out, inits)
    rewritten = copy(model)
    assert transposed_as_conv(rewritten) == ["up"]
    onnx.checker.check_model(rewritten, full_check=True)
    assert [n.op_type for n in rewritten.graph.node] == ["Conv", "DepthToSpace"]
    x = RNG.normal(size=(2, c_in, 7, 9)).astype(np.float32)
    want, got = run(model, x=x), run(rewritten, x=x)
    assert got.shape == want.shape == (2, c_out, 6 * stride + kernel, 8 * stride + kernel)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_transposed_convolutions_that_do_not_fit_are_left_alone():
    w = numpy_helper.from_array(RNG.normal(size=(4, 4, 3, 3)).astype(np.float32), "w")
    for attrs in ({"strides": [2, 2]}, {"strides": [1, 1]}, {"strides": [2, 2], "pads": [1, 1, 1, 1]}):
        kernel = 3 if attrs["strides"] == [2, 2] and "pads" not in attrs else 3
        model = one_op_model(helper.make_node("ConvTranspose", ["x", "w"], ["y"], **attrs), 4, 4, [w])
        assert kernel and transposed_as_conv(model) == [] and model.graph.node[0].op_type == "ConvTranspose"


# --------------------------------------------------------------------------- the INT8 file


@pytest.fixture(scope="module")
def int8_export(make_checkpoint, tmp_path_factory):
    """A narrow FCN8s exported as FP32 + INT8 (calibrated on a small labelled set), and the set."""
    root = write_dataset(tmp_path_factory.mktemp("data") / "set")
    config = ExportConfig(checkpoint=make_checkpoint("fcn8s"), out=tmp_path_factory.mktemp("int8"), input_size=(48, 48),
                          precisions=("int8",), calib=root, val=root, eval_count=4)  # fmt: skip
    return config, export_onnx(config), root


def test_onnxruntime_runs_every_int8_layer_as_one_integer_kernel(int8_export, tmp_path):
    """What the uint8 form is for: after onnxruntime's graph optimisations every quantized
    convolution is a QLinearConv (its ReLU folded in); the FP32 int8 S8S8 form left FCN8s'
    pool3/pool4 convolutions and every ReLU in FP32."""
    _, result, _ = int8_export
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    ort.InferenceSession(str(result.precision_paths["int8"]), options, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(str(tmp_path / "optimized.onnx")).graph.node]
    assert ops.count("QLinearConv") == 18  # every Conv layer (18 of the 21), ReLUs folded in
    assert "Relu" not in ops and ops.count("Conv") == 1  # upscore8, FP32 as written
    assert ops.count("ConvTranspose") == 2  # upscore2/upscore_pool4: onnxruntime has no integer ConvTranspose


def test_the_int8_file_runs_on_openvino_like_on_onnxruntime(int8_export):
    _, result, root = int8_export
    md = read_onnx_metadata(result.precision_paths["int8"])
    batch = max((b.inputs for b in eval_set_from_dataset(root, md, 4).batches), key=len)
    with OnnxRuntimeBackend(result.precision_paths["int8"]) as a, OpenVINOBackend(result.precision_paths["int8"]) as b:
        x, y = a.infer(batch), b.infer(batch)
    assert x.shape == y.shape and (x.argmax(1) == y.argmax(1)).mean() > 0.97
    assert np.abs(x - y).mean() < 0.1 * np.abs(x).mean()


def test_tensorrt_form_is_signed_symmetric_with_the_same_ranges(int8_export):
    _, result, root = int8_export
    cpu = onnx.load(str(result.precision_paths["int8"]))
    signed = copy(cpu)
    pairs = tensorrt_qdq(signed)
    onnx.checker.check_model(signed, full_check=True)
    assert pairs == sum(n.op_type == "QuantizeLinear" for n in cpu.graph.node) > 0
    assert set(qdq_types(cpu)) == {"UINT8", "INT8"} and set(qdq_types(signed)) == {"INT8"}
    inits = {t.name: numpy_helper.to_array(t) for t in signed.graph.initializer}
    old = {t.name: numpy_helper.to_array(t) for t in cpu.graph.initializer}
    producer = {o: n for n in signed.graph.node for o in n.output}
    for q_old, q_new in zip(*([n for n in g.graph.node if n.op_type == "QuantizeLinear"] for g in (cpu, signed))):
        s, z = float(old[q_old.input[1]]), float(old[q_old.input[2]])
        assert float(inits[q_new.input[1]]) == pytest.approx(max(z, 255 - z) * s / 127) and inits[q_new.input[2]] == 0
        clamped = z == 0 and producer.get(q_old.input[0]) is not None and producer[q_old.input[0]].op_type != "Relu"
        assert (producer[q_new.input[0]].op_type == "Relu") == clamped or producer[q_old.input[0]].op_type == "Relu"
    md = read_onnx_metadata(result.precision_paths["int8"])
    batch = next(b.inputs for b in eval_set_from_dataset(root, md, 4).batches)
    want, got = run(cpu, input=batch), run(signed, input=batch)
    assert (want.argmax(1) == got.argmax(1)).mean() > 0.95  # one bit less on non-negative tensors, same ranges


def test_the_tensorrt_build_parses_the_signed_form(int8_export, monkeypatch):
    config, result, _ = int8_export
    from tests.runtime.test_tensorrt_backend import FakeCudart

    seen = {}

    def build(trt, path, *args, **kwargs):
        seen["name"], seen["types"] = Path(path).name, qdq_types(onnx.load(str(path)))
        raise DlcvError("stop after parsing")

    monkeypatch.setattr(build_module, "load_builder", lambda path: SimpleNamespace(__version__="10.0.0"))
    monkeypatch.setattr(build_module, "build_serialized", build)
    monkeypatch.setattr("dlcv.runtime.tensorrt.cuda_memory.load_cudart", lambda: FakeCudart())
    trt_config = config.__class__(**{**config.__dict__, "tensorrt": TensorRTConfig(precision="int8")})
    with pytest.raises(DlcvError, match="stop after parsing"):
        build_module.build_engine(result, trt_config)
    assert seen["name"] == "fcn8s.int8.tensorrt.onnx" and set(seen["types"]) == {"INT8"}
    with tensorrt_int8_file(result.precision_paths["fp32"]) as same:  # nothing to convert: the file itself
        assert same == result.precision_paths["fp32"]


def test_the_export_writes_the_signed_form_that_onnxruntimes_tensorrt_provider_is_given(int8_export, monkeypatch):
    """TensorRT takes only signed symmetric INT8: beside the CPU form the export writes
    <arch>.int8.tensorrt.onnx, and --device tensorrt opens that file, not the uint8 one."""
    import json

    from tests.runtime.test_onnxruntime_providers import RecordingOrt

    from dlcv.runtime.errors import MissingDependencyError

    config, result, root = int8_export
    cpu_form = result.precision_paths["int8"]
    signed = config.out / "fcn8s.int8.tensorrt.onnx"
    proto = onnx.load(str(signed))
    onnx.checker.check_model(proto, full_check=True)
    assert set(qdq_types(proto)) == {"INT8"} and "UINT8" in set(qdq_types(onnx.load(str(cpu_form))))
    scheme = json.loads(next(p.value for p in proto.metadata_props if p.key == "dlcv.int8"))
    assert scheme["activations"].startswith("int8") and scheme["cpu_form"] == cpu_form.name
    assert read_onnx_metadata(signed) == read_onnx_metadata(cpu_form)  # the same model, the same metadata
    recording = RecordingOrt(monkeypatch)
    with pytest.raises(MissingDependencyError):
        OnnxRuntimeBackend(cpu_form, device="tensorrt")
    assert recording.paths == [str(signed)]


def test_logits_layers_are_the_last_weighted_layers(int8_export, make_checkpoint, tmp_path):
    _, result, _ = int8_export
    assert logits_layers(onnx.load(str(result.precision_paths["fp32"]))) == ("upscore8",)
    vgg = export_onnx(ExportConfig(checkpoint=make_checkpoint("vgg16_bn"), out=tmp_path)).onnx_path
    names = layer_names(onnx.load(str(vgg)))
    assert logits_layers(onnx.load(str(vgg))) == (list(names.values())[-1],) == ("classifier.6",)


# --------------------------------------------------------------------------- layers kept FP32


def folded_relu_graph():
    """conv1 -> uint8 Q with zero point 0 (a ReLU folded into the quantization) -> DQ -> conv2, and
    the FP32 graph it came from (conv1 -> Relu -> conv2)."""
    w1, w2 = (RNG.normal(size=(4, 4, 1, 1)).astype(np.float32) for _ in range(2))
    q2 = np.clip(np.round(w2 / 0.02), -127, 127).astype(np.int8)
    fp32 = one_op_model(helper.make_node("Conv", ["x", "conv1.weight"], ["a"], name="c1"), 4, 4,
                        [numpy_helper.from_array(w1, "conv1.weight"), numpy_helper.from_array(w2, "conv2.weight")])  # fmt: skip
    fp32.graph.node.extend([helper.make_node("Relu", ["a"], ["r"]), helper.make_node("Conv", ["r", "conv2.weight"], ["y"], name="c2")])
    qdq = copy(fp32)
    del qdq.graph.node[1:]
    qdq.graph.initializer.extend([
        numpy_helper.from_array(np.array(0.05, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z"),
        numpy_helper.from_array(q2, "conv2.weight_quantized"), numpy_helper.from_array(np.full(4, 0.02, np.float32), "ws"),
        numpy_helper.from_array(np.zeros(4, np.int8), "wz"),
    ])  # fmt: skip
    qdq.graph.node.extend([
        helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"]), helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"]),
        helper.make_node("DequantizeLinear", ["conv2.weight_quantized", "ws", "wz"], ["w2d"], axis=0),
        helper.make_node("Conv", ["ad", "w2d"], ["y"], name="c2"),
    ])  # fmt: skip
    return fp32, qdq


def test_a_layer_kept_fp32_reads_its_input_unquantized_with_the_folded_relu_back():
    fp32, qdq = folded_relu_graph()
    assert layer_names(qdq) == {"c1": "conv1", "c2": "conv2"}
    assert keep_fp32(qdq, fp32, ["conv2"]) == ["conv2"]
    onnx.checker.check_model(qdq, full_check=True)
    assert [n.op_type for n in qdq.graph.node] == ["Conv", "Relu", "Conv"]  # Q/DQ pairs nothing reads are gone
    x = RNG.normal(size=(2, 4, 5, 5)).astype(np.float32)
    np.testing.assert_allclose(run(qdq, x=x), run(fp32, x=x), atol=1e-5)  # FP32 weight and the ReLU restored
    with pytest.raises(KeyError, match="no layer named fc9; the layers are conv1, conv2"):
        keep_fp32(qdq, fp32, ["fc9"])


def test_chosen_layers_are_kept_fp32_and_unknown_ones_named(int8_export, tmp_path):
    config, result, root = int8_export
    md = read_onnx_metadata(result.precision_paths["int8"])
    tensors = [b.inputs[0] for b in eval_set_from_dataset(root, md, 4).batches]
    quantized = quantize_all(result.precision_paths["fp32"], md, tensors, method="minmax")
    assert quantized.default_fp32_layers() == ("upscore8",) and len(quantized.layers()) == 21
    every = quantized.finish(md, ())
    assert int8_scheme(every)["fp32_layers"] == [] and "DepthToSpace" not in [n.op_type for n in every.graph.node]
    two = quantized.finish(md, ["fc6", "features.0"])
    assert int8_scheme(two)["fp32_layers"] == ["fc6", "features.0"]
    dq_weights = {n.input[0] for n in two.graph.node if n.op_type == "DequantizeLinear"}
    assert "fc6.weight_quantized" not in dq_weights and "fc7.weight_quantized" in dq_weights
    with pytest.raises(DlcvError, match="--int8-fp32: no layer named fc9; the layers are features.0, features.2"):
        quantized.finish(md, ["fc9"])


def test_int8_options_need_int8_and_labels():
    with pytest.raises(DlcvUsageError, match="--int8-fp32 and --int8-sensitivity apply to the INT8 file; add --int8"):
        ExportConfig(checkpoint="x.pt", int8_fp32_layers=("fc6",), int8_sensitivity=True)
    with pytest.raises(DlcvUsageError, match="--int8-sensitivity scores each layer's metric drop on labelled images; add --val"):
        ExportConfig(checkpoint="x.pt", precisions=("int8",), calib="c", int8_sensitivity=True)
    assert parse_layers(None) is None and parse_layers("none") == () and parse_layers(" fc6, upscore8,fc6") == ("fc6", "upscore8")
    with pytest.raises(DlcvUsageError):
        parse_layers(" , ")


# --------------------------------------------------------------------------- sensitivity


def test_sensitivity_sweep_scores_each_layer_against_every_layer_int8(int8_export):
    from dlcv.train.torch_backend import TorchBackend

    config, result, root = int8_export
    md = read_onnx_metadata(result.precision_paths["fp32"])
    eval_set = eval_set_from_dataset(root, md, 4)
    quantized = quantize_all(result.precision_paths["fp32"], md, [b.inputs[0] for b in eval_set.batches], method="minmax")
    with TorchBackend(config.checkpoint) as reference:
        report = sensitivity(quantized, md, reference, eval_set, layers=["upscore8", "fc6", "features.2"])
    assert report.all_int8.layer == ALL_INT8 and [r.layer for r in report.layers] == ["upscore8", "fc6", "features.2"]
    for r in report.layers:
        assert r.recovered == pytest.approx(r.metric_delta - report.all_int8.metric_delta)
    assert [r.op for r in report.layers] == ["ConvTranspose", "Conv", "Conv"]
    assert report.ranked()[0].recovered == max(r.recovered for r in report.layers)
    table = report.table()
    assert "(every layer INT8)" in table and "upscore8 *" in table and "mIoU delta" in table
    assert json.loads(json.dumps(report.to_dict()))["default_fp32_layers"] == ["upscore8"]


def test_export_with_sensitivity_writes_the_table_and_its_json(int8_export, tmp_path):
    config, _, _ = int8_export
    messages: list[str] = []
    swept = config.__class__(**{**config.__dict__, "out": tmp_path, "int8_sensitivity": True})
    result = export_onnx(swept, log=messages.append)
    md = result.metadata
    data = json.loads(sensitivity_path(swept, md).read_text())
    assert len(data["layers"]) == 21 and data["calibration"] == "minmax" and data["all_int8"]["layer"] == ALL_INT8
    assert any(m.startswith("INT8 sensitivity (minmax calibration) on 4 labelled images") for m in messages)
    assert sensitivity_path(swept, md).name == "fcn8s.int8.sensitivity.json"
    assert int8_scheme(onnx.load(str(result.precision_paths["int8"])))["fp32_layers"] == ["upscore8"]
