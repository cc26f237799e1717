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
