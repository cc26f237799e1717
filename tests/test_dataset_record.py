"""A model trained with a class map records how its data was read, and export (--val, --calib),
dlcv-bench and dlcv-analyze reopen the dataset with that record: the same classes and labels as
training, where recognising the folder alone would see CamVid's 11 classes."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dlcv.runtime.datasets import CLASS_MAP_PRESETS, DatasetRecord, LayoutOptions
from dlcv.runtime.errors import DlcvError, DlcvUsageError

from .runtime.datasets.fixtures import write_camvid, write_landcover

CAMVID3 = DatasetRecord("camvid", LayoutOptions(), CLASS_MAP_PRESETS["camvid3"], ignore_index=11)


@pytest.fixture(scope="module")
def camvid3_run(tmp_path_factory):
    """(dataset root, best.pt) of a one-epoch narrow FCN8s trained on a CamVid set with camvid3."""
    from dlcv.train.config import TrainConfig
    from dlcv.train.loop import train

    root = write_camvid(tmp_path_factory.mktemp("data") / "camvid", counts=(4, 3, 2))
    result = train(TrainConfig(model="fcn8s", data=str(root), out=tmp_path_factory.mktemp("run"), class_map="camvid3",
                               epochs=1, width=0.0625, batch_size=4, progress=False, overlays=0, tensorboard=False))  # fmt: skip
    return root, result.best


@pytest.fixture(scope="module")
def metadata(camvid3_run):
    from dlcv.train.checkpoint import load_checkpoint, metadata_from_checkpoint

    return metadata_from_checkpoint(load_checkpoint(camvid3_run[1]))


def without_record(path, tmp_path):
    """A copy of the checkpoint as dlcv wrote them before the record existed."""
    from dlcv.train.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(path)
    del ckpt["dataset"]
    return save_checkpoint(tmp_path / "old.pt", ckpt)


def test_the_checkpoint_records_the_class_map_and_label_rules(camvid3_run, metadata):
    from dlcv.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(camvid3_run[1])
    assert ckpt["dataset"] == json.loads(json.dumps(CAMVID3.to_dict()))  # plain JSON values
    assert (ckpt["ignore_index"], ckpt["exclude_classes"], ckpt["class_names"]) == (11, [], ["background", "ground", "road_user"])
    assert metadata.dataset == CAMVID3


def test_export_val_reopens_the_set_with_the_record_and_the_onnx_file_carries_it(camvid3_run, tmp_path):
    from dlcv.export import ExportConfig, export_onnx
    from dlcv.runtime.backends.onnxruntime_backend import OnnxRuntimeBackend

    root, best = camvid3_run
    result = export_onnx(ExportConfig(checkpoint=best, out=tmp_path, val=root, input_size=(32, 32)))
    assert result.precision_report.eval_source == f"3 labelled images from the val split of {root} (camvid layout, class map camvid3)"
    with OnnxRuntimeBackend(result.onnx_path) as backend:
        assert backend.metadata.dataset == CAMVID3


def test_export_eval_set_labels_are_the_class_mapped_ones(camvid3_run, metadata):
    from dlcv.export.verify import eval_set_from_dataset

    root, _ = camvid3_run
    eval_set = eval_set_from_dataset(root, metadata, count=10)
    labels = np.concatenate([b.labels.ravel() for b in eval_set.batches])
    assert eval_set.count == 3 and set(np.unique(labels)) == {0, 1, 2, 11}  # 11: CamVid's void, still ignored
    with pytest.raises(DlcvUsageError, match="has 11 classes .*the model 3 .*records no dataset"):
        eval_set_from_dataset(root, metadata.with_(dataset=None), count=10)  # recognising the folder alone


def test_a_calibration_dataset_that_cannot_be_opened_is_an_error_not_unlabelled_images(camvid3_run, metadata, tmp_path):
    from dlcv.export import ExportConfig
    from dlcv.export.onnx_export import build_eval_set

    root = write_camvid(tmp_path / "broken")
    (root / "valannot" / "0001TP_000000.png").unlink()
    config = ExportConfig(checkpoint=camvid3_run[1], out=tmp_path, precisions=("int8",), calib=root)
    with pytest.raises(DlcvError, match=f"{root / 'valannot'}: no mask for 1 image"):
        build_eval_set(config, metadata, None, None)
    landcover = write_landcover(tmp_path / "landcover")
    other = ExportConfig(checkpoint=camvid3_run[1], out=tmp_path, precisions=("int8",), calib=landcover)
    with pytest.raises(DlcvError, match=f"{landcover}: the model's dataset was read as the camvid layout"):
        build_eval_set(other, metadata, None, None)


def test_calibration_takes_the_train_split_through_the_record(camvid3_run, metadata):
    from dlcv.export.int8 import calibration_paths

    root, _ = camvid3_run
    paths, where = calibration_paths(root, 3, metadata.dataset)
    assert where == f"the train split of {root} (camvid layout, class map camvid3)"
    assert [p.parent.name for p in paths] == ["train"] * 3


def test_bench_reopens_the_set_with_the_record(camvid3_run, metadata, tmp_path):
    from dlcv.bench.data import load_images

    root, _ = camvid3_run
    images = load_images(str(root), metadata, count=8, shape=(16, 16), seed=0, workdir=tmp_path)
    assert images.description == f"3 images of the val split of {root} (camvid layout, class map camvid3), with their labels"
    assert images.notes == () and len(images.labels) == 3
    assert set(np.unique(np.concatenate([lbl.ravel() for lbl in images.labels]))) <= {0, 1, 2, 11}
    unrecorded = metadata.with_(dataset=None)
    fallback = load_images(str(root), unrecorded, count=8, shape=(16, 16), seed=0, workdir=tmp_path)
    assert fallback.labels is None and "11 classes" in fallback.notes[0]  # what recognising the folder alone gives


def test_analyze_reopens_the_set_with_the_record(camvid3_run, tmp_path):
    from dlcv.analyze.evaluation import open_eval_split
    from dlcv.train.checkpoint import load_checkpoint

    root, best = camvid3_run
    split = open_eval_split(str(root), load_checkpoint(best))
    assert (split.split, len(split), split.info.num_classes, split.notes) == ("val", 3, 3, ())
    _, target = split.dataset[0]
    assert set(np.unique(target.numpy())) <= {0, 1, 2, 11}
    with pytest.raises(DlcvUsageError, match="has 11 classes"):
        open_eval_split(str(root), load_checkpoint(without_record(best, tmp_path)))
    assert open_eval_split(str(root), load_checkpoint(without_record(best, tmp_path)), class_map="camvid3").info.num_classes == 3
