"""Image decoding: conversions, bad files, unicode names."""
import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import read_image, read_label_map, write_png


def test_colour_gray_rgba_and_16bit(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_png(tmp_path / "c.png", rgb)
    assert np.array_equal(read_image(tmp_path / "c.png"), rgb)
    cv2.imwrite(str(tmp_path / "g.png"), rgb[:, :, 0])
    g = read_image(tmp_path / "g.png")
    assert g.shape == (5, 7, 3) and np.array_equal(g[:, :, 1], rgb[:, :, 0])
    bgra = np.dstack([rgb[:, :, ::-1], np.full((5, 7), 9, np.uint8)])
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    assert np.array_equal(read_image(tmp_path / "a.png"), rgb)
    cv2.imwrite(str(tmp_path / "d.png"), rgb[:, :, ::-1].astype(np.uint16) * 257)
    assert np.array_equal(read_image(tmp_path / "d.png"), rgb)


def test_unicode_and_spaces_in_names(tmp_path):
    path = tmp_path / "fotoğraf ünïcode 图像.png"
    write_png(path, np.zeros((3, 3, 3), np.uint8))
    assert read_image(path).shape == (3, 3, 3)


@pytest.mark.parametrize("content, message", [(b"", "empty file"), (b"hello, not an image", "not a readable image")])
def test_bad_files_raise_dlcv_error_naming_the_file(tmp_path, content, message):
    path = tmp_path / "bad.png"
    path.write_bytes(content)
    with pytest.raises(DlcvError, match=message) as info:
        read_image(path)
    assert "bad.png" in str(info.value)


def test_truncated_png(tmp_path):
    write_png(tmp_path / "ok.png", np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DlcvError, match="cut.png"):
        read_image(tmp_path / "cut.png")


def test_oversized_image_refused_before_decoding(tmp_path):
    write_png(tmp_path / "big.png", np.zeros((50, 60, 3), np.uint8))
    with pytest.raises(DlcvError, match="60×50 pixels, above the limit"):
        read_image(tmp_path / "big.png", max_pixels=1000)


def test_label_map_refuses_colour_masks(tmp_path):
    write_png(tmp_path / "m.png", np.dstack([np.zeros((4, 4), np.uint8), np.ones((4, 4), np.uint8), np.zeros((4, 4), np.uint8)]))
    with pytest.raises(DlcvError, match="index PNG"):
        read_label_map(tmp_path / "m.png")
    write_png(tmp_path / "i.png", np.full((4, 4), 7, np.uint8))
    assert read_label_map(tmp_path / "i.png").max() == 7


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=0, max_size=2048), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0"]))
def test_decoder_never_crashes_on_random_bytes(tmp_path_factory, data, header):
    path = tmp_path_factory.mktemp("fuzz") / "x.png"
    path.write_bytes(header + data)
    try:
        image = read_image(path)
    except DlcvError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
