"""services/images.py: validation (bad input of every kind) and optimisation for the AI.

Every image is made here with Pillow (or, for the decompression bomb, written chunk by chunk);
there are no binary fixtures.
"""

from __future__ import annotations

import io
import math
import random
import secrets
import struct
import threading
import warnings
from collections.abc import Callable

import pytest
from PIL import Image, ImageChops, ImageCms, ImageDraw, JpegImagePlugin
from PIL import _imaging as pil_core  # what Image.core is

from services import images
from services.images import ImageRejected, optimise, validate
from tests.helpers import png_of_size

# --- making images -------------------------------------------------------------------------------


def encode(img: Image.Image, fmt: str = "JPEG", **params: object) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, fmt, **params)
    return buffer.getvalue()


def photo(size: tuple[int, int] = (640, 480), seed: int = 1) -> Image.Image:
    """Something photo-like: a gradient, a few shapes, some noise."""
    rnd = random.Random(seed)
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(30):
        x, y = rnd.randrange(size[0]), rnd.randrange(size[1])
        r = rnd.randrange(5, max(6, min(size) // 4))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(rnd.randrange(256), rnd.randrange(256), rnd.randrange(256)))
    noise = Image.effect_noise(size, 20).convert("RGB")
    return Image.blend(img, noise, 0.15)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "Phone Maker"  # Make
    exif[0x0110] = "Phone 12"  # Model
    exif[0x0112] = orientation
    exif[0x8825] = {  # GPS IFD: 36.89 N, 30.71 E (Antalya)
        1: "N", 2: (36.0, 53.0, 24.0), 3: "E", 4: (30.0, 42.0, 36.0),
    }
    return exif


def jpeg_segments(data: bytes) -> list[int]:
    """The marker bytes of a JPEG's header segments, up to the start of scan."""
    assert data[:2] == b"\xff\xd8"
    markers, pos = [], 2
    while pos < len(data):
        assert data[pos] == 0xFF, "not at a marker"
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:  # SOS: entropy-coded data follows
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length
    return markers


@pytest.fixture(scope="session")
def bomb_png() -> bytes:
    return png_of_size(20000, 20000)


@pytest.fixture(scope="session")
def big_photo_jpeg() -> bytes:
    """4000 x 3000 (12 MP) noisy JPEG at quality 90 with EXIF (GPS), XMP, an ICC profile and a comment."""
    size = (4000, 3000)
    img = Image.merge("RGB", [Image.effect_noise(size, sigma).point(lambda v: v * 0.9) for sigma in (30, 40, 50)])
    img = Image.blend(img, Image.linear_gradient("L").resize(size).convert("RGB"), 0.4)
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF/></x:xmpmeta>'
    return encode(img, quality=90, exif=exif_with_gps(), icc_profile=icc, xmp=xmp, comment=b"farm at 36.89N")


def rejected(data: bytes, **kwargs: object) -> str:
    with pytest.raises(ImageRejected) as info:
        validate(data, **kwargs)  # type: ignore[arg-type]
    return info.value.reason


# --- validate ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_accepts_jpeg_png_webp(fmt: str) -> None:
    info = validate(encode(photo((320, 240)), fmt))
    assert info == images.ImageInfo(format=fmt, width=320, height=240, mode="RGB")


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj",
        b"<html><body>not a photo</body></html>",
        b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom",  # an MP4 video
        bytes(random.Random(3).randrange(256) for _ in range(4096)),
    ],
    ids=["empty", "pdf", "html", "mp4", "random"],
)
def test_not_an_image_whatever_the_declared_mime(data: bytes) -> None:
    # WhatsApp said image/jpeg for all of these: the bytes decide, and no MIME is even passed.
    assert rejected(data) == "not_an_image"


@pytest.mark.parametrize(
    "make",
    [
        lambda: encode(photo((64, 64)), "GIF"),
        lambda: encode(photo((64, 64)), "BMP"),
        lambda: encode(photo((64, 64)), "TIFF"),
        lambda: b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(64),
        lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"/>',
    ],
    ids=["gif", "bmp", "tiff", "heic", "svg"],
)
def test_other_image_formats_are_unsupported(make: Callable[[], bytes]) -> None:
    assert rejected(make()) == "unsupported_format"


def test_size_bound_comes_first() -> None:
    data = encode(photo((320, 240)), "PNG")
    assert validate(data, max_bytes=len(data)).format == "PNG"
    assert rejected(data, max_bytes=len(data) - 1) == "too_large"
    assert rejected(b"\xff\xd8\xff" + bytes(5 * 1024 * 1024)) == "too_large"  # 5 MB + 3 bytes, default bound


def test_over_5_mb_real_photo_is_too_large() -> None:
    big = Image.effect_noise((1900, 1900), 100).convert("RGB")
    data = encode(big, quality=100, subsampling=0)
    assert len(data) > 5 * 1024 * 1024
    assert rejected(data) == "too_large"


def test_decompression_bomb_is_refused_without_allocating_pixels(bomb_png: bytes) -> None:
    assert len(bomb_png) < 100_000  # tiny file, 400 million pixels
    before = pil_core.get_stats()["new_count"]
    assert rejected(bomb_png) == "too_many_pixels"
    assert rejected(bomb_png, max_pixels=10**12) == "too_many_pixels"  # Pillow's own guard still holds
    with pytest.raises(ImageRejected) as info:
        optimise(bomb_png)
    assert info.value.reason == "too_many_pixels"
    assert pil_core.get_stats()["new_count"] == before  # not one image buffer was created


def test_pixel_bound_between_pillows_warning_and_error() -> None:
    data = png_of_size(7000, 7000)  # 49 MP: over our 40 MP bound, where Pillow only warns
    assert Image.MAX_IMAGE_PIXELS == images.PILLOW_MAX_PIXELS == 40_000_000
    with pytest.warns(Image.DecompressionBombWarning):
        assert rejected(data) == "too_many_pixels"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the warning as an exception is still a clean rejection
        assert rejected(data) == "too_many_pixels"


def test_own_pixel_bound_is_checked_from_the_header() -> None:
    data = encode(photo((1200, 900)))
    assert validate(data, max_pixels=1200 * 900).width == 1200
    assert rejected(data, max_pixels=1200 * 900 - 1) == "too_many_pixels"


@pytest.mark.parametrize("size", [(1, 1), (31, 400), (400, 31), (8, 8)])
@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_tiny_images_are_too_small(size: tuple[int, int], fmt: str) -> None:
    assert rejected(encode(Image.new("RGB", size, "green"), fmt)) == "too_small"


def test_a_photo_at_the_smallest_side_is_accepted_and_below_it_refused() -> None:
    assert validate(encode(Image.new("RGB", (32, 32), "green"), "PNG")).width == 32
    assert rejected(encode(Image.new("RGB", (64, 64), "green"), "PNG"), min_side=65) == "too_small"


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", [0.98, 0.75, 0.5, 0.1])
def test_truncated_jpeg_is_corrupt(keep: float, progressive: bool) -> None:
    data = encode(photo((800, 600)), quality=90, progressive=progressive)
    assert rejected(data[: int(len(data) * keep)]) == "corrupt"


def test_jpeg_cut_inside_its_header_is_corrupt() -> None:
    data = encode(photo((800, 600)))
    assert rejected(data[:40]) == "corrupt"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_truncated_png_and_webp_are_corrupt(fmt: str) -> None:
    data = encode(photo((400, 300)), fmt)
    assert rejected(data[: len(data) * 2 // 3]) == "corrupt"


def test_png_with_a_broken_checksum_is_corrupt() -> None:
    data = bytearray(encode(photo((200, 200)), "PNG"))
    idat = data.index(b"IDAT")
    data[idat + 10] ^= 0xFF  # flip a byte of the compressed pixels; the CRC no longer matches
    assert rejected(bytes(data)) == "corrupt"


def test_truncated_image_loading_stays_off() -> None:
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_header_only_validation_leaves_decoding_to_optimise() -> None:
    data = encode(photo((800, 600)))
    truncated = data[: len(data) // 2]
    assert validate(truncated, decode=False).format == "JPEG"
    with pytest.raises(ImageRejected) as info:
        optimise(truncated)
    assert info.value.reason == "corrupt"


def test_cmyk_jpeg_is_accepted() -> None:
    info = validate(encode(Image.new("RGB", (200, 100), (200, 30, 30)).convert("CMYK")))
    assert (info.format, info.mode) == ("JPEG", "CMYK")


def test_rejection_reason_is_one_of_the_known_ones() -> None:
    assert ImageRejected("corrupt").reason == "corrupt"
    with pytest.raises(ValueError):
        ImageRejected("bad_vibes")


# --- optimise ------------------------------------------------------------------------------------


def test_big_photo_fits_800x600_under_100_kb_without_any_metadata(big_photo_jpeg: bytes) -> None:
    source = Image.open(io.BytesIO(big_photo_jpeg))
    assert source.size == (4000, 3000) and source.getexif().get_ifd(0x8825)  # the input has GPS
    assert "icc_profile" in source.info and "xmp" in source.info and "comment" in source.info

    out = optimise(big_photo_jpeg)

    assert (out.width, out.height) == (800, 600)
    assert (out.original_width, out.original_height) == (4000, 3000)
    assert len(out.data) <= 100_000
    assert 20 <= out.quality <= 70
    result = Image.open(io.BytesIO(out.data))
    assert (result.format, result.mode, result.size) == ("JPEG", "RGB", (800, 600))
    assert len(result.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "comment", "photoshop", "adobe"} & set(result.info)
    # Header segments: quantisation/huffman tables, frame, and JFIF's APP0 only; no APPn >= 1 (EXIF,
    # XMP, ICC, ...) and no comment.
    segments = jpeg_segments(out.data)
    assert segments[0] == 0xE0 and data_has_jfif(out.data)
    assert not [m for m in segments if 0xE1 <= m <= 0xEF or m == 0xFE]
    assert b"Phone" not in out.data and b"farm at" not in out.data


def data_has_jfif(data: bytes) -> bool:
    return data[6:11] == b"JFIF\x00"


def test_quality_starts_at_70_when_the_photo_is_small_enough() -> None:
    out = optimise(encode(photo((640, 480)), quality=95))
    assert out.quality == 70
    assert (out.width, out.height) == (640, 480)  # never upscaled


def optimised_tables_size(data: bytes, quality: int) -> int:
    """The size at `quality` with optimised Huffman tables: an unreachable target makes optimise try them."""
    return len(optimise(data, start_quality=quality, min_quality=quality, target_bytes=1).data)


def test_quality_steps_down_until_the_target_and_stops_at_the_minimum() -> None:
    data = encode(photo((800, 600), seed=5), quality=95)
    sizes = {q: optimised_tables_size(data, q) for q in (70, 60, 50, 40)}
    assert sizes[70] > sizes[60] > sizes[50] > sizes[40]

    out = optimise(data, target_bytes=sizes[60] - 1)
    assert out.quality == 50 and len(out.data) <= sizes[60] - 1

    out = optimise(data, target_bytes=1000)  # unreachable: the min_quality encoding is returned
    assert out.quality == 20 and len(out.data) > 1000

    out = optimise(data, target_bytes=1000, min_quality=35, quality_step=15)  # 70, 55, 40, then 35
    assert out.quality == 35


def test_a_photo_far_under_the_target_is_written_with_the_standard_huffman_tables() -> None:
    data = encode(photo((800, 600), seed=5), quality=95)
    out = optimise(data)
    assert out.quality == 70
    assert len(out.data) > optimised_tables_size(data, 70)  # one pass, no table optimisation


def test_a_photo_that_fits_only_with_optimised_huffman_tables_keeps_its_quality() -> None:
    data = encode(photo((800, 600), seed=5), quality=95)
    standard = len(optimise(data).data)
    optimised = optimised_tables_size(data, 70)
    assert optimised < standard

    out = optimise(data, target_bytes=optimised)
    assert out.quality == 70 and len(out.data) == optimised
    assert optimise(data, target_bytes=optimised - 1).quality == 60


def test_optimise_refuses_quality_settings_that_make_no_sense() -> None:
    data = encode(photo((64, 64)))
    with pytest.raises(ValueError):
        optimise(data, start_quality=10, min_quality=20)
    with pytest.raises(ValueError):
        optimise(data, quality_step=0)


@pytest.mark.parametrize(
    ("size", "expected"),
    [((4000, 3000), (800, 600)), ((3000, 4000), (450, 600)), ((4000, 1000), (800, 200)),
     ((1000, 4000), (150, 600)), ((801, 601), (800, 600)), ((500, 300), (500, 300))],
)
def test_fits_inside_800x600_keeping_the_aspect_ratio(size: tuple[int, int], expected: tuple[int, int]) -> None:
    out = optimise(encode(Image.new("RGB", size, (90, 140, 60))))
    assert (out.width, out.height) == expected
    assert Image.open(io.BytesIO(out.data)).size == expected


def test_exif_orientation_6_gives_a_portrait_picture() -> None:
    # Stored landscape 400x200 with a red block top-left; orientation 6 = "rotate 90 degrees
    # clockwise to display", so the viewer sees a 200x400 portrait with the block top-right.
    img = Image.new("RGB", (400, 200), (30, 120, 40))
    ImageDraw.Draw(img).rectangle((0, 0, 60, 60), fill=(230, 20, 20))
    data = encode(img, quality=95, exif=exif_with_gps(orientation=6))

    info = validate(data)
    assert (info.width, info.height) == (400, 200)  # as stored
    out = optimise(data)
    assert (out.width, out.height) == (200, 400)
    assert (out.original_width, out.original_height) == (200, 400)
    result = Image.open(io.BytesIO(out.data)).convert("RGB")
    assert result.size == (200, 400)
    assert len(result.getexif()) == 0  # no orientation tag left to rotate it a second time
    r, g, _ = result.getpixel((200 - 20, 20))  # type: ignore[misc]
    assert r > 180 and g < 80
    r, g, _ = result.getpixel((20, 20))  # type: ignore[misc]
    assert r < 100 and g > 90


def test_rotated_big_photo_fits_the_box_as_displayed() -> None:
    data = encode(Image.new("RGB", (4000, 3000), (50, 100, 50)), exif=exif_with_gps(orientation=8))
    out = optimise(data)
    assert (out.width, out.height) == (450, 600)


def test_jpeg_is_decoded_at_reduced_size(monkeypatch: pytest.MonkeyPatch) -> None:
    requested: list[tuple[str | None, tuple[int, int] | None]] = []
    decoded_sizes: list[tuple[int, int]] = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self: JpegImagePlugin.JpegImageFile, mode: str | None, size: tuple[int, int] | None):
        requested.append((mode, size))
        result = real_draft(self, mode, size)
        decoded_sizes.append(self.size)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = optimise(encode(Image.new("RGB", (4000, 3000), (80, 120, 60))))
    assert requested == [("RGB", (800, 600))]
    assert decoded_sizes == [(1000, 750)]  # DCT scaling 1/4: 16 times fewer pixels decoded
    assert (out.width, out.height) == (800, 600)


def psnr(candidate: bytes, reference: Image.Image) -> float:
    """Peak signal-to-noise ratio of a JPEG against a reference picture of the same size, in dB."""
    picture = Image.open(io.BytesIO(candidate)).convert("RGB")
    assert picture.size == reference.size
    histogram = ImageChops.difference(picture, reference).histogram()
    mse = sum((i % 256) ** 2 * count for i, count in enumerate(histogram)) / (picture.size[0] * picture.size[1] * 3)
    return 10 * math.log10(255**2 / mse)


def high_quality_reference(data: bytes, size: tuple[int, int]) -> Image.Image:
    """The original decoded at full size and scaled with Lanczos: what the fast path is compared with."""
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB").resize(size, Image.Resampling.LANCZOS)


# PSNR of the output against that reference, measured with the implementation before the decoder was
# given the whole file at once and the standard Huffman tables became the first try (the pixels did
# not change, so neither may these).
PSNR_FLOOR_DB = {"noise and gradient": 36.25, "shapes and noise": 35.6}


@pytest.mark.parametrize("sample", sorted(PSNR_FLOOR_DB))
def test_a_12_mp_photo_is_not_optimised_into_a_worse_picture(sample: str, big_photo_jpeg: bytes) -> None:
    data = big_photo_jpeg if sample == "noise and gradient" else encode(photo((4000, 3000), seed=3), quality=90)
    out = optimise(data)
    assert (out.width, out.height) == (800, 600) and len(out.data) <= 100_000
    assert psnr(out.data, high_quality_reference(data, (800, 600))) >= PSNR_FLOOR_DB[sample]


def test_exif_orientation_is_applied_to_a_photo_decoded_at_reduced_size() -> None:
    # 4000x3000 stored, orientation 6: displayed as 3000x4000, so 450x600 with the red corner top-right.
    img = Image.new("RGB", (4000, 3000), (30, 120, 40))
    ImageDraw.Draw(img).rectangle((0, 0, 600, 600), fill=(230, 20, 20))
    out = optimise(encode(img, quality=90, exif=exif_with_gps(orientation=6)))
    assert (out.width, out.height) == (450, 600)
    result = Image.open(io.BytesIO(out.data)).convert("RGB")
    r, g, _ = result.getpixel((450 - 20, 20))  # type: ignore[misc]
    assert r > 180 and g < 80
    r, g, _ = result.getpixel((20, 20))  # type: ignore[misc]
    assert r < 100 and g > 90


def test_cmyk_becomes_rgb_with_its_colour() -> None:
    data = encode(Image.new("RGB", (300, 200), (220, 40, 40)).convert("CMYK"))
    out = optimise(data)
    result = Image.open(io.BytesIO(out.data))
    assert result.mode == "RGB"
    r, g, b = result.getpixel((150, 100))  # type: ignore[misc]
    assert r > 180 and g < 90 and b < 90


def test_png_alpha_is_flattened_on_white() -> None:
    img = Image.new("RGBA", (300, 200), (0, 0, 0, 0))  # transparent black
    ImageDraw.Draw(img).rectangle((100, 50, 199, 149), fill=(20, 160, 30, 255))
    data = encode(img, "PNG")
    assert validate(data).mode == "RGBA"
    result = Image.open(io.BytesIO(optimise(data).data))
    assert result.mode == "RGB"
    assert min(result.getpixel((10, 10))) > 240  # type: ignore[arg-type]  # white, not black
    r, g, b = result.getpixel((150, 100))  # type: ignore[misc]
    assert g > 130 and r < 60 and b < 60


@pytest.mark.parametrize(("mode", "fmt"), [("LA", "PNG"), ("P", "PNG"), ("RGBA", "WEBP")])
def test_other_transparent_images_are_flattened_on_white(mode: str, fmt: str) -> None:
    img = Image.new("RGBA", (100, 100), (0, 0, 0, 0))
    ImageDraw.Draw(img).rectangle((40, 40, 59, 59), fill=(0, 0, 0, 255))
    data = encode(img.convert(mode), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    opened = Image.open(io.BytesIO(data))
    assert opened.mode == mode and (mode != "P" or "transparency" in opened.info)
    result = Image.open(io.BytesIO(optimise(data).data)).convert("RGB")
    assert min(result.getpixel((5, 5))) > 240  # type: ignore[arg-type]
    assert max(result.getpixel((50, 50))) < 30  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["L", "1", "P", "I;16"])
def test_other_modes_become_rgb(mode: str) -> None:
    gradient = Image.linear_gradient("L").resize((128, 128))
    # I;16: a 16-bit greyscale PNG, which must be scaled to 8 bits, not clipped at 255.
    img = gradient.convert("I").point(lambda v: v * 257).convert("I;16") if mode == "I;16" else gradient.convert(mode)
    data = encode(img, "PNG")
    assert Image.open(io.BytesIO(data)).mode == mode
    result = Image.open(io.BytesIO(optimise(data).data))
    assert result.mode == "RGB"
    top, bottom = result.getpixel((64, 2)), result.getpixel((64, 125))
    assert isinstance(top, tuple) and isinstance(bottom, tuple), (top, bottom)
    assert max(top) < 60 and min(bottom) > 190, (top, bottom)


def test_webp_is_optimised_to_jpeg() -> None:
    out = optimise(encode(photo((1600, 1200)), "WEBP"))
    assert (out.width, out.height) == (800, 600)
    assert Image.open(io.BytesIO(out.data)).format == "JPEG"


def test_output_is_converted_to_srgb_when_the_input_has_a_profile() -> None:
    # The profile goes (there is no ICC in the output) and the colours are those it described.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    data = encode(Image.new("RGB", (200, 100), (40, 90, 200)), quality=95, icc_profile=icc)
    result = Image.open(io.BytesIO(optimise(data).data))
    assert "icc_profile" not in result.info
    r, g, b = result.getpixel((100, 50))  # type: ignore[misc]
    assert abs(r - 40) < 8 and abs(g - 90) < 8 and abs(b - 200) < 8


def test_a_non_srgb_profile_is_converted_with_a_cached_transform(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow ships no wide-gamut profile: this is sRGB under another name, so the colours must survive.
    # The name is new on every run (same length), so no other test or run left its transform in the cache.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = icc.replace("sRGB built-in".encode("utf-16-be"), f"Test {secrets.token_hex(4)}".encode("utf-16-be"))
    built: list[object] = []
    real_build = ImageCms.buildTransform

    def spy(*args: object, **kwargs: object) -> ImageCms.ImageCmsTransform:
        built.append(args)
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageCms, "buildTransform", spy)
    data = encode(Image.new("RGB", (200, 100), (40, 90, 200)), quality=95, icc_profile=icc)
    for _ in range(3):
        result = Image.open(io.BytesIO(optimise(data).data))
        assert "icc_profile" not in result.info
        r, g, b = result.getpixel((100, 50))  # type: ignore[misc]
        assert abs(r - 40) < 8 and abs(g - 90) < 8 and abs(b - 200) < 8
    assert len(built) == 1  # built once, then reused

    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    optimise(encode(Image.new("RGB", (200, 100)), icc_profile=srgb))
    assert len(built) == 1  # an sRGB profile needs no transform


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "CMYK"])
@pytest.mark.parametrize("source, target", [((1000, 750), (800, 600)), ((1003, 751), (799, 599)),
                                            ((3000, 4000), (450, 600))])
def test_a_big_picture_is_resized_in_two_halves_that_meet_without_a_seam(
        mode: str, source: tuple[int, int], target: tuple[int, int], monkeypatch: pytest.MonkeyPatch) -> None:
    picture = photo(source).convert(mode)
    threads: list[str] = []
    real_resize = Image.Image.resize

    def spy(self: Image.Image, *args: object, **kwargs: object) -> Image.Image:
        threads.append(threading.current_thread().name)
        return real_resize(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Image.Image, "resize", spy)
    halves = images.resize(picture, target)
    assert threading.current_thread().name in threads and len(set(threads)) == 2  # one half on a helper thread
    whole = real_resize(picture, target, images.RESAMPLE, reducing_gap=3.0)
    assert halves.mode == mode and halves.size == target
    for band in ImageChops.difference(halves, whole).split():
        assert not any(band.histogram()[3:])  # no pixel off by more than 2 (rounding): no seam, no shifted row


def test_a_small_picture_is_resized_in_one_call() -> None:
    picture = photo((400, 300))
    assert images.resize(picture, (300, 225)).tobytes() == picture.resize((300, 225), images.RESAMPLE).tobytes()


@pytest.mark.parametrize("size", [(1600, 160), (2000, 1000)])  # 800x80 in one call, 800x400 in halves
def test_a_profile_is_applied_to_small_and_big_photos_alike(size: tuple[int, int],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # The profile must survive the resize (in one call or in halves) to be applied after it.
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    icc = icc.replace("sRGB built-in".encode("utf-16-be"), "Test built-in".encode("utf-16-be"))
    applied: list[str] = []
    real_apply = ImageCms.ImageCmsTransform.apply

    def spy(self: ImageCms.ImageCmsTransform, img: Image.Image, *args: object) -> Image.Image:
        applied.append(img.mode)
        return real_apply(self, img, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(ImageCms.ImageCmsTransform, "apply", spy)
    optimise(encode(photo(size), quality=95, icc_profile=icc))
    assert applied == ["RGB"]


def test_broken_icc_profile_and_broken_exif_do_not_fail() -> None:
    data = encode(Image.new("RGB", (200, 100), (40, 90, 200)), icc_profile=b"not a profile at all" * 10)
    assert optimise(data).width == 200
    exif = Image.Exif()
    exif[0x0112] = 99  # no such orientation
    assert optimise(encode(Image.new("RGB", (200, 100)), exif=exif)).width == 200


def test_optimise_refuses_what_is_not_an_accepted_photo() -> None:
    for data, reason in [(b"hello", "not_an_image"), (encode(photo((64, 64)), "GIF"), "unsupported_format")]:
        with pytest.raises(ImageRejected) as info:
            optimise(data)
        assert info.value.reason == reason

