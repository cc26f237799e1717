"""A folder of every awkward input ``dlcv-infer`` must survive, and what each must give.

:func:`make_bad_inputs` writes the images (for the colour-template segmentation model of
:mod:`onnx_fixtures`, so every good image's mask is known exactly) and a labels folder with
missing, wrong-size, unreadable and out-of-range masks. Each :class:`Case` says whether the
image must be processed (with its exact label map) or listed in errors.csv (with a phrase of
its reason). Needs Pillow for the formats OpenCV does not write (CMYK JPEG, GIF, gray+alpha,
palette PNG, EXIF).
"""
from __future__ import annotations

import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

try:
    from .onnx_fixtures import SEG_COLOURS, blocks_image, save_image, save_mask
except ImportError:
    from onnx_fixtures import SEG_COLOURS, blocks_image, save_image, save_mask  # type: ignore[no-redef]

BLOCK = (16, 16)  # JPEG-aligned blocks: uniform 16×16 squares survive JPEG (and 4:2:0 chroma) intact


@dataclass(frozen=True)
class Case:
    """One input file: what it is, and what dlcv-infer must do with it."""

    name: str  # path relative to the images folder
    what: str  # one line for the report
    reason: str | None = None  # None: processed; else a phrase of its errors.csv reason
    labels: np.ndarray | None = field(default=None, compare=False, repr=False)  # the mask it must get


@dataclass
class BadInputs:
    images: Path
    masks: Path
    cases: dict[str, Case]
    ground_truth: dict[str, np.ndarray]  # scored images -> their label masks
    label_problems: dict[str, list[str]]  # rule -> image names
    not_images: int  # files the listing skips (not images, hidden)

    @property
    def good(self) -> dict[str, Case]:
        return {n: c for n, c in self.cases.items() if c.reason is None}

    @property
    def bad(self) -> dict[str, Case]:
        return {n: c for n, c in self.cases.items() if c.reason is not None}


def _grid(rng: np.random.Generator, h: int, w: int, classes=range(len(SEG_COLOURS))) -> np.ndarray:
    return rng.choice(np.array(list(classes)), size=(h, w))


def _labels(grid: np.ndarray) -> np.ndarray:
    return np.kron(grid, np.ones(BLOCK, dtype=grid.dtype))


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_png(path: Path, width: int, height: int) -> Path:
    """A real, valid 1-bit gray PNG of ``width``×``height`` (all black), a few kilobytes on disk."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))
    return path


def jpeg_claiming_size(path: Path, width: int, height: int) -> Path:
    """A real baseline JPEG whose frame header is patched to claim ``width``×``height``."""
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))
    return path


def jpeg_with_orientation(path: Path, rgb: np.ndarray, orientation: int) -> Path:
    """A JPEG carrying an EXIF orientation tag (6: "rotate 90° clockwise to display")."""
    image = Image.fromarray(rgb)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def make_bad_inputs(root: Path, seed: int = 0) -> BadInputs:
    """Write ``root/images`` (every case; sub-folder ``sub`` and a symlink loop need ``--recursive``)
    and ``root/masks`` (labels with every problem). Returns what each file must give."""
    rng = np.random.default_rng(seed)
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    cases: dict[str, Case] = {}

    def good(name: str, what: str, labels: np.ndarray) -> None:
        cases[name] = Case(name, what, None, labels)

    def bad(name: str, what: str, reason: str) -> None:
        cases[name] = Case(name, what, reason)

    # -- images that must be processed
    g = _grid(rng, 2, 3)
    save_image(images / "colour.png", blocks_image(g, BLOCK))
    good("colour.png", "plain RGB PNG (control)", _labels(g))

    g = _grid(rng, 2, 2, (0, 4))
    save_image(images / "gray.png", np.where(_labels(g) == 4, 255, 0).astype(np.uint8))
    good("gray.png", "8-bit grayscale PNG", _labels(g))

    g = _grid(rng, 2, 2)
    rgb = blocks_image(g, BLOCK)
    save_image(images / "rgba.png", np.dstack([rgb, rng.integers(0, 256, rgb.shape[:2], dtype=np.uint8)]))
    good("rgba.png", "RGBA PNG with random alpha", _labels(g))

    g = _grid(rng, 1, 2, (0, 4))
    la = np.dstack([np.where(_labels(g) == 4, 255, 0), rng.integers(0, 256, (16, 32))]).astype(np.uint8)
    Image.fromarray(la, "LA").save(images / "gray alpha.png")
    good("gray alpha.png", "gray + alpha PNG", _labels(g))

    g = _grid(rng, 2, 1)
    cv2.imwrite(str(images / "16-bit colour.png"), blocks_image(g, BLOCK)[:, :, ::-1].astype(np.uint16) * 257)
    good("16-bit colour.png", "16-bit RGB PNG", _labels(g))

    g = _grid(rng, 1, 2, (0, 4))
    cv2.imwrite(str(images / "16-bit gray.png"), np.where(_labels(g) == 4, 65535, 0).astype(np.uint16))
    good("16-bit gray.png", "16-bit grayscale PNG", _labels(g))

    g = _grid(rng, 2, 2)
    Image.fromarray(blocks_image(g, BLOCK)).convert("CMYK").save(images / "cmyk.jpg", "JPEG", quality=95)
    good("cmyk.jpg", "CMYK JPEG", _labels(g))

    g = _grid(rng, 2, 2)
    Image.fromarray(blocks_image(g, BLOCK)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8).save(images / "palette.png")
    good("palette.png", "palette (indexed) PNG", _labels(g))

    g = _grid(rng, 1, 2)  # 16 rows × 32 columns as stored; orientation 6 would display it 32×16
    jpeg_with_orientation(images / "exif rotated.jpg", blocks_image(g, BLOCK), 6)
    good("exif rotated.jpg", "JPEG with EXIF orientation 6 (read as stored, not rotated)", _labels(g))

    unicode_name = "fotoğraf ünïcode 图像 with spaces.png"
    g = _grid(rng, 2, 3)
    save_image(images / unicode_name, blocks_image(g, BLOCK))
    good(unicode_name, "unicode and spaces in the name", _labels(g))

    for name, what in (("bitmap.bmp", "BMP"), ("tiff.tif", "TIFF"), ("lossless.webp", "lossless WebP")):
        g = _grid(rng, 1, 2)
        params = [cv2.IMWRITE_WEBP_QUALITY, 101] if name.endswith(".webp") else []
        ok, buf = cv2.imencode(Path(name).suffix, blocks_image(g, BLOCK)[:, :, ::-1], params)
        (images / name).write_bytes(buf.tobytes())
        good(name, what, _labels(g))

    g = _grid(rng, 1, 1)
    save_image(images / "collide.jpg", blocks_image(g, BLOCK))
    good("collide.jpg", "first of two images with the same stem (wins: first in name order)", _labels(g))
    save_image(images / "collide.png", blocks_image(_grid(rng, 1, 1), BLOCK))
    bad("collide.png", "second image with the same stem: its masks would overwrite the first's",
        "would overwrite that of collide.jpg")

    g = _grid(rng, 3, 1)
    save_image(images / "sub" / "nested.png", blocks_image(g, BLOCK))
    good("sub/nested.png", "image in a sub-folder (--recursive)", _labels(g))
    os.symlink(images.resolve(), images / "sub" / "loop")  # a symlink loop back to the root

    # -- images that must be listed in errors.csv
    (images / "zero bytes.png").write_bytes(b"")
    bad("zero bytes.png", "zero-byte file", "empty file (0 bytes)")

    ok, buf = cv2.imencode(".jpg", cv2.resize(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8), (64, 64)))
    (images / "truncated jpeg.jpg").write_bytes(buf.tobytes()[: int(len(buf) * 0.7)])
    bad("truncated jpeg.jpg", "JPEG cut at 70 %", "not a readable image (truncated or corrupt JPEG data)")

    ok, buf = cv2.imencode(".png", rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    (images / "truncated png.png").write_bytes(buf.tobytes()[: int(len(buf) * 0.6)])
    bad("truncated png.png", "PNG cut at 60 %", "not a readable image (truncated or corrupt PNG data)")
    (images / "cut header.png").write_bytes(buf.tobytes()[:20])
    bad("cut header.png", "PNG cut inside its header", "truncated or corrupt PNG header")

    (images / "text.jpg").write_text("this is not an image\n", encoding="utf-8")
    bad("text.jpg", "text file with a .jpg suffix", "it looks like text")
    Image.fromarray(blocks_image(_grid(rng, 1, 1), BLOCK)).save(images / "animation.png", "GIF")
    bad("animation.png", "GIF content with a .png suffix", "it is a GIF")

    huge_png(images / "huge 9000x9000.png", 9000, 9000)
    bad("huge 9000x9000.png", "valid 9000×9000 PNG (81 megapixels)", "9000×9000 pixels, above the limit")
    jpeg_claiming_size(images / "huge header.jpg", 12000, 8000)
    bad("huge header.jpg", "JPEG whose header claims 12000×8000", "12000×8000 pixels, above the limit")

    ok, buf = cv2.imencode(".tiff", np.full((8, 8, 3), 0.5, np.float32))
    (images / "float.tiff").write_bytes(buf.tobytes())
    bad("float.tiff", "32-bit float TIFF", "unsupported pixel type float32")

    os.symlink("does-not-exist.png", images / "dangling link.png")
    bad("dangling link.png", "symlink to a missing file", "file not found")

    # -- not images: skipped, never read
    (images / "notes.txt").write_text("a note", encoding="utf-8")
    save_image(images / ".hidden.png", np.zeros((4, 4, 3), np.uint8))

    # -- labels: exact, noisy, out of range, wrong size, unreadable, missing
    ground_truth: dict[str, np.ndarray] = {}
    gt = cases["gray.png"].labels.copy()
    flip = rng.random(gt.shape) < 0.2
    gt[flip] = rng.integers(0, len(SEG_COLOURS), size=int(flip.sum()))
    ground_truth["gray.png"] = gt
    gt = cases["rgba.png"].labels.copy()
    gt[0, :5] = 255  # ignored
    gt[1, :3] = 9  # out of range: counted, skipped
    ground_truth["rgba.png"] = gt
    ground_truth[unicode_name] = cases[unicode_name].labels.copy()
    ground_truth["sub/nested.png"] = cases["sub/nested.png"].labels.copy()
    for name, labels in ground_truth.items():
        save_mask(masks / Path(name).with_suffix(".png"), labels)
    save_mask(masks / "16-bit colour.png", np.zeros((5, 5), np.uint8))  # wrong size
    (masks / "palette.png").write_bytes(b"")  # unreadable
    save_mask(masks / "truncated png.png", np.zeros((64, 64), np.uint8))  # its image fails: never scored
    labelled = set(ground_truth) | {"16-bit colour.png", "palette.png"}
    problems = {
        "size_mismatch": ["16-bit colour.png"],
        "unreadable": ["palette.png"],
        "out_of_range": ["rgba.png"],
        "missing": sorted(n for n, c in cases.items() if c.reason is None and n not in labelled),
    }
    return BadInputs(images, masks, cases, ground_truth, problems, not_images=2)
