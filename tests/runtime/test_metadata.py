"""Artifact metadata: round trip, validation, sidecars."""
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import ArtifactMetadata, read_sidecar, sidecar_path, write_sidecar
from dlcv.runtime.preprocess import PreprocessSpec


def make(**changes):
    base = dict(task="segmentation", arch="fcn8s", num_classes=2, class_names=("bg", "fg"),
                preprocess=PreprocessSpec(), palette=((0, 0, 0), (255, 0, 0)))  # fmt: skip
    base.update(changes)
    return ArtifactMetadata(**base)


def test_json_round_trip():
    md = make(precision="fp16", exclude_classes=(1,), engine={"gpu": "H100"})
    assert ArtifactMetadata.from_json(md.to_json()) == md


def test_sidecar_round_trip(tmp_path):
    engine = tmp_path / "m.plan"
    path = write_sidecar(engine, make())
    assert path == sidecar_path(engine) and path.name == "m.plan.json"
    assert read_sidecar(engine) == make()


def test_missing_sidecar_names_the_engine(tmp_path):
    with pytest.raises(DlcvError, match="m.plan.*rebuild"):
        read_sidecar(tmp_path / "m.plan")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(task="detection"), "task must be"),
        (lambda d: d.update(num_classes=3), "num_classes=3 but 2 class names"),
        (lambda d: d.pop("preprocess"), "lacks the key"),
        (lambda d: d.update(extra=1), "unknown dlcv metadata keys"),
        (lambda d: d.update(palette=[[0, 0, 0]]), "palette"),
    ],
)
def test_invalid_metadata_names_the_source(mutate, message):
    d = make().to_dict()
    mutate(d)
    with pytest.raises(DlcvError, match=message) as info:
        ArtifactMetadata.from_json(json.dumps(d), source="model.onnx")
    assert str(info.value).startswith("model.onnx")


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200), st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4), max_leaves=10,
).map(json.dumps)))  # fmt: skip
def test_parser_never_crashes_on_garbage(data):
    try:
        ArtifactMetadata.from_json(data, source="fuzz")
    except DlcvError:
        pass


# --------------------------------------------------------------------------- ONNX metadata, read from the file


def test_onnx_metadata_is_read_from_the_file_without_an_engine(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from dlcv.runtime.metadata import METADATA_KEY, read_onnx_metadata

    md = make(class_names=("fond", "vélo"), palette=None)
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2, "H", "W"])
    weight = helper.make_tensor("W", TensorProto.FLOAT, [2, 3, 1, 1], [0.5] * 6)
    graph = helper.make_graph([helper.make_node("Conv", ["input", "W"], ["logits"])], "g", [x], [y], [weight])
    model = helper.make_model(graph, producer_name="test")
    helper.set_model_props(model, {"other": "kept apart", METADATA_KEY: md.to_json()})
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert read_onnx_metadata(path) == md

    helper.set_model_props(model, {"other": "x"})
    onnx.save(model, str(path))
    with pytest.raises(DlcvError, match="carries no dlcv metadata"):
        read_onnx_metadata(path)


@pytest.mark.parametrize("content", [b"", b"\xff" * 20, b"\x0a\x99"])
def test_onnx_metadata_of_a_file_that_is_not_onnx_is_one_line(tmp_path, content):
    from dlcv.runtime.metadata import read_onnx_metadata

    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(DlcvError) as info:
        read_onnx_metadata(path)
    assert "not a valid ONNX file" in str(info.value) and str(path) in str(info.value) and "\n" not in str(info.value)


def test_the_tensorrt_profile_round_trips_and_a_malformed_one_is_refused():
    profile = {"min": [1, 3, 32, 32], "opt": [4, 3, 128, 128], "max": [4, 3, 1024, 1024]}
    md = make(tensorrt_profile=profile)
    again = ArtifactMetadata.from_json(md.to_json())
    assert again == md and again.tensorrt_profile == profile
    assert "tensorrt_profile" not in json.loads(make().to_json())  # files without one stay as they were
    bad = json.loads(md.to_json())
    bad["tensorrt_profile"]["min"] = [8, 3, 32, 32]  # min batch above max
    with pytest.raises(DlcvError, match="malformed dlcv metadata.*min <= opt <= max"):
        ArtifactMetadata.from_json(json.dumps(bad), source="m.onnx")
