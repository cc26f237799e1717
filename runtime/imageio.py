"""Image and label-map I/O with OpenCV: one decoder for training, export checks and inference.

Decisions (documented in the README):
- Images are returned as RGB uint8 H×W×3. Grayscale is replicated to three channels, the
  alpha channel of RGBA (and gray+alpha) is dropped, 16-bit images are scaled to 8 bits
  (value // 257), CMYK JPEGs and TIFFs are converted to RGB by OpenCV's decoders. Other
  pixel types (float or signed TIFFs) are refused with a reason.
- EXIF orientation is ignored: pixels are used as stored. Label masks carry no EXIF, so
  rotating the photo would misalign it with its mask; training and inference read alike.
  OpenCV applies the EXIF rotation only when the decode flags are not ``IMREAD_UNCHANGED``
  and lack ``IMREAD_IGNORE_ORIENTATION``; dlcv decodes with ``IMREAD_UNCHANGED`` (``-1``, every
  flag bit set, the ignore-orientation bit included), and a test pins this with a JPEG whose
  EXIF orientation says "rotate 90°".
- Only PNG, JPEG, BMP, TIFF and WebP *content* is decoded (whatever the file suffix says),
  and only after its header has given the image size: a file whose content is another format,
  or whose header is cut short, is refused without decoding. OpenCV 5 refuses truncated files
  itself (a JPEG missing its end marker included).
- Memory bound: an image above ``max_pixels`` (default 8000×8000 = 64 megapixels) is refused
  from its header, before any pixel buffer is allocated; pass a larger ``max_pixels``
  (``dlcv-infer --max-pixels``) to accept it. A decoded image costs 3 bytes per pixel (6 while
  a 16-bit image is converted); its float32 model input another 12.
- Paths may hold any unicode: files are read as bytes and decoded in memory.
"""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from .atomic import write_bytes_atomic
from .errors import DlcvError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")

# Images above this many pixels are refused before decoding: 8000×8000 RGB is 192 MB of
# uint8 and four times that as float32 after preprocessing.
DEFAULT_MAX_PIXELS = 8000 * 8000

# The header-readable formats dlcv decodes; the bytes a file of each starts with.
_SIGNATURES = (
    ("PNG", b"\x89PNG\r\n\x1a\n"),
    ("JPEG", b"\xff\xd8\xff"),
    ("TIFF", b"II*\x00"),
    ("TIFF", b"MM\x00*"),
    ("TIFF", b"II+\x00"),  # BigTIFF
    ("TIFF", b"MM\x00+"),
    ("BMP", b"BM"),
)
FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WebP")


def is_image_file(path: str | os.PathLike) -> bool:
    """True when the file name has one of the image suffixes dlcv reads."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _read_bytes(path: Path) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise DlcvError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise DlcvError(f"{path}: is a folder, not an image file") from None
    except OSError as exc:
        raise DlcvError(f"{path}: cannot read file ({exc.strerror or exc})") from None
    if data.size == 0:
        raise DlcvError(f"{path}: empty file (0 bytes)")
    return data


def image_format(head: bytes) -> str | None:
    """The format a file's first bytes announce ("PNG", "JPEG", "BMP", "TIFF", "WebP"), or None."""
    for name, signature in _SIGNATURES:
        if head.startswith(signature):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return None


def _uint(data: memoryview, offset: int, size: int, order: str = "big") -> int:
    if offset < 0 or offset + size > len(data):
        raise IndexError(offset)
    return int.from_bytes(data[offset : offset + size], order)


def _png_size(d: memoryview) -> tuple[int, int]:
    if bytes(d[12:16]) != b"IHDR":
        raise ValueError("no IHDR chunk")
    return _uint(d, 16, 4), _uint(d, 20, 4)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(d: memoryview) -> tuple[int, int]:
    """Walk the marker segments up to the first start-of-frame (before the first scan)."""
    i = 2
    while True:
        if _uint(d, i, 1) != 0xFF:
            raise ValueError("marker expected")
        marker = _uint(d, i + 1, 1)
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):
            raise ValueError("no frame header before the image data")
        length = _uint(d, i + 2, 2)
        if length < 2:
            raise ValueError("bad segment length")
        if marker in _JPEG_SOF:
            return _uint(d, i + 7, 2), _uint(d, i + 5, 2)
        i += 2 + length


def _bmp_size(d: memoryview) -> tuple[int, int]:
    if _uint(d, 14, 4, "little") == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sizes
        return _uint(d, 18, 2, "little"), _uint(d, 20, 2, "little")
    w, h = (_uint(d, offset, 4, "little") for offset in (18, 22))
    return _abs_int32(w), _abs_int32(h)  # a negative height means rows stored top-down


def _abs_int32(value: int) -> int:
    return abs(value - (1 << 32)) if value >= 1 << 31 else value


def _tiff_size(d: memoryview) -> tuple[int, int]:
    """Width and height tags (256, 257) of the first image file directory."""
    order = "little" if bytes(d[:2]) == b"II" else "big"
    big = _uint(d, 2, 2, order) == 43
    if big:
        ifd, count_size, entry_size, value_size = _uint(d, 8, 8, order), 8, 20, 8
    else:
        ifd, count_size, entry_size, value_size = _uint(d, 4, 4, order), 2, 12, 4
    count = _uint(d, ifd, count_size, order)
    found: dict[int, int] = {}
    for k in range(min(count, 4096)):
        entry = ifd + count_size + k * entry_size
        tag = _uint(d, entry, 2, order)
        if tag not in (256, 257):
            continue
        kind = _uint(d, entry + 2, 2, order)
        width = {3: 2, 4: 4, 16: 8}.get(kind)
        if width is None or width > value_size:
            raise ValueError("unexpected size tag type")
        found[tag] = _uint(d, entry + 4 + value_size, width, order)
    return found[256], found[257]


def _webp_size(d: memoryview) -> tuple[int, int]:
    chunk = bytes(d[12:16])
    if chunk == b"VP8 ":
        if bytes(d[23:26]) != b"\x9d\x01\x2a":
            raise ValueError("no VP8 start code")
        return _uint(d, 26, 2, "little") & 0x3FFF, _uint(d, 28, 2, "little") & 0x3FFF
    if chunk == b"VP8L":
        if _uint(d, 20, 1) != 0x2F:
            raise ValueError("no VP8L signature")
        bits = _uint(d, 21, 4, "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return _uint(d, 24, 3, "little") + 1, _uint(d, 27, 3, "little") + 1
    raise ValueError("unknown WebP chunk")


_SIZE_READERS = {"PNG": _png_size, "JPEG": _jpeg_size, "BMP": _bmp_size, "TIFF": _tiff_size, "WebP": _webp_size}


def image_size(data: bytes | bytearray | memoryview | np.ndarray, fmt: str | None = None) -> tuple[int, int] | None:
    """Width and height from an image file's header, without decoding pixels.

    ``fmt`` defaults to :func:`image_format` of the data. None when the format is unknown or
    the header is cut short or malformed (never raises).
    """
    if isinstance(data, np.ndarray):
        data = np.ascontiguousarray(data, dtype=np.uint8).reshape(-1)
    view = memoryview(data).cast("B")
    fmt = fmt or image_format(bytes(view[:16]))
    if fmt not in _SIZE_READERS:
        return None
    try:
        w, h = _SIZE_READERS[fmt](view)
    except (IndexError, ValueError, KeyError):
        return None
    return (w, h) if w > 0 and h > 0 else None


def _what_it_is(head: bytes) -> str:
    """A hint for content dlcv does not decode."""
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "it is a GIF"
    if head[4:8] == b"ftyp":
        return "it is HEIF/AVIF or another ISO media file"
    if head.startswith(b"%PDF"):
        return "it is a PDF"
    sample = head[:64]
    if sample and all(32 <= b < 127 or b in (9, 10, 13) for b in sample):
        return "it looks like text"
    return f"it starts with bytes {head[:8].hex(' ')}"


def _as_bytes(data: bytes | bytearray | memoryview | np.ndarray, path: Path) -> np.ndarray:
    """A file's content already in memory (Ray's reader, a Triton request) as a uint8 vector."""
    array = np.frombuffer(data, dtype=np.uint8) if not isinstance(data, np.ndarray) else data.reshape(-1)
    if array.dtype != np.uint8:
        raise DlcvError(f"{path}: image bytes must be uint8, got {array.dtype}")
    if array.size == 0:
        raise DlcvError(f"{path}: empty file (0 bytes)")
    return array


def _decode(path: Path, flags: int, max_pixels: int | None, data=None) -> np.ndarray:
    data = _read_bytes(path) if data is None else _as_bytes(data, path)
    head = data[:64].tobytes()
    fmt = image_format(head)
    if fmt is None:
        raise DlcvError(
            f"{path}: not a readable image: its content is not {', '.join(FORMATS[:-1])} or {FORMATS[-1]} "
            f"({_what_it_is(head)}); convert it to PNG or JPEG"
        )
    size = image_size(data, fmt)
    if size is None:
        raise DlcvError(f"{path}: not a readable image (truncated or corrupt {fmt} header)")
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise DlcvError(
            f"{path}: image is {size[0]}×{size[1]} pixels, above the limit of {max_pixels} "
            "pixels; downscale it or raise the limit (--max-pixels)"
        )
    try:
        image = cv2.imdecode(data, flags)
    except cv2.error as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or ["OpenCV error"]
        raise DlcvError(f"{path}: cannot decode image ({lines[-1][:300]})") from None
    if image is None or image.size == 0:
        raise DlcvError(f"{path}: not a readable image (truncated or corrupt {fmt} data)")
    if max_pixels is not None and image.shape[0] * image.shape[1] > max_pixels:
        raise DlcvError(
            f"{path}: image is {image.shape[1]}×{image.shape[0]} pixels, above the limit of {max_pixels} "
            "pixels; downscale it or raise the limit (--max-pixels)"
        )
    return image


def _to_uint8(image: np.ndarray, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return (image // 257).astype(np.uint8)
    raise DlcvError(f"{path}: unsupported pixel type {image.dtype}; convert it to 8- or 16-bit PNG/JPEG")


def read_image(
    path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS, data: bytes | np.ndarray | None = None
) -> np.ndarray:
    """Read an image file as RGB uint8 H×W×3 (see the module notes for the conversions).

    Raises :class:`DlcvError` naming the file for anything it cannot read; ``max_pixels=None``
    lifts the size limit. ``data``: the file's bytes when they were read already (Ray's file
    reader, a Triton request); ``path`` then only names the image in messages.
    """
    path = Path(path)
    image = _to_uint8(_decode(path, cv2.IMREAD_UNCHANGED, max_pixels, data), path)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    channels = image.shape[2]
    if channels == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2RGB)
    if channels == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    raise DlcvError(f"{path}: image has {channels} channels; expected 1 (gray), 3 (colour) or 4 (with alpha)")


def read_label_map(path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an index-PNG label map as an int64 H×W array of class indices.

    A three-channel file is accepted only when its channels are equal (a gray image saved
    as RGB); colour-coded masks need a dataset format that maps colours to classes.
    """
    path = Path(path)
    mask = _decode(path, cv2.IMREAD_UNCHANGED, max_pixels)
    if mask.ndim == 3:
        if mask.shape[2] >= 3 and np.array_equal(mask[:, :, 0], mask[:, :, 1]) and np.array_equal(
            mask[:, :, 1], mask[:, :, 2]
        ):
            mask = mask[:, :, 0]
        else:
            raise DlcvError(
                f"{path}: label map has {mask.shape[2]} different colour channels; expected a single-channel "
                "index PNG (one class index per pixel). Colour masks need their dataset --format."
            )
    if mask.dtype not in (np.uint8, np.uint16):
        raise DlcvError(f"{path}: label map pixel type {mask.dtype} is not an integer index type")
    return mask.astype(np.int64)


def encode_png(array: np.ndarray) -> bytes:
    """Encode a uint8 H×W or H×W×3 (RGB) array as PNG bytes."""
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", array)
    if not ok:
        raise DlcvError("cannot encode PNG")
    return buf.tobytes()


def write_png(path: str | os.PathLike, array: np.ndarray, durable: bool = True) -> None:
    """Write a uint8 index map (H×W) or RGB image (H×W×3) as PNG, atomically
    (``durable``: synced to disk first; see :func:`~dlcv.runtime.atomic.write_bytes_atomic`)."""
    write_bytes_atomic(path, encode_png(array), durable=durable)


_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_complete_png(path: str | os.PathLike) -> bool:
    """True when ``path`` starts like a PNG and ends with its IEND chunk (cheap: reads 20 bytes).

    A file cut short, or left empty by an operating-system crash before its data reached the
    disk, fails the check.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            f.seek(0, os.SEEK_END)
            if f.tell() < len(head) + len(_PNG_END):
                return False
            f.seek(-len(_PNG_END), os.SEEK_END)
            return head == b"\x89PNG\r\n\x1a\n" and f.read() == _PNG_END
    except OSError:
        return False
