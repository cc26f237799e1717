"""Image decoding: conversions, formats, header sizes, bad files, unicode names, EXIF."""
import struct
import zlib

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dlcv.runtime.errors import DlcvError
from dlcv.runtime.imageio import image_format, image_size, read_image, read_label_map, write_png


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


# --------------------------------------------------------------------------- formats and headers


def _pil():
    return pytest.importorskip("PIL.Image")


def test_exif_orientation_is_ignored(tmp_path):
    Image = _pil()
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, 16:] = (255, 0, 0)
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "rotated.jpg"
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    data = np.fromfile(path, np.uint8)
    assert cv2.imdecode(data, cv2.IMREAD_COLOR).shape == (32, 16, 3)  # OpenCV would rotate with other flags
    got = read_image(path)
    assert got.shape == (16, 32, 3)  # as stored, like its mask
    interior = np.r_[2:14, 18:30]  # away from the colour edge that JPEG blurs
    assert np.abs(got[:, interior].astype(int) - rgb[:, interior]).max() <= 8


def test_cmyk_jpeg_is_read_as_rgb(tmp_path):
    Image = _pil()
    rgb = np.zeros((16, 32, 3), np.uint8)
    rgb[:, :16] = (200, 40, 60)
    rgb[:, 16:] = (30, 90, 220)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", "JPEG", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    reference = np.asarray(Image.open(tmp_path / "cmyk.jpg").convert("RGB"))
    got = read_image(tmp_path / "cmyk.jpg")
    assert got.shape == (16, 32, 3) and np.abs(got.astype(int) - reference).max() <= 3


def _encoded(kind: str, image: np.ndarray) -> bytes:
    if kind.startswith("pil-"):
        import io

        Image = _pil()
        buf = io.BytesIO()
        fmt, _, option = kind[4:].partition(":")
        Image.fromarray(image).save(buf, fmt, **({option: True} if option else {}))
        return buf.getvalue()
    params = {"jpg-progressive": [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], "webp-lossless": [cv2.IMWRITE_WEBP_QUALITY, 101]}
    ok, buf = cv2.imencode("." + kind.split("-")[0], image, params.get(kind, []))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("kind", ["png", "jpg", "jpg-progressive", "bmp", "tif", "webp", "webp-lossless",
                                  "pil-TIFF:big_tiff", "pil-WEBP", "pil-BMP"])
def test_header_size_matches_the_decoded_image(kind):
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    data = _encoded(kind, image)
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image_size(data) == (53, 37) == (decoded.shape[1], decoded.shape[0])


def test_big_endian_tiff_and_cut_headers():
    ifd = struct.pack(">H", 2) + struct.pack(">HHII", 256, 4, 1, 70000) + struct.pack(">HHIHH", 257, 3, 1, 900, 0)
    tiff = b"MM\x00*" + struct.pack(">I", 8) + ifd + b"\x00\x00\x00\x00"
    assert image_format(tiff[:16]) == "TIFF" and image_size(tiff) == (70000, 900)
    png = _encoded("png", np.zeros((3, 4, 3), np.uint8))
    assert image_size(png[:20]) is None and image_size(b"") is None and image_size(b"GIF89a....") is None


def test_oversized_png_is_refused_from_its_header_without_decoding(tmp_path, monkeypatch):
    from dlcv.runtime import imageio

    width = height = 9000
    row = b"\x00" * (1 + (width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    path = tmp_path / "huge.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
                     + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    monkeypatch.setattr(imageio.cv2, "imdecode", lambda *a: pytest.fail("decoded an oversized image"))
    with pytest.raises(DlcvError, match="9000×9000 pixels, above the limit of 64000000"):
        read_image(path)
    with pytest.raises(DlcvError, match="above the limit"):
        read_label_map(path)


def test_content_that_is_not_a_supported_format_is_refused_by_what_it_is(tmp_path):
    for name, content, phrase in [("a.png", b"GIF89a" + bytes(40), "it is a GIF"),
                                  ("b.jpg", b"\x00\x00\x00\x18ftypheic" + bytes(40), "HEIF/AVIF"),
                                  ("c.png", b"P6\n9000 9000\n255\n", "looks like text")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DlcvError, match=phrase):
            read_image(tmp_path / name)


_JPEG_SEGMENTS = st.one_of(
    st.builds(lambda body: b"\xff\xe1" + struct.pack(">H", len(body) + 8) + b"Exif\x00\x00" + body,
              st.binary(max_size=300)),  # EXIF (APP1) with random TIFF content
    st.builds(lambda h, w, rest: b"\xff\xc0" + struct.pack(">HBHH", 8 + len(rest), 8, h, w) + rest,
              st.integers(0, 65535), st.integers(0, 65535), st.binary(max_size=12)),  # frame headers
    st.builds(lambda m, body: bytes([0xFF, m]) + struct.pack(">H", (len(body) + 2) & 0xFFFF) + body,
              st.sampled_from([0xC4, 0xDB, 0xDA, 0xDD, 0xE0, 0xFE, 0xC2]), st.binary(max_size=200)),
    st.binary(max_size=64),  # raw bytes between segments
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_JPEG_SEGMENTS, max_size=6), st.booleans())
def test_decoder_never_crashes_on_random_jpeg_structures(tmp_path_factory, segments, end_marker):
    data = b"\xff\xd8" + b"".join(segments) + (b"\xff\xd9" if end_marker else b"")
    path = tmp_path_factory.mktemp("jpeg") / "x.jpg"
    path.write_bytes(data)
    size = image_size(data)
    assert size is None or (size[0] > 0 and size[1] > 0)
    try:
        image = read_image(path, max_pixels=4096 * 4096)
    except DlcvError:
        return
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([b"", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIHDR", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*",
                        b"II+\x00\x08\x00\x00\x00", b"BM", b"RIFF\x00\x00\x00\x00WEBPVP8 ", b"RIFF\x00\x00\x00\x00WEBPVP8L",
                        b"RIFF\x00\x00\x00\x00WEBPVP8X"]), st.binary(max_size=256))
def test_header_reader_never_raises(prefix, data):
    size = image_size(prefix + data)
    assert size is None or (size[0] > 0 and size[1] > 0)
