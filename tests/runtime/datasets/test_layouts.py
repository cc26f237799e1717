"""Dataset layouts: each fixture is recognised as exactly its layout, read with the right labels and
splits, and the class maps and user mistakes behave as documented."""
import json

import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError, DlcvUsageError
from dlcv.runtime.imageio import read_image, write_png
from dlcv.runtime.datasets import (
    CMP_CLASSES, LANDCOVER_CLASSES, LayoutOptions, cmp_split_sizes, get_format, list_formats, load_class_map, open_dataset,
)  # fmt: skip

from .fixtures import ALL_FIXTURES, FORMAT_OF, OFFICE_DOMAINS, write_camvid, write_cmp_facade, write_csv_layout, write_landcover, write_office_home


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("layouts")
    return {name: make(base / name) for name, make in ALL_FIXTURES.items()}


@pytest.mark.parametrize("name", sorted(ALL_FIXTURES))
def test_each_layout_is_recognised_as_itself_only(datasets, name):
    root = datasets[name]
    assert [f.name for f in list_formats() if f.detect(root)] == [FORMAT_OF[name]]
    assert get_format(None, root).name == FORMAT_OF[name]
    assert get_format(FORMAT_OF[name], root).name == FORMAT_OF[name]


def test_every_layout_has_a_fixture():
    assert {f.name for f in list_formats()} == set(FORMAT_OF.values())


def test_camvid_void_is_ignored_and_masks_pair_by_stem(datasets):
    ds = open_dataset(datasets["camvid"])
    assert ds.info.num_classes == 11 and ds.info.ignore_index == 11
    s = ds.samples("train")[0]
    assert s.image.stem == s.target.stem and s.target.parent.name == "trainannot"
    assert ds.read_labels(s)[0, :3].tolist() == [11, 11, 11]
    assert [len(ds.samples(x)) for x in ("train", "val", "test")] == [4, 2, 2]


def test_landcover_colours_map_to_the_seven_classes(tmp_path):
    root = write_landcover(tmp_path / "lc")
    ds = open_dataset(root)
    assert ds.info.class_names == LANDCOVER_CLASSES and ds.info.exclude_classes == (6,)
    assert [len(ds.samples(s)) for s in ("train", "val")] == [4, 2]  # validation/ is the val split
    # a hand-made mask: every colour of the specification, pure red (no class), and a dim cyan (>= 128 counts as set)
    colours = [(0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0), (255, 0, 0), (10, 130, 200)]
    mask = np.array([colours], dtype=np.uint8)
    write_png(root / "train" / "0000_mask.png", mask)
    write_png(root / "train" / "0000_sat.jpg", np.zeros_like(mask))
    sample = ds.samples("train")[0]
    assert sample.image.name == "0000_sat.jpg" and sample.target.name == "0000_mask.png"
    assert ds.read_labels(sample).tolist() == [[0, 1, 2, 3, 4, 5, 6, 255, 0]]


def test_cmp_facade_labels_shift_and_split_is_fixed(tmp_path):
    root = write_cmp_facade(tmp_path / "cmp", base=6, extended=4)
    ds = open_dataset(root)
    assert ds.info.class_names == CMP_CLASSES
    splits = {s: ds.samples(s) for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [8, 1, 1]
    names = [p.image.name for v in splits.values() for p in v]
    assert sorted(names) == sorted({*names}) and len(names) == 10  # disjoint, complete
    assert {p.image.parent.name for p in ds.samples("train")} == {"base", "extended"}
    assert open_dataset(root).samples("val") == splits["val"]  # the same files every time
    labels = ds.read_labels(splits["train"][0])
    assert labels[-1, -2:].tolist() == [255, 255]  # 0 = unlabelled -> ignored
    assert 0 <= labels[:-1].min() and labels[:-1].max() <= 11
    # the palette PNG's indices, not its colours, are the labels
    from PIL import Image

    raw = np.asarray(Image.open(splits["train"][0].target))
    assert np.array_equal(labels[:-1], raw[:-1].astype(np.int64) - 1)


def test_cmp_split_sizes():
    assert cmp_split_sizes(606, None) == (500, 30, 76)
    assert cmp_split_sizes(60, None) == (49, 3, 8)
    assert cmp_split_sizes(10, (6, 2, 2)) == (6, 2, 2)
    with pytest.raises(DlcvUsageError, match="must add up to the 10"):
        cmp_split_sizes(10, (5, 2, 2))


def test_office_home_domains_and_split_rule(tmp_path):
    root = write_office_home(tmp_path / "oh", domains=OFFICE_DOMAINS, per_class=10)
    ds = open_dataset(root)
    assert ds.info.class_names == ("Alarm_Clock", "Backpack", "Batteries")
    train, val, test = (ds.samples(s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (4 * 3 * 8, 4 * 3, 4 * 3)
    assert {p.image.name for p in val} == {"00009.jpg"} and {p.image.name for p in test} == {"00010.jpg"}
    only = open_dataset(root, options=LayoutOptions(domains=("real world", "Art")))
    assert {p.image.parent.parent.name for p in only.samples("train")} == {"Real World", "Art"}
    with pytest.raises(DlcvUsageError, match="no domain folder 'Sketch'"):
        open_dataset(root, options=LayoutOptions(domains=("Sketch",))).samples("train")


def test_imagefolder_per_split(datasets):
    ds = open_dataset(datasets["imagefolder"])
    assert ds.info.class_names == ("cat", "dog", "owl")
    assert [(p.image.parent.name, p.target) for p in ds.samples("val")[:3]] == [("cat", 0), ("cat", 0), ("dog", 1)]
    with pytest.raises(DlcvUsageError, match="--domains needs <domain>/<class>/ folders"):
        open_dataset(datasets["imagefolder"], options=LayoutOptions(domains=("Art",))).samples("train")


def test_layout_options_only_where_they_apply(datasets):
    with pytest.raises(DlcvUsageError, match="--split-sizes does not apply to the camvid layout"):
        open_dataset(datasets["camvid"], options=LayoutOptions(split_sizes=(1, 1, 1)))
    with pytest.raises(DlcvUsageError, match="--domains does not apply to the cmp-facade layout"):
        open_dataset(datasets["cmp-facade"], options=LayoutOptions(domains=("Art",)))


def test_csv_labels_by_name_or_index(tmp_path):
    root = write_csv_layout(tmp_path / "office")
    ds = open_dataset(root)
    assert ds.info.class_names == ("Couch", "Desk", "Fan")
    assert [s.target for s in ds.samples("val")] == [0, 0, 1, 1, 2, 2]
    assert ds.samples("val")[2].image == root / "val" / "Desk00000.jpg"
    # integer labels, images beside the CSV
    numeric = tmp_path / "numeric"
    numeric.mkdir()
    write_png(numeric / "a.png", np.zeros((4, 4, 3), np.uint8))
    (numeric / "train.csv").write_text("id,filename,label\n0,a.png,2\n")
    (numeric / "val.csv").write_text("id,filename,label\n0,a.png,0\n")
    ds = open_dataset(numeric)
    assert ds.info.class_names == ("0", "1", "2") and ds.samples("train")[0].target == 2


def test_csv_mistakes_name_the_line(tmp_path):
    root = write_csv_layout(tmp_path / "office")
    (root / "val.csv").write_text("id,filename,label\n0,Couch00000.jpg,Couch\n1,missing.jpg,Couch\n")
    with pytest.raises(DlcvError, match=r"val.csv, line 3: image 'missing.jpg' not found"):
        open_dataset(root).samples("val")
    (root / "val.csv").write_text("id,filename,label\n0,Couch00000.jpg,\n")
    with pytest.raises(DlcvError, match=r"line 2: empty filename or label"):
        open_dataset(root).samples("val")


def test_camvid3_class_map(datasets):
    ds = open_dataset(datasets["camvid"], class_map="camvid3")
    assert ds.info.class_names == ("background", "ground", "road_user") and ds.info.ignore_index == 11
    source = open_dataset(datasets["camvid"])
    sample = ds.samples("train")[0]
    raw, mapped = source.read_labels(sample), ds.read_labels(sample)
    table = {0: 0, 1: 0, 2: 0, 3: 1, 4: 1, 5: 0, 6: 0, 7: 0, 8: 2, 9: 2, 10: 2, 11: 11}
    assert np.array_equal(mapped, np.vectorize(table.get)(raw))


def test_class_map_json_and_mismatch(tmp_path, datasets):
    path = tmp_path / "two.json"
    path.write_text(json.dumps({"class_names": ["road", "car"], "map": {"3": 0, "8": 1}}))
    cmap = load_class_map(str(path))
    assert cmap.lut == (-1, -1, -1, 0, -1, -1, -1, -1, 1)
    with pytest.raises(DlcvUsageError, match="written for 9 source classes but the dataset has 11"):
        open_dataset(datasets["camvid"], class_map=str(path))
    path.write_text(json.dumps({"class_names": ["road", "car"], "map": {"3": 0, "8": 1}, "source_classes": 11}))
    ds = open_dataset(datasets["camvid"], class_map=str(path))
    labels = ds.read_labels(ds.samples("train")[0])
    assert set(np.unique(labels)) <= {0, 1, 11}
    with pytest.raises(DlcvUsageError, match="neither a preset"):
        load_class_map("no-such-map")


def test_class_map_on_classification_drops_unmapped(tmp_path, datasets):
    path = tmp_path / "pets.json"
    path.write_text(json.dumps({"class_names": ["pet"], "map": {"0": 0, "1": 0}, "source_classes": 3}))
    ds = open_dataset(datasets["imagefolder"], class_map=str(path))
    assert ds.info.class_names == ("pet",)
    assert [s.target for s in ds.samples("val")] == [0, 0, 0, 0]  # the owls are left out


def test_missing_masks_and_mismatched_format_are_reported(tmp_path, datasets):
    root = write_camvid(tmp_path / "cv", counts=(2, 1, 0))
    next((root / "trainannot").iterdir()).unlink()
    with pytest.raises(DlcvError, match="no mask for 1 image"):
        open_dataset(root).samples("train")
    with pytest.raises(DlcvError, match="does not look like the 'landcover' layout"):
        get_format("landcover", datasets["camvid"])
    image = read_image(open_dataset(datasets["landcover"]).samples("train")[0].image)
    assert image.shape == (16, 16, 3)
