"""Dataset layouts on disk (``--format``): a registry of readers, auto-detected when not named.

Each format lists the samples of a split and reads their targets; every image is read by
dlcv.runtime's decoder, so training sees exactly what deployment sees. The layouts:

``camvid``      ``train/ trainannot/ val/ valannot/ [test/ testannot/]``: images and index-PNG masks
                of the same stem; the 11 SegNet classes with void (11) ignored, or ``classes.json``.
``dlcv-cls``    ``train/ val/ [test/]`` (or ``train_*/`` ...) folders of ``<label>_<index>.png``.
``imagefolder`` class folders per split (``train/<class>/x.jpg``, ``val/`` or ``validation/``,
                ``test/``), or Office-Home's ``<domain>/<class>/x.jpg`` without split folders: then
                ``--domains`` picks the domains (all by default) and every class of every domain is
                split by file-name order, the 9th of each 10 files to val, the 10th to test, the
                rest to train (80/10/10, the same files on every machine).
``csv``         ``train.csv`` (``id,filename,label``; val.csv/validation.csv, test.csv likewise) with the
                images in ``train/`` (or beside the CSV); labels are class indices or class names.
``landcover``   ``train/ validation/`` (or ``val/``) of ``NNNN_sat.jpg`` + ``NNNN_mask.png`` RGB colour
                masks -> 7 classes; mIoU over the first six ("unknown" excluded).
``cmp-facade``  ``base/ [extended/]`` of ``cmp_bNNNN.jpg`` + ``cmp_bNNNN.png`` (labels 1-12 -> 0-11),
                split 500/30/76 (train/val/test) by a fixed permutation, as in the course notebook.

``--class-map`` relabels any layout: a preset name (``camvid3``) or a JSON file.
"""
from __future__ import annotations

from .base import (
    SPLIT_NAMES, SPLITS, DatasetFormat, DatasetInfo, LayoutOptions, Sample, get_format, list_formats, register_format,
)  # fmt: skip
from .camvid import SegmentationFolders
from .class_map import CLASS_MAP_PRESETS, ClassMap, load_class_map
from .cmp_facade import CMP_CLASSES, CMP_PALETTE, CMP_SPLIT, CmpFacadeFormat, cmp_split_sizes, read_index_png
from .csv_table import CsvFormat
from .imagefolder import DOMAIN_SPLIT_PERIOD, ImageFolderFormat
from .label_prefixed import LabelPrefixedFiles
from .landcover import LANDCOVER_CLASSES, LANDCOVER_COLOURS, LandCoverFormat
from .opened import OpenDataset, open_dataset

for _layout in (SegmentationFolders, LabelPrefixedFiles, ImageFolderFormat, CsvFormat, LandCoverFormat, CmpFacadeFormat):
    register_format(_layout())

__all__ = [
    "CLASS_MAP_PRESETS", "CMP_CLASSES", "CMP_PALETTE", "CMP_SPLIT", "DOMAIN_SPLIT_PERIOD", "LANDCOVER_CLASSES",
    "LANDCOVER_COLOURS", "SPLITS", "SPLIT_NAMES", "ClassMap", "CmpFacadeFormat", "CsvFormat", "DatasetFormat",
    "DatasetInfo", "ImageFolderFormat", "LabelPrefixedFiles", "LandCoverFormat", "LayoutOptions", "OpenDataset",
    "Sample", "SegmentationFolders", "cmp_split_sizes", "get_format", "list_formats", "load_class_map",
    "open_dataset", "read_index_png", "register_format",
]  # fmt: skip
