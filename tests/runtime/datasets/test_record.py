"""The dataset record: what an opened dataset records, its JSON round trip on its own, inside
ArtifactMetadata and inside an ONNX file, and the one source of the label rules."""
import json
import subprocess
import sys

import onnx
import pytest

from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend
from dlcv.runtime.datasets import CLASS_MAP_PRESETS, ClassMap, DatasetRecord, LayoutOptions, open_dataset
from dlcv.runtime.errors import DlcvError
from dlcv.runtime.metadata import METADATA_KEY, ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec

from ..onnx_fixtures import SEG_NAMES, colour_model
from .fixtures import write_camvid, write_office_home

RECORD = DatasetRecord(
    format="camvid",
    options=LayoutOptions(),
    class_map=CLASS_MAP_PRESETS["camvid3"],
    ignore_index=11,
    exclude_classes=(0,),
)


def metadata(**changes) -> ArtifactMetadata:
    base = dict(task="segmentation", arch="fcn8s", num_classes=3, class_names=("background", "ground", "road_user"),
                preprocess=PreprocessSpec(), ignore_index=11, exclude_classes=(0,), dataset=RECORD)  # fmt: skip
    base.update(changes)
    return ArtifactMetadata(**base)


def test_an_opened_dataset_records_layout_options_class_map_content_and_label_rules(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    record = open_dataset(root, class_map="camvid3").record
    assert record == DatasetRecord("camvid", LayoutOptions(), CLASS_MAP_PRESETS["camvid3"], 11, ())
    office = write_office_home(tmp_path / "office")
    assert open_dataset(office, options=LayoutOptions(domains=("Art",))).record.options.domains == ("Art",)


def test_a_class_map_file_is_recorded_by_content_not_by_path(tmp_path):
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"class_names": ["static", "moving"], "map": {"8": 1, "9": 1, "0": 0}, "source_classes": 11}))
    record = open_dataset(write_camvid(tmp_path / "camvid"), class_map=str(path)).record
    path.unlink()  # the deployment machine has no such file
    text = json.dumps(record.to_dict())
    assert str(tmp_path) not in text
    again = DatasetRecord.from_dict(json.loads(text))
    assert again == record
    assert again.class_map == ClassMap("two", ("static", "moving"), (0, -1, -1, -1, -1, -1, -1, -1, 1, 1, -1), None, 11)


def test_record_round_trips_through_metadata_json():
    md = metadata()
    text = md.to_json()
    assert json.loads(text)["dataset"]["class_map"]["name"] == "camvid3"
    assert ArtifactMetadata.from_json(text) == md


def test_metadata_without_a_record_writes_and_reads_as_before():
    md = metadata(dataset=None, ignore_index=255, exclude_classes=())
    d = md.to_dict()
    assert "dataset" not in d  # files without a record are unchanged
    assert ArtifactMetadata.from_dict(d).dataset is None


def test_record_round_trips_through_an_onnx_files_metadata(tmp_path):
    path = colour_model(tmp_path / "m.onnx", metadata=False)
    record = DatasetRecord("landcover", LayoutOptions(), None, 255, (4,))
    md = ArtifactMetadata(task="segmentation", arch="colour", num_classes=len(SEG_NAMES), class_names=SEG_NAMES,
                          preprocess=PreprocessSpec(mean=(0, 0, 0), std=(1, 1, 1)), exclude_classes=(4,),
                          dataset=record)  # fmt: skip
    model = onnx.load(str(path))
    onnx.helper.set_model_props(model, {METADATA_KEY: md.to_json()})
    onnx.save(model, str(path))
    with OnnxRuntimeBackend(path) as backend:
        assert backend.metadata.dataset == record and backend.metadata == md


@pytest.mark.parametrize(
    "changes, message",
    [
        (dict(ignore_index=255), "ignore_index 255 differs from the dataset record's 11"),
        (dict(exclude_classes=()), r"exclude_classes \[\] differ from the dataset record's \[0\]"),
        (dict(num_classes=2, class_names=("a", "b")), "class map 'camvid3' has 3 classes, the model 2"),
    ],
)
def test_the_record_is_the_one_source_of_the_label_rules(changes, message):
    with pytest.raises(DlcvError, match=message):
        metadata(**changes)
    d = metadata().to_dict()
    d.update({k: list(v) if isinstance(v, tuple) else v for k, v in changes.items()})
    with pytest.raises(DlcvError, match=message):
        ArtifactMetadata.from_dict(d, source="model.onnx")


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.pop("format"), "lacks the key 'format'"),
        (lambda d: d.update(extra=1), "unknown keys"),
        (lambda d: d["class_map"].update(lut=[0, 7]), "outside 0..2"),
        (lambda d: d.update(options={"split_sizes": ["a"]}), "malformed"),
    ],
)
def test_a_broken_record_names_the_file(mutate, message):
    d = metadata().to_dict()
    mutate(d["dataset"])
    with pytest.raises(DlcvError, match=message) as info:
        ArtifactMetadata.from_dict(d, source="model.onnx")
    assert str(info.value).startswith("model.onnx: dlcv metadata: dataset record")


def test_the_datasets_package_imports_without_torch():
    code = (
        "import sys, dlcv.runtime.datasets, dlcv.runtime.metadata, dlcv.runtime.label_scoring\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision', 'sklearn') "
        "or m.startswith(('dlcv.train', 'dlcv.export')))\n"
        "print(bad)\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "[]"
