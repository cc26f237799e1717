"""open_split: the record decides layout, options and class map; one evaluation-split order; the
dataset is checked against the model; a folder that cannot be opened is an error naming it."""
import numpy as np
import pytest

from dlcv.runtime.datasets import (
    CLASS_MAP_PRESETS, EVAL_SPLIT_ORDER, DatasetRecord, LayoutOptions, label_in_name, open_dataset, open_split,
    recognise_layout,
)  # fmt: skip
from dlcv.runtime.datasets.ground_truth import ClassificationLabels
from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import write_png
from dlcv.runtime.metadata import ArtifactMetadata
from dlcv.runtime.preprocess import PreprocessSpec

from .fixtures import write_camvid, write_dlcv_cls, write_landcover, write_office_home

CAMVID3 = DatasetRecord("camvid", LayoutOptions(), CLASS_MAP_PRESETS["camvid3"], ignore_index=11)


def model(task="segmentation", names=("background", "ground", "road_user"), record=CAMVID3, ignore=11) -> ArtifactMetadata:
    return ArtifactMetadata(task=task, arch="m", num_classes=len(names), class_names=tuple(names),
                            preprocess=PreprocessSpec(), ignore_index=ignore, dataset=record)  # fmt: skip


def test_evaluation_split_order_is_val_then_test_then_train(tmp_path):
    assert EVAL_SPLIT_ORDER == ("val", "test", "train")
    full = open_split(write_camvid(tmp_path / "full", counts=(4, 2, 3)), CAMVID3)
    assert (full.name, len(full), full.notes) == ("val", 2, ())
    no_val = open_split(write_camvid(tmp_path / "no_val", counts=(4, 0, 3)), CAMVID3)
    assert (no_val.name, len(no_val)) == ("test", 3)
    assert no_val.notes == ("the dataset has no val split; its test split is used",)
    only_train = open_split(write_camvid(tmp_path / "train_only", counts=(4, 0, 0)), CAMVID3)
    assert (only_train.name, len(only_train)) == ("train", 4)
    assert "no val or test split" in only_train.notes[0] and "optimistic" in only_train.notes[1]


def test_a_named_split_is_opened_and_an_empty_one_is_an_error(tmp_path):
    root = write_camvid(tmp_path / "camvid", counts=(4, 2, 0))
    assert [s.image.parent.name for s in open_split(root, CAMVID3, "train").samples] == ["train"] * 4
    with pytest.raises(DlcvError, match=r"camvid: the test split holds no images \(camvid layout, class map camvid3\)"):
        open_split(root, CAMVID3, "test")
    with pytest.raises(DlcvUsageError, match="unknown split 'dev'"):
        open_split(root, CAMVID3, "dev")


def test_the_recorded_class_map_and_options_are_applied(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    split = open_split(root, model())
    assert split.info.class_names == ("background", "ground", "road_user") and split.record == CAMVID3
    raw = open_dataset(root)
    for sample in split.samples:
        source, mapped = raw.read_labels(sample), split.read_labels(sample)
        lut = np.array(CLASS_MAP_PRESETS["camvid3"].lut + (11,))
        np.testing.assert_array_equal(mapped, lut[source])  # void (11) stays ignored
    office = write_office_home(tmp_path / "office", domains=("Art", "Clipart"))
    art = DatasetRecord("imagefolder", LayoutOptions(domains=("Art",)))
    assert {s.image.parts[-3] for s in open_split(office, art, "train").samples} == {"Art"}
    assert {s.image.parts[-3] for s in open_split(office, None, "train").samples} == {"Art", "Clipart"}


def test_without_a_record_the_layout_is_recognised(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    split = open_split(root, model(names=tuple(f"c{i}" for i in range(11)), record=None))
    assert split.record == DatasetRecord("camvid", LayoutOptions(), None, 11, ())
    assert "class names" in split.notes[0]  # c0.. vs sky, building, ...


def test_a_dataset_that_does_not_fit_the_model_is_refused(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    with pytest.raises(DlcvUsageError, match="has 11 classes .*camvid layout.*, the model 3 .*records no dataset"):
        open_split(root, model(record=None))  # an older checkpoint: no class map to apply
    cls = write_dlcv_cls(tmp_path / "cls")
    with pytest.raises(DlcvUsageError, match="a classification dataset .*but the model is a segmentation model"):
        open_split(cls, model(record=None))


def test_a_folder_in_another_layout_than_recorded_is_an_error_naming_it(tmp_path):
    landcover = write_landcover(tmp_path / "landcover")
    with pytest.raises(DlcvError, match="landcover: the model's dataset was read as the camvid layout .* a landcover dataset"):
        open_split(landcover, model())
    with pytest.raises(DlcvError, match="landcover: the model's dataset was read as the camvid layout"):
        recognise_layout(landcover, model())
    images = tmp_path / "images"
    write_png(images / "a.png", np.zeros((4, 4, 3), np.uint8))
    assert recognise_layout(images, model()) is None  # a plain image folder is no dataset
    with pytest.raises(DlcvError, match="images: the model's dataset was read as the camvid layout .*not in that layout"):
        open_split(images, model())
    with pytest.raises(DlcvError, match="nowhere: dataset folder not found"):
        open_split(tmp_path / "nowhere", model())


def test_an_explicit_format_and_class_map_override_the_record(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    assert open_split(root, CAMVID3, class_map=None).info.num_classes == 3  # None keeps the record's map
    remap = tmp_path / "two.json"
    remap.write_text('{"class_names": ["static", "moving"], "map": {"8": 1, "9": 1, "10": 1}, "source_classes": 11}')
    assert open_split(root, CAMVID3, class_map=str(remap)).info.class_names == ("static", "moving")
    landcover = write_landcover(tmp_path / "landcover")
    plain = DatasetRecord("camvid", LayoutOptions(domains=None), ignore_index=11)
    assert open_split(landcover, plain, format="landcover").record.format == "landcover"
    with pytest.raises(DlcvUsageError, match="camvid3.*11 source classes but the dataset has 7"):
        open_split(landcover, CAMVID3, format="landcover")  # the recorded map still applies: override it too


def test_broken_dataset_is_an_error_naming_the_folder(tmp_path):
    root = write_camvid(tmp_path / "camvid")
    (root / "valannot" / "0001TP_000000.png").unlink()
    with pytest.raises(DlcvError, match="valannot: no mask for 1 image"):
        open_split(root, model())


def test_subset_spreads_evenly(tmp_path):
    split = open_split(write_camvid(tmp_path / "camvid", counts=(7, 2, 0)), CAMVID3, "train")
    assert [s.image.stem[-1] for s in split.subset(4).samples] == ["0", "2", "4", "6"]
    assert split.subset(10).samples == split.samples


def test_dlcv_cls_file_names_are_parsed_once_for_the_layout_and_for_infer_labels(tmp_path):
    assert [label_in_name(n) for n in ("3_0012.png", "cat_7.jpg", "a_b_3.png", "7.png", "cat_x.png")] == [
        "3", "cat", "a_b", None, None,
    ]  # fmt: skip
    root = write_dlcv_cls(tmp_path / "cls")
    samples = open_split(root, None, "train").samples
    truth = ClassificationLabels.from_folder(root / "train_50", ("0", "1", "2"), recursive=False)
    assert truth.labels == {s.image.name: str(s.target) for s in samples}
