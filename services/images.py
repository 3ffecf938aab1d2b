"""Photo validation and optimisation for the analysis pipeline (docs/ANALYSIS.md, pipeline steps 3 and 4).

Pure functions over bytes: no files, no network, only Pillow.

`validate` decides whether bytes a farmer sent are a photo we accept. The type is sniffed from the
bytes themselves (the MIME type WhatsApp declares is never trusted), only JPEG, PNG and WebP pass,
and the checks run from cheapest to dearest so that hostile input costs little: byte size, magic
bytes, the header's pixel count (a decompression bomb is refused before any pixel is allocated),
the smallest side, and only then a full decode (a truncated or corrupt file is refused; Pillow's
`LOAD_TRUNCATED_IMAGES` is left off).

`optimise` turns an accepted photo into what the AI is sent: EXIF orientation applied, decoded at
reduced size where the format allows (JPEG DCT scaling through `draft`), fitted inside 800x600
without upscaling, colour-managed to sRGB when the file carries an ICC profile, alpha flattened on
white, every piece of metadata dropped (EXIF with its GPS position, XMP, ICC, comments), and saved
as a baseline JPEG whose quality is lowered from 70 in steps until it fits the byte target.

Speed (bench/image_pipeline.py; most of the time is libjpeg reading the 12 MP file's entropy-coded
data, which no setting avoids): the file is handed to the decoder in one piece rather than in 64 KB
blocks, and the JPEG is written with the standard Huffman tables, as libvips does by default. The
optimised tables (a second pass: 3 % smaller on the benchmark's photo, up to a third on smooth or
noisy pictures) are computed only when they decide whether a quality fits the byte target, so
every photo keeps the quality, and the pixels, it had with them; only its byte count may grow.
The resize runs in two halves on two threads (`resize`), which shortens the wall time, not the CPU time.

Pillow's own decompression-bomb guard is process-wide (`Image.MAX_IMAGE_PIXELS`). Importing this
module sets it to `PILLOW_MAX_PIXELS` (our default bound), so Pillow refuses anything over twice
that in `Image.open` with `DecompressionBombError`; our own bound (`max_pixels`) is checked from
the header right after, before decoding. Both the error and the warning Pillow may emit (when
warnings are turned into errors) are reported as `too_many_pixels`.
"""

from __future__ import annotations

import functools
import io
import logging
import struct
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from PIL import Image, ImageCms, ImageFile, ImageOps

log = logging.getLogger(__name__)

MAX_BYTES: Final = 5 * 1024 * 1024
MAX_PIXELS: Final = 40_000_000
MIN_SIDE: Final = 32

# Pillow's global guard, set explicitly rather than left at its default (about 89 MP). Pillow
# warns above it and raises DecompressionBombError above twice it, whatever max_pixels says.
PILLOW_MAX_PIXELS: Final = MAX_PIXELS
Image.MAX_IMAGE_PIXELS = PILLOW_MAX_PIXELS
# A truncated file must be refused, never half-decoded with a grey bottom.
ImageFile.LOAD_TRUNCATED_IMAGES = False

# Bicubic rather than Lanczos: after the JPEG draft decode the last step is small (4000 -> 1000 by
# DCT scaling, then 1000 -> 800), and once the result is saved at quality <= 70 the two filters
# measure the same (PSNR against a full-resolution Lanczos reference, bench/image_pipeline.py's
# photo) while bicubic takes about 11 ms instead of 16 ms here. Bilinear and Hamming take 2-3 ms
# less again but measure lower (0.04-0.06 dB on that photo, 0.1-0.2 dB on sharp-edged shapes).
RESAMPLE: Final = Image.Resampling.BICUBIC
# Below this many output pixels a resize takes well under a millisecond and a helper thread would cost
# more than it saves.
SPLIT_RESIZE_PIXELS: Final = 100_000
WHITE: Final = (255, 255, 255)
_SRGB: Final = ImageCms.createProfile("sRGB")
_ROTATING_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_EXIF_ORIENTATION: Final = 0x0112

# Signatures of image formats we recognise but do not take (-> unsupported_format rather than
# not_an_image). ISO-BMFF brands (HEIC/AVIF) are checked separately.
_OTHER_IMAGE_SIGNATURES: Final = (
    b"GIF87a",
    b"GIF89a",
    b"BM",  # BMP
    b"II*\x00",  # TIFF, little-endian
    b"MM\x00*",  # TIFF, big-endian
    b"\x00\x00\x01\x00",  # ICO
    b"8BPS",  # Photoshop
    b"\xff\x4f\xff\x51",  # JPEG 2000 codestream
    b"\x00\x00\x00\x0cjP  \r\n\x87\n",  # JPEG 2000 (JP2)
    b"\xff\x0a",  # JPEG XL codestream
    b"\x00\x00\x00\x0cJXL \r\n\x87\n",  # JPEG XL container
    b"qoif",
)
_HEIF_BRANDS: Final = frozenset(
    {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}
)

# What Pillow raises for a file it cannot parse or decode.
_DECODE_ERRORS: Final = (OSError, SyntaxError, ValueError, EOFError, IndexError,
                         struct.error, zlib.error)

REASONS: Final = ("not_an_image", "unsupported_format", "too_large", "too_many_pixels", "too_small", "corrupt")


class ImageRejected(Exception):
    """The bytes are not a photo we accept. `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


@dataclass(frozen=True)
class ImageInfo:
    """What `validate` found. width and height are as stored in the file (before EXIF orientation)."""

    format: str  # "JPEG", "PNG" or "WEBP"
    width: int
    height: int
    mode: str  # Pillow's mode as stored: "RGB", "L", "CMYK", "P", "RGBA", ...


@dataclass(frozen=True)
class OptimisedImage:
    """The JPEG sent to the AI. Sizes are as displayed, i.e. after EXIF orientation."""

    data: bytes
    width: int
    height: int
    quality: int
    original_width: int
    original_height: int

    content_type = "image/jpeg"


def sniff(data: bytes) -> str | None:
    """The format named by the magic bytes ("JPEG", "PNG", "WEBP"), or None."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _looks_like_other_image(data: bytes) -> bool:
    if any(data.startswith(signature) for signature in _OTHER_IMAGE_SIGNATURES):
        return True
    if data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS:
        return True
    head = data[:256].lstrip().lower()
    return head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:1024].lower())


def _open(data: bytes, *, max_bytes: int, max_pixels: int, min_side: int) -> ImageFile.ImageFile:
    """Header checks only: nothing is decoded. Raises ImageRejected."""
    if len(data) > max_bytes:
        raise ImageRejected("too_large", f"{len(data)} bytes > {max_bytes}")
    fmt = sniff(data)
    if fmt is None:
        if _looks_like_other_image(data):
            raise ImageRejected("unsupported_format", "only JPEG, PNG and WebP are accepted")
        raise ImageRejected("not_an_image")
    try:
        # formats=[fmt]: only the plugin the magic bytes name may parse the file.
        img = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except _DECODE_ERRORS as exc:  # includes UnidentifiedImageError (an OSError)
        raise ImageRejected("corrupt", f"{fmt} header: {exc}") from None
    if not isinstance(img, ImageFile.ImageFile) or img.format != fmt:
        raise ImageRejected("corrupt", f"{fmt} header")
    width, height = img.size
    if width * height > max_pixels:
        raise ImageRejected("too_many_pixels", f"{width}x{height} > {max_pixels} pixels")
    if min(width, height) < min_side:
        raise ImageRejected("too_small", f"{width}x{height}, smallest side < {min_side}")
    return img


def validate(
    data: bytes,
    *,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
    min_side: int = MIN_SIDE,
    decode: bool = True,
) -> ImageInfo:
    """Accept a JPEG/PNG/WebP photo or raise ImageRejected (reason in REASONS).

    Order: byte size, magic bytes, header pixel count, smallest side, then a full decode. A JPEG
    is decoded at 1/8 scale: libjpeg still reads every entropy-coded block, so truncation and
    broken data are found at a fraction of the cost. A PNG's chunk CRCs are verified first.

    `decode=False` stops after the header checks, for a caller that calls `optimise` next: that
    decodes the whole file anyway and raises `corrupt` itself, so the photo is decoded once.
    """
    img = _open(data, max_bytes=max_bytes, max_pixels=max_pixels, min_side=min_side)
    info = ImageInfo(format=str(img.format), width=img.size[0], height=img.size[1], mode=img.mode)
    if not decode:
        img.close()
        return info
    try:
        if info.format == "PNG":
            img.verify()  # chunk CRCs; the image object is unusable afterwards
            img = Image.open(io.BytesIO(data), formats=["PNG"])
        elif info.format == "JPEG":
            img.draft(None, (max(1, info.width // 8), max(1, info.height // 8)))
        _load(img, len(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise ImageRejected("corrupt", f"{info.format}: {exc}") from None
    finally:
        img.close()
    return info


def fit_size(size: tuple[int, int], box: tuple[int, int]) -> tuple[int, int]:
    """The largest size with `size`'s aspect ratio inside `box`; never larger than `size`."""
    width, height = size
    scale = min(box[0] / width, box[1] / height, 1.0)
    return max(1, min(box[0], round(width * scale))), max(1, min(box[1], round(height * scale)))


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # a broken EXIF block is ignored, not fatal
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


@functools.lru_cache(maxsize=8)
def _srgb_transform(icc: bytes, mode: str) -> ImageCms.ImageCmsTransform | None:
    """The transform from a profile to sRGB (None: it is sRGB already). Phones reuse one profile, so
    it is built once per process; NOCACHE makes it safe to share between threads."""
    source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    if mode == "RGB" and "srgb" in (ImageCms.getProfileDescription(source) or "").lower():
        return None
    return ImageCms.buildTransform(source, _SRGB, mode, "RGB", flags=ImageCms.Flags.NOCACHE)


def _to_srgb(img: Image.Image) -> Image.Image:
    """Colour-manage to sRGB when the file carries a non-sRGB ICC profile (e.g. Display P3, CMYK),
    so that dropping the profile does not shift the colours."""
    icc = img.info.get("icc_profile")
    if not icc or img.mode not in ("RGB", "CMYK"):
        return img
    try:
        transform = _srgb_transform(bytes(icc), img.mode)
        if transform is None:
            return img
        return transform.apply(img)
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:  # unusable profile: Pillow's plain conversion
        log.info("ICC profile ignored", extra={"error": str(exc)[:200]})
        return img


def _flatten(img: Image.Image) -> Image.Image:
    """RGB with alpha composited on white."""
    background = Image.new("RGB", img.size, WHITE)
    background.paste(img.convert("RGB"), mask=img.getchannel("A"))
    return background


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (img.mode == "P" and "transparency" in img.info)


def _prepare_mode(img: Image.Image) -> Image.Image:
    """RGB, or RGBA when there is alpha to flatten after resizing, or CMYK to colour-manage."""
    if _has_alpha(img):
        return img if img.mode == "RGBA" else img.convert("RGBA")
    if img.mode in ("RGB", "CMYK"):
        return img
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        # 16-bit/float greyscale: scale to 8 bits instead of clipping at 255.
        img = img.convert("I").point(lambda v: v * (1 / 257), "L") if img.mode != "F" else img.convert("L")
    return img.convert("RGB")


def _load(img: ImageFile.ImageFile, file_size: int) -> None:
    """Decode, handing the decoder the whole file in one call: Pillow's default feeds it 64 KB at a
    time, and every block boundary costs libjpeg a suspended and restarted MCU (about 1 ms of a
    12 MP photo's 40). The file is in memory already and at most MAX_BYTES."""
    img.decodermaxblock = max(file_size, ImageFile.MAXBLOCK)
    img.load()


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img` resized to `size` with RESAMPLE, the top half on a helper thread.

    Pillow lets go of the GIL while it resamples, so with a core to spare the two halves take about
    half the wall time of one call (libvips, the benchmark's baseline, spreads its work over threads
    the same way); the CPU time stays the same. Each half is resampled from its own box of the
    source, and the filter reads beyond the box, so there is no seam: the picture differs from one
    call's by at most 2 levels (for a box Pillow runs its two passes in the other order, so the
    rounding differs)."""
    width, height = size
    if width * height < SPLIT_RESIZE_PIXELS or height < 2:
        return img.resize(size, RESAMPLE, reducing_gap=3.0)
    top_rows = height // 2
    middle = img.size[1] * top_rows / height  # the source row (a float) where the top half's box ends
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="resize") as helper:
        top = helper.submit(img.resize, (width, top_rows), RESAMPLE, (0, 0, img.size[0], middle), 3.0)
        bottom = img.resize((width, height - top_rows), RESAMPLE, (0, middle, *img.size), 3.0)
        top_half = top.result()
    whole = Image.new(img.mode, size)
    whole.info = dict(img.info)  # the ICC profile is still to be applied
    whole.paste(top_half, (0, 0))
    whole.paste(bottom, (0, top_rows))
    return whole


def _encode(img: Image.Image, quality: int, *, optimize: bool) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "JPEG", quality=quality, optimize=optimize, exif=b"")
    return buffer.getvalue()


def encode_within(img: Image.Image, qualities: list[int], target_bytes: int) -> tuple[bytes, int]:
    """The first quality whose JPEG fits target_bytes, with that JPEG; else the last quality's.

    Each quality is written with the standard Huffman tables first (one pass); only when that is
    too big are optimised tables tried (a second pass, a few % smaller), so the quality chosen is
    the one optimised tables alone would give and the extra pass is paid only near the target."""
    if not qualities:
        raise ValueError("no quality to try")
    for quality in qualities:
        encoded = _encode(img, quality, optimize=False)
        if len(encoded) > target_bytes:
            encoded = _encode(img, quality, optimize=True)
        if len(encoded) <= target_bytes:
            break
    return encoded, quality


def optimise(
    data: bytes,
    *,
    max_width: int = 800,
    max_height: int = 600,
    target_bytes: int = 100_000,
    start_quality: int = 70,
    min_quality: int = 20,
    quality_step: int = 10,
) -> OptimisedImage:
    """The photo as a metadata-free RGB JPEG inside max_width x max_height, <= target_bytes if possible.

    Quality goes start_quality, start_quality - quality_step, ... down to min_quality (always
    tried last); the first encoding within target_bytes is returned, else the min_quality one.
    Raises ImageRejected for input `validate` would refuse at the header (format, pixel count)
    and for a file that does not decode; the byte bound is left to `validate`.
    """
    if not (1 <= min_quality <= start_quality <= 95) or quality_step < 1:
        raise ValueError("need 1 <= min_quality <= start_quality <= 95 and quality_step >= 1")
    img = _open(data, max_bytes=len(data), max_pixels=MAX_PIXELS, min_side=1)  # the byte bound is validate's
    work: Image.Image = img
    try:
        orientation = _orientation(img)
        stored = img.size
        displayed = (stored[1], stored[0]) if orientation in _ROTATING_ORIENTATIONS else stored
        target = fit_size(displayed, (max_width, max_height))
        if img.format == "JPEG":
            # Decode at the smallest 1/1, 1/2, 1/4 or 1/8 scale still at least the target size.
            stored_target = (target[1], target[0]) if orientation in _ROTATING_ORIENTATIONS else target
            img.draft("RGB", stored_target)
        _load(img, len(data))
        if orientation != 1:
            try:
                work = ImageOps.exif_transpose(img)
            except Exception as exc:
                log.info("EXIF orientation ignored", extra={"error": str(exc)[:200]})
        work = _prepare_mode(work)
        if work.size != target:
            work = resize(work, target)
        if work.mode == "RGBA":
            work = _flatten(work)
        else:
            work = _to_srgb(work)
            if work.mode != "RGB":
                work = work.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRejected("too_many_pixels", str(exc)) from None
    except _DECODE_ERRORS as exc:
        raise ImageRejected("corrupt", f"{img.format}: {exc}") from None
    finally:
        if work is not img:
            img.close()

    work.info = {}  # JPEG save would carry a comment over from info; nothing else is passed on
    qualities = [*range(start_quality, min_quality, -quality_step), min_quality]
    encoded, quality = encode_within(work, qualities, target_bytes)
    return OptimisedImage(
        data=encoded,
        width=work.size[0],
        height=work.size[1],
        quality=quality,
        original_width=displayed[0],
        original_height=displayed[1],
    )
