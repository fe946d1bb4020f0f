"""Image input tokens as OpenAI bills them, and the pixel size read from a ``data:`` URL's header bytes.

Tile-billed models (gpt-4o, gpt-4o-mini, o1, o3 …) pay a base plus a price per 512 px tile after the image
is scaled to fit 2048 px and then 768 px on its short side; patch-billed models (gpt-4.1-mini/nano,
o4-mini) pay per 32 px patch, capped at 1536 patches. ``detail: low`` is the base only. An image whose size
cannot be read (a URL, not data) is assumed to be 1024 x 1024.
"""

from __future__ import annotations

import base64
import binascii
import math
import struct
from fractions import Fraction

from lib.accounting.encodings import base_model


# (model prefix, base tokens, tokens per 512px tile) for tile-billed models; first match wins.
_IMAGE_TILES = (("gpt-4o-mini", 2833, 5667), ("o1", 75, 150), ("o3", 75, 150))
_IMAGE_TILE_DEFAULT = (85, 170)  # gpt-4o, gpt-4.1, gpt-4-turbo, gpt-4.5 and the estimate for anything else
# (model prefix, multiplier) for models billed per 32px patch, capped at 1536 patches.
_IMAGE_PATCHES = (("gpt-4.1-mini", Fraction(162, 100)), ("gpt-4.1-nano", Fraction(246, 100)),
                  ("o4-mini", Fraction(172, 100)))
_PATCH_CAP = 1536
_UNKNOWN_SIZE = (1024, 1024)  # assumed when the image's size cannot be read (a URL rather than data)


def image_tokens(model: str, width: int | None = None, height: int | None = None, detail: str = "auto") -> int:
    """Prompt tokens one image costs, by OpenAI's documented vision formulas.

    Tile models: ``detail="low"`` is the fixed base (85 for gpt-4o); otherwise the image is fitted in a
    2048px square, its shortest side scaled down to 768px, and each 512px tile costs 170 plus 85 base
    (gpt-4o-mini: 2833 + 5667 per tile; o1/o3: 75 + 150). Patch models (gpt-4.1-mini/nano, o4-mini): 32px
    patches, at most 1536, times the model's multiplier. An unknown size is estimated as 1024x1024 (765 for
    gpt-4o at high detail). Never raises.
    """
    name = base_model(model)
    w, h = (width, height) if width and height and width > 0 and height > 0 else _UNKNOWN_SIZE
    for prefix, multiplier in _IMAGE_PATCHES:
        if name.startswith(prefix):
            return math.ceil(_patches(w, h) * multiplier)
    base, per_tile = next(((b, t) for p, b, t in _IMAGE_TILES if name.startswith(p)), _IMAGE_TILE_DEFAULT)
    if detail == "low":
        return base
    scale = min(Fraction(1), Fraction(2048, max(w, h)))  # fit in a 2048px square (never upscale)
    if min(w, h) * scale > 768:
        scale *= Fraction(768) / (min(w, h) * scale)  # then bring the shortest side down to 768px
    tiles = math.ceil(w * scale / 512) * math.ceil(h * scale / 512)
    return base + per_tile * tiles


def _patches(w: int, h: int) -> int:
    """32px patches covering a ``w``x``h`` image after OpenAI's downscale to at most 1536 patches."""
    patches = math.ceil(w / 32) * math.ceil(h / 32)
    if patches <= _PATCH_CAP:
        return patches
    shrink = math.sqrt(32 * 32 * _PATCH_CAP / (w * h))
    # Shrink further so that one side lands on whole patches (the documented step), in exact arithmetic.
    scale = min(Fraction(math.floor(w * shrink / 32) * 32, w), Fraction(math.floor(h * shrink / 32) * 32, h))
    return min(_PATCH_CAP, math.ceil(w * scale / 32) * math.ceil(h * scale / 32))


def image_size_from_data_url(url: str) -> tuple[int, int] | None:
    """``(width, height)`` of a base64 ``data:`` URL holding a PNG, GIF, JPEG or WebP, else ``None``. Never raises."""
    if not isinstance(url, str) or not url.startswith("data:"):
        return None
    header, _, payload = url.partition(",")
    if ";base64" not in header:
        return None
    try:
        head = base64.b64decode(payload[: min(len(payload), 87_380) // 4 * 4])  # the first ~64 KiB
        return _sniff_size(head)
    except (ValueError, binascii.Error, struct.error, IndexError):
        return None


def _sniff_size(data: bytes) -> tuple[int, int] | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", data[6:10])
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        kind = data[12:16]
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", data[26:30])
            return w & 0x3FFF, h & 0x3FFF
        if kind == b"VP8L":
            bits = int.from_bytes(data[21:25], "little")
            return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
        if kind == b"VP8X":
            return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
        return None
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                return None
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # markers without a length
                i += 2
                continue
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[i + 5:i + 9])
                return w, h
            i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None
