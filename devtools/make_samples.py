"""Draw the simulator's sample leaf photos (`devtools/static/samples/*.jpg`) with Pillow.

Run once; the JPEGs are committed: `.venv/bin/python -m devtools.make_samples`. They are drawn, not
photographed: a leaf with veins, serrated edges and surface texture on a blurred background, and the
symptom each sample is named after (yellowing between the veins, brown spots with yellow halos, or
dried brown margins), so the local analyser gives each a different result. Seeded: the same files
every time.
"""

from __future__ import annotations

import math
import random
from pathlib import Path

from PIL import Image, ImageChops, ImageDraw, ImageFilter

SAMPLES_DIR = Path(__file__).parent / "static" / "samples"
SIZE = (640, 480)


def _noise(size: tuple[int, int], sigma: int, blur: float) -> Image.Image:
    return Image.effect_noise(size, sigma).filter(ImageFilter.GaussianBlur(blur))


def _background(kind: str, rng: random.Random) -> Image.Image:
    """Out-of-focus soil (brown) or foliage (dark green), as behind a leaf photographed up close."""
    width, height = SIZE
    base = (104, 88, 72) if kind == "soil" else (46, 78, 40)
    image = Image.new("RGB", SIZE, base)
    draw = ImageDraw.Draw(image)
    for _ in range(160):
        x, y, r = rng.randrange(width), rng.randrange(height), rng.randrange(10, 60)
        shade = rng.randrange(-28, 28)
        color = tuple(max(0, min(255, c + shade)) for c in base)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=color)
    image = image.filter(ImageFilter.GaussianBlur(14))
    grain = _noise(SIZE, 40, 1.2).convert("RGB")
    return ImageChops.add(ImageChops.multiply(image, Image.new("RGB", SIZE, (235, 235, 235))),
                          ImageChops.multiply(grain, Image.new("RGB", SIZE, (22, 22, 22))))


def _leaf_outline(rng: random.Random, tilt: float) -> list[tuple[float, float]]:
    """A pointed oval with small teeth, from the stalk (left) to the tip (right), tilted."""
    cx, cy, length, half_width = 330, 245, 470, 150
    upper, lower = [], []
    steps = 140
    for i in range(steps + 1):
        t = i / steps
        width = half_width * math.sin(math.pi * t) ** 0.85 * (1 - 0.25 * t)
        width *= 1 + 0.045 * math.sin(t * 90) + rng.uniform(-0.01, 0.01)  # serration
        x = -length / 2 + length * t
        upper.append((x, -width))
        lower.append((x, width * 0.94))
    points = upper + lower[::-1]
    cos, sin = math.cos(tilt), math.sin(tilt)
    return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]


def _leaf(rng: random.Random, tilt: float) -> tuple[Image.Image, Image.Image, list[tuple[float, float, float]]]:
    """The leaf's colour layer (green, textured, veined), its mask, and its vein segments."""
    mask = Image.new("L", SIZE, 0)
    ImageDraw.Draw(mask).polygon(_leaf_outline(rng, tilt), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(1.2))
    shade = Image.linear_gradient("L").rotate(90 + math.degrees(tilt), expand=False).resize(SIZE)
    leaf = Image.merge("RGB", (shade.point(lambda v: 48 + v // 9), shade.point(lambda v: 112 + v // 4),
                               shade.point(lambda v: 38 + v // 12)))
    texture = _noise(SIZE, 30, 0.8).convert("RGB")
    leaf = ImageChops.add(leaf, ImageChops.multiply(texture, Image.new("RGB", SIZE, (18, 26, 14))), offset=-12)
    draw = ImageDraw.Draw(leaf)
    cos, sin = math.cos(tilt), math.sin(tilt)

    def at(x: float, y: float) -> tuple[float, float]:
        return 330 + x * cos - y * sin, 245 + x * sin + y * cos

    veins: list[tuple[float, float, float]] = []
    draw.line([at(-240, 0), at(235, 0)], fill=(150, 190, 110), width=5)  # midrib
    for k in range(1, 9):
        x0 = -200 + k * 48
        for side in (-1, 1):
            reach = 118 * math.sin(math.pi * (k / 9)) ** 0.7
            end = at(x0 + reach * 0.8, side * reach)
            draw.line([at(x0, 0), end], fill=(128, 176, 96), width=2)
            veins.append((x0, side, reach))
    leaf = leaf.filter(ImageFilter.GaussianBlur(0.6))
    return leaf, mask, veins


def _yellowing(leaf: Image.Image, mask: Image.Image, rng: random.Random) -> Image.Image:
    """Chlorosis: blotches between the veins turn yellow, strongest towards the leaf's tip."""
    blotches = Image.new("L", SIZE, 0)
    draw = ImageDraw.Draw(blotches)
    for _ in range(70):
        x, y = rng.randrange(260, 600), rng.randrange(90, 420)
        r = rng.randrange(18, 46)
        draw.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=rng.randrange(150, 255))
    blotches = blotches.filter(ImageFilter.GaussianBlur(12))
    yellow = Image.new("RGB", SIZE, (206, 192, 62))
    yellow = ImageChops.add(yellow, ImageChops.multiply(_noise(SIZE, 30, 1).convert("RGB"),
                                                        Image.new("RGB", SIZE, (20, 20, 8))), offset=-10)
    return Image.composite(yellow, leaf, ImageChops.multiply(blotches, mask))


def _spots(leaf: Image.Image, mask: Image.Image, rng: random.Random, count: int) -> Image.Image:
    """Fungal-looking lesions: dark brown centres, lighter rings, a yellow halo."""
    halo = Image.new("L", SIZE, 0)
    lesion = Image.new("L", SIZE, 0)
    h_draw, l_draw = ImageDraw.Draw(halo), ImageDraw.Draw(lesion)
    for _ in range(count):
        x, y = rng.randrange(150, 560), rng.randrange(110, 390)
        r = rng.randrange(7, 22)
        h_draw.ellipse((x - r * 1.7, y - r * 1.7, x + r * 1.7, y + r * 1.7), fill=200)
        l_draw.ellipse((x - r, y - r, x + r, y + r), fill=255)
        l_draw.ellipse((x - r * 0.55, y - r * 0.55, x + r * 0.55, y + r * 0.55), fill=255)
    halo = ImageChops.multiply(halo.filter(ImageFilter.GaussianBlur(6)), mask)
    lesion = ImageChops.multiply(lesion.filter(ImageFilter.GaussianBlur(1.5)), mask)
    leaf = Image.composite(Image.new("RGB", SIZE, (196, 186, 70)), leaf, halo)
    brown = Image.new("RGB", SIZE, (112, 62, 24))
    brown = ImageChops.add(brown, ImageChops.multiply(_noise(SIZE, 50, 0.7).convert("RGB"),
                                                      Image.new("RGB", SIZE, (40, 26, 12))), offset=-18)
    return Image.composite(brown, leaf, lesion)


def _dry_margins(leaf: Image.Image, mask: Image.Image) -> Image.Image:
    """Scorched edges: a brown band along the margin, fading into yellow, then green."""
    inner = mask.filter(ImageFilter.MinFilter(31)).filter(ImageFilter.GaussianBlur(10))
    band = ImageChops.subtract(mask, inner)
    yellow_band = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(51)).filter(ImageFilter.GaussianBlur(8)))
    leaf = Image.composite(Image.new("RGB", SIZE, (190, 170, 64)), leaf, yellow_band)
    grain = ImageChops.multiply(_noise(SIZE, 50, 0.8).convert("RGB"), Image.new("RGB", SIZE, (36, 24, 10)))
    brown = ImageChops.add(Image.new("RGB", SIZE, (126, 74, 30)), grain, offset=-18)
    return Image.composite(brown, leaf, band)


# name: (background, symptom). What the simulator calls each, in both languages, is in
# `devtools.chat_labels` (`sample_<name>`).
SAMPLES = {
    "saglikli_yaprak": ("foliage", None),
    "sararan_yaprak": ("soil", "yellowing"),
    "lekeli_yaprak": ("soil", "spots"),
    "kuruyan_kenarlar": ("soil", "margins"),
}


def draw_sample(name: str, seed: int) -> Image.Image:
    background_kind, symptom = SAMPLES[name]
    rng = random.Random(seed)
    background = _background(background_kind, rng)
    leaf, mask, _ = _leaf(rng, tilt=rng.uniform(-0.35, 0.35))
    if symptom == "yellowing":
        leaf = _yellowing(leaf, mask, rng)
    elif symptom == "spots":
        leaf = _spots(leaf, mask, rng, count=26)
    elif symptom == "margins":
        leaf = _dry_margins(leaf, mask)
    shadow = mask.filter(ImageFilter.GaussianBlur(12)).point(lambda v: v * 0.45)
    photo = Image.composite(Image.new("RGB", SIZE, (20, 18, 12)), background, ImageChops.offset(shadow, 10, 14))
    photo = Image.composite(leaf, photo, mask)
    vignette = Image.radial_gradient("L").resize(SIZE).point(lambda v: 255 - v // 3)
    return ImageChops.multiply(photo, Image.merge("RGB", (vignette, vignette, vignette)))


def main() -> None:
    SAMPLES_DIR.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate(SAMPLES, start=7):
        path = SAMPLES_DIR / f"{name}.jpg"
        draw_sample(name, seed).save(path, "JPEG", quality=82, optimize=True, progressive=True)
        print(f"{path}: {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()
