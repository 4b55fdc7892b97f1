"""Image bytes -> RGB PIL image, with the checks that keep hostile input harmless."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from pawstream.schemas import DeadLetterReason, EventError

# Formats we decode. Anything else (PDF, SVG, TIFF tricks, ...) is refused before decoding.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP")

_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"WEBP", 8, "image/webp"),
)


def sniff_content_type(data: bytes) -> str | None:
    """Content type from magic bytes (never from a client's header); None if not an image we take."""
    for magic, offset, ctype in _MAGIC:
        if data[offset : offset + len(magic)] == magic and (ctype != "image/webp" or data[:4] == b"RIFF"):
            return ctype
    return None


def load_rgb(data: bytes, *, draft_size: int, max_pixels: int) -> Image.Image:
    """Decode ``data`` into an RGB image, or raise EventError(decode | too_large).

    JPEGs use Pillow's draft mode: the decoder scales by 1/2, 1/4 or 1/8 while decoding, never
    below ``draft_size`` on either side, which is several times faster for large photos.
    Training and serving both call this, so both see the same pixels.
    """
    if not data:
        raise EventError(DeadLetterReason.DECODE, "image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = img.size
            if width * height > max_pixels:
                raise EventError(
                    DeadLetterReason.TOO_LARGE,
                    f"image is {width}x{height} = {width * height} pixels, over the {max_pixels} limit",
                )
            if img.format == "JPEG":
                img.draft("RGB", (draft_size, draft_size))
            rgb = img.convert("RGB")
    except EventError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise EventError(DeadLetterReason.TOO_LARGE, f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise EventError(
            DeadLetterReason.DECODE, f"not a supported image ({', '.join(ALLOWED_FORMATS)})"
        ) from exc
    except (OSError, ValueError, SyntaxError, MemoryError) as exc:
        raise EventError(DeadLetterReason.DECODE, f"image could not be decoded: {exc}") from exc
    if min(rgb.size) < 1:
        raise EventError(DeadLetterReason.DECODE, "image has no pixels")
    return rgb
