"""Dataset layouts on disk (``--format``), the dataset record a model carries, and one way to
open a split from it (:func:`open_split`). numpy + OpenCV only: no torch, so export, bench,
analyze and ``dlcv-infer --labels`` read data exactly as training did.

Each layout is one module: it lists the samples of a split and reads their targets; every
image is read by dlcv.runtime's decoder, so training sees exactly what deployment sees. The
layouts:

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

Modules: :mod:`.base` (the layout contract and registry), one module per layout, :mod:`.folders`
(what layouts share), :mod:`.class_map`, :mod:`.opened` (a folder read through layout, options
and class map), :mod:`.record` (:class:`DatasetRecord`, what checkpoints and artifacts carry),
:mod:`.split` (:func:`open_split`, :data:`EVAL_SPLIT_ORDER`), :mod:`.ground_truth` (the labels
of ``dlcv-infer --labels`` for classification).
"""
from __future__ import annotations

from .base import (
    SPLIT_NAMES, SPLITS, DatasetFormat, DatasetInfo, LayoutOptions, Sample, format_named, get_format, list_formats,
    recognising, register_format,
)  # fmt: skip
from .camvid import SegmentationFolders
from .class_map import CLASS_MAP_PRESETS, ClassMap, load_class_map
from .cmp_facade import CMP_CLASSES, CMP_PALETTE, CMP_SPLIT, CmpFacadeFormat, cmp_split_sizes, read_index_png
from .csv_table import CsvFormat
from .imagefolder import DOMAIN_SPLIT_PERIOD, ImageFolderFormat
from .label_prefixed import LabelPrefixedFiles, label_in_name
from .landcover import LANDCOVER_CLASSES, LANDCOVER_COLOURS, LandCoverFormat
from .opened import OpenDataset, open_dataset
from .record import DatasetRecord
from .split import EVAL_SPLIT_ORDER, DatasetSplit, evenly_spread, open_split, recognise_layout

for _layout in (SegmentationFolders, LabelPrefixedFiles, ImageFolderFormat, CsvFormat, LandCoverFormat, CmpFacadeFormat):
    register_format(_layout())

__all__ = [
    "CLASS_MAP_PRESETS", "CMP_CLASSES", "CMP_PALETTE", "CMP_SPLIT", "DOMAIN_SPLIT_PERIOD", "EVAL_SPLIT_ORDER",
    "LANDCOVER_CLASSES", "LANDCOVER_COLOURS", "SPLITS", "SPLIT_NAMES", "ClassMap", "CmpFacadeFormat", "CsvFormat",
    "DatasetFormat", "DatasetInfo", "DatasetRecord", "DatasetSplit", "ImageFolderFormat", "LabelPrefixedFiles",
    "LandCoverFormat", "LayoutOptions", "OpenDataset", "Sample", "SegmentationFolders", "cmp_split_sizes",
    "evenly_spread", "format_named", "get_format", "label_in_name", "list_formats", "load_class_map", "open_dataset",
    "open_split", "read_index_png", "recognise_layout", "recognising", "register_format",
]  # fmt: skip
