"""The preprocessing contract: record validation, execution, geometry round trip."""
import numpy as np
import pytest

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.preprocess import PreprocessSpec, preprocess_image, preprocess_label_map, restore_label_map


def test_record_round_trips_through_json_types():
    import json

    spec = PreprocessSpec(resize="letterbox", size=(48, 64), interpolation="area", pad_value=114)
    assert PreprocessSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"resize": "stretch"}, "resize must be one of"),
        ({"resize": "resize"}, "needs size"),
        ({"color_order": "rgba"}, "color_order"),
        ({"std": (0.1, 0.0, 0.1)}, "std all positive"),
        ({"version": 99}, "version 99"),
    ],
)
def test_invalid_records_are_refused(kwargs, message):
    with pytest.raises(DlcvError, match=message):
        PreprocessSpec(**kwargs)


def test_unknown_keys_refused():
    with pytest.raises(DlcvError, match="unknown keys"):
        PreprocessSpec.from_dict({"resize": "none", "gamma": 2.2})


def test_normalisation_and_layout():
    image = np.zeros((2, 3, 3), np.uint8)
    image[..., 0] = 255
    x, g = preprocess_image(image, PreprocessSpec(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5)))
    assert x.dtype == np.float32 and x.shape == (3, 2, 3)
    assert np.allclose(x[0], 1.0) and np.allclose(x[1:], -1.0)
    bgr, _ = preprocess_image(image, PreprocessSpec(color_order="bgr", mean=(0.5,) * 3, std=(0.5,) * 3))
    assert np.allclose(bgr[2], 1.0) and np.allclose(bgr[0], -1.0)
    assert (g.orig_h, g.orig_w, g.input_h, g.input_w) == (2, 3, 2, 3)


@pytest.mark.parametrize(
    "spec",
    [
        PreprocessSpec(resize="none"),
        PreprocessSpec(resize="resize", size=(80, 100)),
        PreprocessSpec(resize="letterbox", size=(80, 100)),
        PreprocessSpec(resize="shorter_center_crop", size=(32, 32), resize_shorter=36),
    ],
)
def test_label_geometry_round_trip(spec):
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 5, (6, 9)), np.ones((10, 10), dtype=np.int64)).astype(np.uint8)  # 60×90 blocks
    image = np.zeros(labels.shape + (3,), np.uint8)
    x, g = preprocess_image(image, spec)
    placed = preprocess_label_map(labels, spec, ignore_index=255)
    assert placed.shape == x.shape[1:]
    restored = restore_label_map(placed, g)
    assert restored.shape == labels.shape
    if spec.resize != "shorter_center_crop":  # a crop loses the borders by design
        assert np.mean(restored == labels) > 0.97


def test_rejects_non_rgb_uint8():
    with pytest.raises(DlcvError, match="RGB uint8"):
        preprocess_image(np.zeros((4, 4), np.uint8), PreprocessSpec())
