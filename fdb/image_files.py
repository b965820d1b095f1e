"""Image files before they have a record: read and fully decode one (its hash, its size and, for the detector, its
pixels), or say why it cannot be, in the words a quarantine records. Knows no collection: `fdb.images` records what
is read here.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from records.hashing import sha256_hex
from storage import read_uri, the_files_fault


class UnreadableImage(Exception):
    """An image that cannot be decoded; its message is the quarantine reason."""


# The largest image the engine decodes: 100 megapixels. Street cameras stay under it (a 12K x 6K 360-degree
# panorama is 75 MP) and one decoded image then needs at most 300 MB; a file that declares more (a decompression
# bomb, or a mosaic that was never meant for a detector) is quarantined from its header, before any decoding.
# Pillow's own guard warns from 89 MP and refuses from 179 MP; this limit replaces it here.
MAX_IMAGE_PIXELS = 100_000_000


@dataclass
class ImageInfo:
    sha256: str
    width: int
    height: int


@dataclass
class DecodedImage:
    info: ImageInfo
    rgb: np.ndarray | None  # (height, width, 3) uint8: what the detector takes (`detectors.coco.to_tensor`)


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS, pixels: bool = True) -> DecodedImage:
    """Decode the whole image (not only its header), so truncated files are caught here, not in the detector.
    Any failure to decode is an `UnreadableImage` with the reason: one bad file never stops an ingest. The one
    decode a night makes of an image: its hash and size for the record, its pixels for the detector (`pixels`;
    without them, `rgb` is None and nothing is converted or kept)."""
    if not data:
        raise UnreadableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the limit below is the engine's
            with Image.open(io.BytesIO(data)) as im:
                width, height = im.size
                if width * height > max_pixels:
                    raise UnreadableImage(f"too large to decode: {width}x{height} = {width * height / 1e6:.0f} MP, "
                                          f"above the engine's limit of {max_pixels / 1e6:.0f} MP")
                im.load()
                rgb = np.array(im.convert("RGB")) if pixels else None
    except UnreadableImage:
        raise
    except UnidentifiedImageError:
        raise UnreadableImage("not an image file (no known image format)") from None
    except Image.DecompressionBombError as exc:
        raise UnreadableImage(f"too large to decode (decompression bomb): {exc}") from None
    except MemoryError:
        raise UnreadableImage("too large to decode: out of memory") from None
    except Exception as exc:  # noqa: BLE001 - whatever a decoder raises, the file is unreadable, not the run
        raise UnreadableImage(f"corrupt image: {type(exc).__name__}: {exc}") from None
    if width == 0 or height == 0:
        raise UnreadableImage(f"empty image ({width}x{height})")
    return DecodedImage(ImageInfo(sha256_hex(data), width, height), rgb)


def inspect_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """The hash and size of a fully decoded image (`decode_image`), or `UnreadableImage` with the reason."""
    return decode_image(data, max_pixels, pixels=False).info


def read_image(uri: str, pixels: bool = True) -> DecodedImage | str:
    """Read and decode `uri`: the image, or the reason it cannot be (a quarantine's). A network error that
    outlived its retries is raised, so the caller's retry reads it again instead of quarantining a good image."""
    try:
        data = read_uri(uri)
    except OSError as exc:
        if not the_files_fault(uri, exc):
            raise
        return f"file not found: {uri}" if isinstance(exc, FileNotFoundError) else str(exc)
    try:
        return decode_image(data, pixels=pixels)
    except UnreadableImage as exc:
        return str(exc)
