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


# Past this longer/shorter ratio the long side is cropped (centred) to this many times the short
# side before any resize. The eval transform keeps only the centre of the long side anyway, and
# without the crop the resize of a 1000x1 PNG (short side to 256) materialised a 256000-pixel long
# side: ~390 MB. 4:1 leaves every camera format and most panoramas untouched (bit-identical).
# Past it the crop moves the resize's sampling grid by under one pixel: measured on a 2000x300
# noise image against the uncropped resize, at most 9 grey levels apart (mean 0.4).
CROP_ASPECT = 4.0
# Images whose short side is at least twice REDUCE_GAP x the resize target are box-reduced first
# (Pillow's ``reduce``, an exact integer average) by the largest factor that keeps the short side
# at least REDUCE_GAP x the target, so the antialiased resize still does a >= 3x downscale of its
# own. That is Pillow's ``reducing_gap`` idea, and 3 is where its docs call the result
# indistinguishable from a direct resize. Measured against the direct resize (224 px crop, in grey
# levels): smooth 3000x2000 and 6000x6000 images at most 1 (mean < 0.2); hard-edged synthetic
# noise up to 4 (mean 0.3), and up to 34 (mean 0.9) where the size is not a multiple of the factor
# (the last partial block shifts the sampling grid by under one source pixel). With a gap of 2 that
# noise differed by up to 125. Smaller images (every ordinary photo: a short side under 1536 px for
# a 256 resize; JPEGs are already at most 2x the target after draft mode) are untouched.
REDUCE_GAP = 3


def check_shape(width: int, height: int, *, max_pixels: int, max_aspect_ratio: float | None) -> None:
    """Raise EventError(too_large | decode) for a size the decoder must not attempt."""
    if width < 1 or height < 1:
        raise EventError(DeadLetterReason.DECODE, f"image is {width}x{height}: it has no pixels")
    if width * height > max_pixels:
        raise EventError(
            DeadLetterReason.TOO_LARGE,
            f"image is {width}x{height} = {width * height} pixels, over the {max_pixels} limit",
        )
    aspect = max(width, height) / min(width, height)
    if max_aspect_ratio is not None and aspect > max_aspect_ratio:
        # too_large, not decode: the bytes are a valid image, refused by a configured limit on its
        # shape (its long side is too large for its short side), like the pixel limit above.
        raise EventError(
            DeadLetterReason.TOO_LARGE,
            f"image is {width}x{height}: aspect ratio {aspect:.1f}:1, over the {max_aspect_ratio:g}:1 limit",
        )


def crop_box(width: int, height: int, max_aspect: float = CROP_ASPECT) -> tuple[int, int, int, int] | None:
    """The centred (left, top, right, bottom) box that cuts the long side to ``max_aspect`` times
    the short side, or None when the image is within it."""
    short, long = min(width, height), max(width, height)
    keep = max(short, int(short * max_aspect))
    if long <= keep:
        return None
    start = (long - keep) // 2
    return (start, 0, start + keep, height) if width > height else (0, start, width, start + keep)


def reduce_factor(width: int, height: int, target: int) -> int:
    """Box-reduction factor that keeps the short side at least REDUCE_GAP x ``target`` (1: none)."""
    factor = min(width, height) // (REDUCE_GAP * target)
    return factor if factor >= 2 else 1


def decoded_size(img: Image.Image, draft_size: int) -> tuple[int, int]:
    """(width, height) the decoder materialises for an opened image: its size after JPEG draft."""
    if img.format == "JPEG":
        img.draft("RGB", (draft_size, draft_size))
    return img.size


def decode_cost(
    data: bytes, *, draft_size: int, max_pixels: int, max_aspect_ratio: float | None = None
) -> int:
    """Pixels ``load_rgb`` decodes at full size for ``data``, from its header alone (no decode).

    The worker plans its micro-batch slices with it (stream/worker/pixel_budget.py). 0 for bytes that
    ``load_rgb`` refuses before decoding (not an image we open, over a limit): they cost nothing.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as img:
                check_shape(*img.size, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
                width, height = decoded_size(img, draft_size)
    except Exception:  # any failure here is load_rgb's to report, with its reason
        return 0
    return width * height


def _reduce(img: Image.Image, factor: int) -> Image.Image:
    """Box-reduce ``img`` to RGB (or L) with as few full-size copies as possible.

    ``reduce`` averages each channel on its own: exact for RGB and L (grey is the same in every
    channel), meaningless for palette indices (converted first), and premultiplied for RGBA,
    whose alpha the plain RGB conversion drops. So RGBA's colour bands are reduced one at a time,
    which is bit-identical to converting first (tested) but holds one 1-byte band at full size
    instead of an RGB copy (4 bytes a pixel in Pillow): 180 instead of 288 MB at once for a
    6000x6000 RGBA PNG.
    """
    if img.mode in ("RGB", "L"):
        return img.reduce(factor)
    if img.mode in ("RGBA", "RGBX"):
        return Image.merge("RGB", [img.getchannel(band).reduce(factor) for band in "RGB"])
    if img.mode == "LA":
        return img.getchannel("L").reduce(factor)
    return img.convert("RGB").reduce(factor)


def _shrink(img: Image.Image, target: int) -> Image.Image:
    """Crop an extreme aspect ratio, box-reduce a very large image, convert to RGB.

    The full-size decode (``crop``, ``convert`` or ``reduce`` loads it) is the only large buffer,
    bounded by the pixel limit; it is released as soon as the smaller image exists.
    """
    box = crop_box(*img.size)
    if box is not None:
        img = img.crop(box)  # the eval transform keeps only the centre anyway
    factor = reduce_factor(*img.size, target)
    if factor > 1:
        img = _reduce(img, factor)
    return img.convert("RGB")


def load_rgb(
    data: bytes, *, draft_size: int, max_pixels: int, max_aspect_ratio: float | None = None
) -> Image.Image:
    """Decode ``data`` into an RGB image, or raise EventError(decode | too_large).

    Bounded whatever the image's shape: images over ``max_pixels`` or, if given, longer than
    ``max_aspect_ratio`` times their width (or vice versa) are refused from the header alone.
    JPEGs use Pillow's draft mode: the decoder scales by 1/2, 1/4 or 1/8 while decoding, never
    below ``draft_size`` on either side, which is several times faster for large photos. Then an
    aspect ratio above CROP_ASPECT is centre-cropped to it, and an image much larger than
    ``draft_size`` (the resize target) is box-reduced (see REDUCE_GAP), so what leaves here has a
    short side under 6 x ``draft_size`` and a long side at most 4 times that. Training and
    serving both call this, so both see the same pixels.
    """
    if not data:
        raise EventError(DeadLetterReason.DECODE, "image is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            check_shape(*img.size, max_pixels=max_pixels, max_aspect_ratio=max_aspect_ratio)
            decoded_size(img, draft_size)
            rgb = _shrink(img, draft_size)
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
