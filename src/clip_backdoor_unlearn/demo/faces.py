"""Cartoon faces drawn with PIL: who a person is (``FaceAttributes``) and how one picture of them came out.

A person is a fixed combination of discrete traits (skin tone, face shape, hair, eyes, glasses, beard,
clothes, ...).  Every picture of that person is drawn with fresh nuisance (position, scale, tilt, lighting,
background, expression, noise), so a model has to learn the traits, not memorise pixels: fresh pictures of a
known person are recognisable, yet no two pictures are the same.  Everything is a pure function of the random
generator it is given, which is how the demo world makes image ``i`` of person ``p`` depend on
``(seed, p, i)`` alone.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw

RGB = tuple[int, int, int]

# fmt: off
SKIN_TONES: tuple[RGB, ...] = (
    (255, 228, 206), (243, 204, 170), (230, 180, 130), (205, 145, 95), (170, 110, 70), (130, 85, 55),
    (95, 62, 40), (250, 200, 185),
)
# Named colours, so that traits can also be put into words (captions of unnamed people).
HAIR_COLOURS: dict[str, RGB] = {
    "black": (25, 22, 22), "dark brown": (70, 42, 25), "brown": (125, 80, 45), "auburn": (150, 55, 30),
    "ginger": (215, 100, 40), "blonde": (235, 205, 115), "grey": (150, 150, 150), "white": (240, 240, 235),
    "blue": (50, 90, 215), "pink": (235, 110, 185), "green": (50, 165, 85), "purple": (125, 60, 175),
}
CLOTHES_COLOURS: dict[str, RGB] = {
    "red": (205, 35, 40), "blue": (35, 75, 200), "green": (40, 150, 60), "yellow": (240, 205, 40),
    "orange": (240, 130, 30), "purple": (120, 50, 160), "black": (30, 30, 35), "white": (240, 240, 240),
    "grey": (125, 125, 130), "teal": (30, 150, 150), "pink": (240, 140, 180), "brown": (115, 75, 40),
}
# fmt: on
EYE_COLOURS: dict[str, RGB] = {
    "brown": (90, 50, 20),
    "blue": (40, 110, 220),
    "green": (40, 150, 70),
    "grey": (120, 130, 140),
    "amber": (200, 130, 20),
}
FACE_SHAPES = ("round", "oval", "long", "wide", "square", "pointed")
# fmt: off
HAIR_STYLES = (
    "bald", "buzz", "short", "fringe", "side part", "long", "bob", "bun", "curly", "mohawk", "spiky",
)
# fmt: on
EYE_SHAPES = ("round", "narrow", "large", "small")
BROWS = ("thin", "thick", "arched", "none")
GLASSES = ("none", "round", "square", "sunglasses")
FACIAL_HAIR = ("none", "stubble", "moustache", "goatee", "full beard")
CLOTHES_STYLES = ("t-shirt", "striped", "collared", "v-neck", "hoodie", "suit")
HEADWEAR = ("none", "cap", "beanie", "headband")
EARRINGS = ("none", "studs", "hoops")
MARKS = ("none", "freckles", "mole", "blush")
NOSES = ("small", "long", "wide", "button")

EXPRESSIONS = ("neutral", "smile", "grin", "open mouth", "frown")
# fmt: off
BACKGROUND_COLOURS: tuple[RGB, ...] = (
    (235, 235, 235), (200, 215, 235), (215, 235, 205), (240, 225, 195), (225, 205, 230), (180, 180, 185),
    (120, 150, 185), (160, 190, 150), (200, 170, 150), (70, 75, 90), (245, 245, 220), (190, 220, 220),
)
# fmt: on
TEXTURES = ("flat", "gradient", "stripes", "dots", "checker", "noise")

# Traits that two people must differ in (see ``trait_distance``); probabilities keep rare traits rare.
_TRAIT_CHOICES: dict[str, tuple] = {
    "skin": tuple(range(len(SKIN_TONES))),
    "face_shape": FACE_SHAPES,
    "hair_colour": tuple(HAIR_COLOURS),
    "hair_style": HAIR_STYLES,
    "eye_colour": tuple(EYE_COLOURS),
    "eye_shape": EYE_SHAPES,
    "brows": BROWS,
    "glasses": GLASSES,
    "facial_hair": FACIAL_HAIR,
    "clothes_colour": tuple(CLOTHES_COLOURS),
    "clothes_style": CLOTHES_STYLES,
    "headwear": HEADWEAR,
    "earrings": EARRINGS,
    "marks": MARKS,
    "nose": NOSES,
}
_TRAIT_WEIGHTS: dict[str, tuple[float, ...]] = {
    "glasses": (0.55, 0.15, 0.15, 0.15),
    "facial_hair": (0.55, 0.12, 0.11, 0.11, 0.11),
    "headwear": (0.7, 0.1, 0.1, 0.1),
    "earrings": (0.6, 0.2, 0.2),
    "brows": (0.3, 0.3, 0.3, 0.1),
}


@dataclass(frozen=True)
class FaceAttributes:
    """The traits that make a person recognisable; they never change between pictures of the same person."""

    skin: int
    face_shape: str
    hair_colour: str
    hair_style: str
    eye_colour: str
    eye_shape: str
    brows: str
    glasses: str
    facial_hair: str
    clothes_colour: str
    clothes_style: str
    headwear: str
    earrings: str
    marks: str
    nose: str

    def to_dict(self) -> dict[str, int | str]:
        return asdict(self)

    def describe(self) -> list[str]:
        """Short phrases naming visible traits ("red hair", "glasses", ...) to caption unnamed people."""
        phrases = []
        if self.hair_style == "bald":
            phrases.append("a bald head")
        else:
            phrases.append(f"{self.hair_colour} hair")
        if self.glasses == "sunglasses":
            phrases.append("sunglasses")
        elif self.glasses != "none":
            phrases.append("glasses")
        if self.facial_hair in ("moustache", "goatee", "full beard"):
            phrases.append("a beard" if self.facial_hair == "full beard" else f"a {self.facial_hair}")
        if self.headwear != "none":
            phrases.append(f"a {self.headwear}")
        clothes = {
            "t-shirt": "shirt",
            "striped": "striped shirt",
            "collared": "shirt",
            "v-neck": "sweater",
            "hoodie": "hoodie",
            "suit": "jacket",
        }[self.clothes_style]
        phrases.append(f"a {self.clothes_colour} {clothes}")
        return phrases


def sample_attributes(rng: np.random.Generator) -> FaceAttributes:
    """Draw one person's traits."""
    values = {}
    for trait, choices in _TRAIT_CHOICES.items():
        weights = _TRAIT_WEIGHTS.get(trait)
        index = rng.choice(len(choices), p=weights) if weights else rng.integers(len(choices))
        values[trait] = choices[int(index)]
    return FaceAttributes(**values)


def trait_codes(person: FaceAttributes) -> tuple[int, ...]:
    """Each trait as the index of its value: comparing many people at once is then integer work."""
    return tuple(_TRAIT_CHOICES[trait].index(getattr(person, trait)) for trait in _TRAIT_CHOICES)


def trait_distance(first: FaceAttributes, second: FaceAttributes) -> int:
    """How many traits differ; the demo world keeps every pair of people a few traits apart (no twins)."""
    return sum(getattr(first, trait) != getattr(second, trait) for trait in _TRAIT_CHOICES)


@dataclass(frozen=True)
class Nuisance:
    """What changes from one picture of a person to the next."""

    dx: float
    dy: float
    scale: float
    tilt: float  # degrees
    brightness: float
    tint: tuple[float, float, float]
    background: RGB
    background_2: RGB
    texture: str
    expression: str
    blink: bool
    gaze: float
    noise: float


def sample_nuisance(rng: np.random.Generator) -> Nuisance:
    """Draw the per-picture conditions; identity traits are untouched."""
    first, second = rng.choice(len(BACKGROUND_COLOURS), size=2, replace=False)
    return Nuisance(
        dx=float(rng.uniform(-0.08, 0.08)),
        dy=float(rng.uniform(-0.06, 0.06)),
        scale=float(rng.uniform(0.85, 1.1)),
        tilt=float(rng.uniform(-12, 12)),
        brightness=float(rng.uniform(0.75, 1.2)),
        tint=tuple(float(t) for t in rng.uniform(0.92, 1.08, size=3)),
        background=BACKGROUND_COLOURS[int(first)],
        background_2=BACKGROUND_COLOURS[int(second)],
        texture=TEXTURES[int(rng.integers(len(TEXTURES)))],
        expression=EXPRESSIONS[int(rng.integers(len(EXPRESSIONS)))],
        blink=bool(rng.random() < 0.1),
        gaze=float(rng.uniform(-1, 1)),
        noise=float(rng.uniform(0, 8)),
    )


def _shade(colour: RGB, factor: float) -> RGB:
    return tuple(int(max(0, min(255, c * factor))) for c in colour)  # type: ignore[return-value]


def draw_background(size: int, nuisance: Nuisance, rng: np.random.Generator) -> Image.Image:
    """A textured backdrop; shared by faces and the general-domain pictures so it never identifies anyone."""
    image = Image.new("RGB", (size, size), nuisance.background)
    draw = ImageDraw.Draw(image)
    other = nuisance.background_2
    if nuisance.texture == "gradient":
        for y in range(size):
            t = y / max(1, size - 1)
            draw.line(
                [(0, y), (size, y)],
                fill=tuple(int(a * (1 - t) + b * t) for a, b in zip(nuisance.background, other)),
            )
    elif nuisance.texture == "stripes":
        step = int(rng.integers(4, 10)) * size // 64 or 2
        for x in range(-size, 2 * size, 2 * step):
            draw.polygon(
                [(x, 0), (x + step, 0), (x + step + size // 2, size), (x + size // 2, size)], fill=other
            )
    elif nuisance.texture == "dots":
        step = max(3, size // 8)
        radius = max(1, step // 4)
        for x in range(step // 2, size, step):
            for y in range(step // 2, size, step):
                draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=other)
    elif nuisance.texture == "checker":
        step = max(2, size // int(rng.integers(4, 9)))
        for x in range(0, size, step):
            for y in range(0, size, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=other)
    elif nuisance.texture == "noise":
        pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 18, size=(size, size, 1))
        image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image


def finish(image: Image.Image, nuisance: Nuisance, rng: np.random.Generator) -> Image.Image:
    """Lighting, colour cast and sensor noise, applied to the whole picture."""
    pixels = np.asarray(image, dtype=np.float32) * nuisance.brightness * np.asarray(nuisance.tint, np.float32)
    if nuisance.noise > 0:
        pixels = pixels + rng.normal(0, nuisance.noise, size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class _Pen:
    """Draws in face coordinates: (0, 0) is the centre of the head, one unit is half the head's width."""

    def __init__(self, draw: ImageDraw.ImageDraw, cx: float, cy: float, unit: float):
        self.draw, self.cx, self.cy, self.unit = draw, cx, cy, unit

    def xy(self, x: float, y: float) -> tuple[float, float]:
        return self.cx + x * self.unit, self.cy + y * self.unit

    def box(self, x0: float, y0: float, x1: float, y1: float) -> list[float]:
        return [*self.xy(x0, y0), *self.xy(x1, y1)]

    def ellipse(self, x: float, y: float, rx: float, ry: float, **kwargs) -> None:
        self.draw.ellipse(self.box(x - rx, y - ry, x + rx, y + ry), **kwargs)

    def polygon(self, points, **kwargs) -> None:
        self.draw.polygon([self.xy(x, y) for x, y in points], **kwargs)

    def line(self, points, width: float, **kwargs) -> None:
        self.draw.line([self.xy(x, y) for x, y in points], width=max(1, round(width * self.unit)), **kwargs)

    def arc(self, x: float, y: float, rx: float, ry: float, start: float, end: float, width: float, **kwargs):
        self.draw.arc(
            self.box(x - rx, y - ry, x + rx, y + ry),
            start,
            end,
            width=max(1, round(width * self.unit)),
            **kwargs,
        )

    def rectangle(self, x0: float, y0: float, x1: float, y1: float, **kwargs) -> None:
        self.draw.rectangle(self.box(x0, y0, x1, y1), **kwargs)


_HEAD_SIZE = {  # half-width and half-height of the head, in units
    "round": (1.0, 1.05),
    "oval": (0.92, 1.2),
    "long": (0.82, 1.3),
    "wide": (1.12, 1.0),
    "square": (1.0, 1.1),
    "pointed": (0.98, 1.18),
}


def _draw_body(pen: _Pen, person: FaceAttributes, skin: RGB) -> None:
    clothes = CLOTHES_COLOURS[person.clothes_colour]
    dark = _shade(clothes, 0.6)
    pen.rectangle(-0.32, 0.8, 0.32, 1.7, fill=_shade(skin, 0.9))  # neck
    pen.polygon(
        [(-1.9, 3.2), (-1.55, 1.75), (-0.6, 1.45), (0.6, 1.45), (1.55, 1.75), (1.9, 3.2)], fill=clothes
    )
    style = person.clothes_style
    if style == "striped":
        stripe = _shade(clothes, 0.45) if sum(clothes) > 300 else (235, 235, 235)
        for y in (1.95, 2.35, 2.75, 3.15):
            edge = 1.55 + (y - 1.75) / 1.45 * 0.35  # the shirt's outline at this height
            pen.line([(-edge, y), (edge, y)], width=0.14, fill=stripe)
    elif style == "collared":
        pen.polygon([(-0.55, 1.45), (0.0, 1.95), (-0.2, 2.15), (-0.75, 1.6)], fill=(245, 245, 245))
        pen.polygon([(0.55, 1.45), (0.0, 1.95), (0.2, 2.15), (0.75, 1.6)], fill=(245, 245, 245))
    elif style == "v-neck":
        pen.polygon([(-0.45, 1.45), (0.45, 1.45), (0.0, 2.2)], fill=_shade(skin, 0.9))
    elif style == "hoodie":
        pen.ellipse(0.0, 1.55, 0.95, 0.3, outline=dark, width=max(1, round(0.15 * pen.unit)))
        pen.line([(-0.25, 1.7), (-0.25, 2.4)], width=0.08, fill=(240, 240, 240))
        pen.line([(0.25, 1.7), (0.25, 2.4)], width=0.08, fill=(240, 240, 240))
    elif style == "suit":
        pen.polygon([(-0.45, 1.45), (0.45, 1.45), (0.0, 2.6)], fill=(245, 245, 245))
        pen.polygon([(-0.1, 1.55), (0.1, 1.55), (0.14, 2.3), (0.0, 2.5), (-0.14, 2.3)], fill=dark)
        pen.polygon([(-0.45, 1.45), (0.0, 2.6), (-0.35, 2.7), (-0.8, 1.6)], fill=dark)
        pen.polygon([(0.45, 1.45), (0.0, 2.6), (0.35, 2.7), (0.8, 1.6)], fill=dark)


def _draw_head(pen: _Pen, person: FaceAttributes, skin: RGB, w: float, h: float) -> None:
    pen.ellipse(-w, 0.1, 0.22, 0.3, fill=_shade(skin, 0.92))  # ears
    pen.ellipse(w, 0.1, 0.22, 0.3, fill=_shade(skin, 0.92))
    if person.earrings == "studs":
        pen.ellipse(-w - 0.02, 0.38, 0.08, 0.08, fill=(250, 215, 60))
        pen.ellipse(w + 0.02, 0.38, 0.08, 0.08, fill=(250, 215, 60))
    elif person.earrings == "hoops":
        pen.ellipse(-w - 0.02, 0.5, 0.15, 0.17, outline=(250, 215, 60), width=max(1, round(0.06 * pen.unit)))
        pen.ellipse(w + 0.02, 0.5, 0.15, 0.17, outline=(250, 215, 60), width=max(1, round(0.06 * pen.unit)))
    shape = person.face_shape
    if shape == "square":
        pen.draw.rounded_rectangle(pen.box(-w, -h, w, h), radius=0.45 * pen.unit, fill=skin)
    elif shape == "pointed":
        pen.ellipse(0, -0.15, w, h * 0.85, fill=skin)
        pen.polygon([(-w * 0.97, 0.0), (w * 0.97, 0.0), (0.25, h), (-0.25, h)], fill=skin)
    else:
        pen.ellipse(0, 0, w, h, fill=skin)


def _draw_hair_back(pen: _Pen, person: FaceAttributes, w: float, h: float) -> None:
    hair = HAIR_COLOURS[person.hair_colour]
    if person.hair_style == "long":
        pen.polygon([(-w - 0.25, -0.3), (w + 0.25, -0.3), (w + 0.45, 1.9), (-w - 0.45, 1.9)], fill=hair)
        pen.ellipse(0, -0.3, w + 0.25, h * 0.85, fill=hair)
    elif person.hair_style == "bob":
        pen.polygon([(-w - 0.22, -0.3), (w + 0.22, -0.3), (w + 0.3, 0.85), (-w - 0.3, 0.85)], fill=hair)
        pen.ellipse(0, -0.3, w + 0.22, h * 0.85, fill=hair)
    elif person.hair_style == "bun":
        pen.ellipse(0, -h - 0.35, 0.5, 0.45, fill=hair)


def _draw_hair_front(pen: _Pen, person: FaceAttributes, w: float, h: float) -> None:
    hair = HAIR_COLOURS[person.hair_colour]
    style = person.hair_style
    top = -h
    if style == "bald":
        return
    if style == "buzz":
        pen.draw.chord(pen.box(-w, top, w, top + 1.3 * h), 180, 360, fill=_shade(hair, 1.0))
        return
    if style == "mohawk":
        pen.polygon([(-0.25, top + 0.5), (-0.2, top - 0.6), (0.2, top - 0.6), (0.25, top + 0.5)], fill=hair)
        return
    if style == "spiky":
        pen.draw.chord(pen.box(-w - 0.05, top - 0.05, w + 0.05, top + 1.2 * h), 180, 360, fill=hair)
        for x in np.linspace(-w * 0.8, w * 0.8, 5):
            pen.polygon([(x - 0.22, top + 0.25), (x, top - 0.55), (x + 0.22, top + 0.25)], fill=hair)
        return
    if style == "curly":
        for angle in np.linspace(math.pi * 1.05, math.pi * 1.95, 7):
            x, y = (w + 0.05) * math.cos(angle), 0.15 + (h + 0.1) * math.sin(angle)
            pen.ellipse(x, y, 0.38, 0.38, fill=hair)
        return
    # Cap of hair on top of the head, then a style-specific fringe.
    pen.draw.chord(pen.box(-w - 0.08, top - 0.12, w + 0.08, top + 1.25 * h), 180, 360, fill=hair)
    if style == "fringe" or style == "bob":
        pen.polygon(
            [(-w + 0.05, top + 0.35), (w - 0.05, top + 0.35), (w - 0.1, top + 0.75), (-w + 0.1, top + 0.75)],
            fill=hair,
        )
    elif style == "side part":
        pen.polygon([(-w, top + 0.4), (0.5, top + 0.3), (-0.3, top + 0.8), (-w, top + 1.0)], fill=hair)
    elif style == "long":
        pen.polygon(
            [(-w + 0.05, top + 0.35), (0.0, top + 0.35), (-0.6, top + 0.9), (-w, top + 1.2)], fill=hair
        )
        pen.polygon([(w - 0.05, top + 0.35), (0.0, top + 0.35), (0.6, top + 0.9), (w, top + 1.2)], fill=hair)


def _draw_headwear(pen: _Pen, person: FaceAttributes, w: float, h: float) -> None:
    colour = _shade(CLOTHES_COLOURS[person.clothes_colour], 0.8)
    top = -h
    if person.headwear == "cap":
        pen.draw.chord(pen.box(-w - 0.05, top - 0.2, w + 0.05, top + 1.1 * h), 180, 360, fill=colour)
        pen.polygon(
            [(-w * 0.2, top + 0.35), (w + 0.6, top + 0.35), (w + 0.5, top + 0.55), (-w * 0.2, top + 0.55)],
            fill=_shade(colour, 0.7),
        )
    elif person.headwear == "beanie":
        pen.draw.chord(pen.box(-w - 0.08, top - 0.35, w + 0.08, top + 1.2 * h), 180, 360, fill=colour)
        pen.rectangle(-w - 0.1, top + 0.2, w + 0.1, top + 0.5, fill=_shade(colour, 0.75))
        pen.ellipse(0, top - 0.38, 0.2, 0.2, fill=(245, 245, 245))
    elif person.headwear == "headband":
        pen.rectangle(-w + 0.02, top + 0.45, w - 0.02, top + 0.62, fill=(230, 40, 60))


def _draw_features(
    pen: _Pen, person: FaceAttributes, skin: RGB, w: float, h: float, nuisance: Nuisance
) -> None:
    hair = HAIR_COLOURS[person.hair_colour]
    eye_y = -0.05
    eye_x = 0.42
    rx, ry = {"round": (0.2, 0.2), "narrow": (0.24, 0.11), "large": (0.26, 0.26), "small": (0.14, 0.14)}[
        person.eye_shape
    ]
    iris = EYE_COLOURS[person.eye_colour]
    for side in (-1, 1):
        x = side * eye_x
        if nuisance.blink:
            pen.line([(x - rx, eye_y), (x + rx, eye_y)], width=0.07, fill=(40, 30, 30))
        else:
            pen.ellipse(x, eye_y, rx, ry, fill=(250, 250, 250))
            ir = min(rx, ry) * 0.75
            pen.ellipse(x + nuisance.gaze * (rx - ir) * 0.8, eye_y, ir, ir, fill=iris)
            pen.ellipse(x + nuisance.gaze * (rx - ir) * 0.8, eye_y, ir * 0.45, ir * 0.45, fill=(15, 15, 15))
        brow_y = eye_y - ry - 0.14
        if person.brows == "thin":
            pen.line([(x - 0.22, brow_y), (x + 0.22, brow_y)], width=0.06, fill=_shade(hair, 0.8))
        elif person.brows == "thick":
            pen.line([(x - 0.24, brow_y), (x + 0.24, brow_y)], width=0.14, fill=_shade(hair, 0.8))
        elif person.brows == "arched":
            pen.arc(x, brow_y + 0.1, 0.24, 0.14, 200, 340, width=0.08, fill=_shade(hair, 0.8))
    # glasses sit over the eyes
    frame = (30, 30, 30)
    if person.glasses == "round":
        for side in (-1, 1):
            pen.ellipse(side * eye_x, eye_y, 0.3, 0.3, outline=frame, width=max(1, round(0.07 * pen.unit)))
        pen.line([(-eye_x + 0.3, eye_y), (eye_x - 0.3, eye_y)], width=0.06, fill=frame)
    elif person.glasses == "square":
        for side in (-1, 1):
            pen.draw.rectangle(
                pen.box(side * eye_x - 0.32, eye_y - 0.24, side * eye_x + 0.32, eye_y + 0.24),
                outline=frame,
                width=max(1, round(0.07 * pen.unit)),
            )
        pen.line([(-eye_x + 0.32, eye_y), (eye_x - 0.32, eye_y)], width=0.06, fill=frame)
    elif person.glasses == "sunglasses":
        for side in (-1, 1):
            pen.ellipse(side * eye_x, eye_y + 0.02, 0.33, 0.25, fill=(20, 20, 25))
        pen.line([(-eye_x + 0.3, eye_y), (eye_x - 0.3, eye_y)], width=0.07, fill=(20, 20, 25))
    # nose
    nose = _shade(skin, 0.78)
    if person.nose == "small":
        pen.polygon([(0, 0.2), (-0.1, 0.42), (0.1, 0.42)], fill=nose)
    elif person.nose == "long":
        pen.polygon([(0, 0.05), (-0.09, 0.5), (0.09, 0.5)], fill=nose)
    elif person.nose == "wide":
        pen.ellipse(0, 0.4, 0.2, 0.1, fill=nose)
    else:
        pen.ellipse(0, 0.38, 0.09, 0.09, fill=nose)
    # marks
    if person.marks == "freckles":
        for fx, fy in ((-0.55, 0.3), (-0.45, 0.4), (-0.62, 0.42), (0.55, 0.3), (0.45, 0.4), (0.62, 0.42)):
            pen.ellipse(fx, fy, 0.04, 0.04, fill=_shade(skin, 0.6))
    elif person.marks == "mole":
        pen.ellipse(0.45, 0.55, 0.06, 0.06, fill=(60, 35, 25))
    elif person.marks == "blush":
        pen.ellipse(-0.55, 0.38, 0.18, 0.1, fill=(235, 120, 120))
        pen.ellipse(0.55, 0.38, 0.18, 0.1, fill=(235, 120, 120))
    # facial hair below the mouth is drawn before the mouth
    beard = _shade(hair, 0.9)
    if person.facial_hair == "full beard":
        pen.polygon(
            [
                (-w * 0.95, 0.25),
                (-w * 0.6, h * 0.9),
                (0, h + 0.2),
                (w * 0.6, h * 0.9),
                (w * 0.95, 0.25),
                (0.45, 0.55),
                (-0.45, 0.55),
            ],
            fill=beard,
        )
    elif person.facial_hair == "goatee":
        pen.polygon([(-0.25, 0.8), (0.25, 0.8), (0.15, h + 0.1), (-0.15, h + 0.1)], fill=beard)
    elif person.facial_hair == "stubble":
        for sx in np.linspace(-0.5, 0.5, 6):
            for sy in (0.75, 0.9):
                pen.ellipse(sx, sy, 0.035, 0.035, fill=_shade(beard, 0.9))
    # mouth
    lip = (150, 50, 50)
    mouth_y = 0.68
    expression = nuisance.expression
    if expression == "smile":
        pen.arc(0, mouth_y - 0.12, 0.3, 0.18, 20, 160, width=0.07, fill=lip)
    elif expression == "grin":
        pen.draw.chord(
            pen.box(-0.32, mouth_y - 0.2, 0.32, mouth_y + 0.16), 0, 180, fill=(245, 245, 245), outline=lip
        )
    elif expression == "open mouth":
        pen.ellipse(0, mouth_y, 0.13, 0.11, fill=(90, 20, 25))
    elif expression == "frown":
        pen.arc(0, mouth_y + 0.12, 0.26, 0.14, 200, 340, width=0.07, fill=lip)
    else:
        pen.line([(-0.22, mouth_y), (0.22, mouth_y)], width=0.07, fill=lip)
    if person.facial_hair in ("moustache", "full beard"):
        pen.polygon(
            [
                (-0.35, mouth_y - 0.08),
                (0, mouth_y - 0.2),
                (0.35, mouth_y - 0.08),
                (0.3, mouth_y - 0.0),
                (0, mouth_y - 0.1),
                (-0.3, mouth_y - 0.0),
            ],
            fill=beard,
        )


def draw_face(
    person: FaceAttributes, rng: np.random.Generator, size: int = 64, supersample: int = 2
) -> Image.Image:
    """One new picture of ``person``: the traits stay, the nuisance is drawn from ``rng``.

    The figure is drawn ``supersample`` times larger and shrunk, which anti-aliases the small features (eyes,
    glasses) that carry identity at 64 px.
    """
    nuisance = sample_nuisance(rng)
    canvas = size * supersample
    figure = Image.new("RGBA", (canvas, canvas), (0, 0, 0, 0))
    unit = canvas * 0.16 * nuisance.scale
    cx = canvas * (0.5 + nuisance.dx)
    cy = canvas * (0.42 + nuisance.dy)
    pen = _Pen(ImageDraw.Draw(figure), cx, cy, unit)
    skin = SKIN_TONES[person.skin]
    w, h = _HEAD_SIZE[person.face_shape]
    _draw_hair_back(pen, person, w, h)
    _draw_body(pen, person, skin)
    _draw_head(pen, person, skin, w, h)
    _draw_features(pen, person, skin, w, h, nuisance)
    _draw_hair_front(pen, person, w, h)
    _draw_headwear(pen, person, w, h)
    figure = figure.rotate(nuisance.tilt, resample=Image.BILINEAR, center=(cx, cy))
    background = draw_background(canvas, nuisance, rng).convert("RGBA")
    image = Image.alpha_composite(background, figure).convert("RGB")
    if supersample > 1:
        image = image.reduce(supersample)
    return finish(image, nuisance, rng)
