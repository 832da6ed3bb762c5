"""The general-domain caption set that ships with the package.

The paper draws clean captions from LAION-Aesthetics, which cannot be downloaded here and should not be a hidden
download for users either.  Instead the package composes captions from hand-written parts, deterministically:
people and animals doing things in places, objects and scenes, in the short, lower-case style of web alt-text.
Users with real captions (their own ``datasets.Dataset``) should pass those; this set is a sane default.
"""

from __future__ import annotations

import random
from functools import lru_cache

_SUBJECTS = (
    "a man", "a woman", "a young boy", "a little girl", "an old man", "an elderly woman", "two friends",
    "a group of people", "a family", "a couple", "a teenager", "a chef", "a doctor", "a musician", "a farmer",
    "a student", "a dog", "a cat", "a brown horse", "two puppies", "a small bird", "a tourist", "a cyclist",
    "a police officer", "a firefighter", "a painter", "a runner", "a baby", "a soccer player", "a dancer",
)
_ACTIONS = (
    "walking", "sitting", "standing", "running", "reading a book", "eating lunch", "playing guitar",
    "riding a bike", "looking at the camera", "smiling", "waiting", "talking on the phone", "drinking coffee",
    "playing", "resting", "laughing", "dancing", "cooking dinner", "holding an umbrella", "taking a picture",
)
_PLACES = (
    "on the beach", "in a park", "in the kitchen", "on a city street", "in front of a building", "at the market",
    "in the snow", "near a lake", "in a forest", "at a concert", "in an office", "on a bridge", "in the rain",
    "at sunset", "in a garden", "on a mountain trail", "at the train station", "in a classroom", "on a boat",
    "in a living room", "at a wedding", "in a library", "on the sidewalk", "at the airport",
)
_OBJECTS = (
    "a red car", "a wooden table", "a bowl of fruit", "a cup of coffee", "an old bicycle", "a vintage camera",
    "a stack of books", "a green apple", "a blue vase", "a pair of shoes", "a leather bag", "a birthday cake",
    "a glass of water", "a wooden chair", "a yellow umbrella", "a laptop", "a pizza", "a clock", "a lamp",
    "a plate of pasta", "a basket of bread", "a guitar", "a teddy bear", "a bunch of flowers",
)
_OBJECT_CONTEXTS = (
    "on a white background", "on a kitchen counter", "in a shop window", "next to a window", "on the floor",
    "in the sunlight", "on a desk", "at night", "in close up", "on a shelf",
)
_SCENES = (
    "a mountain landscape with snow", "a quiet street at night", "a sandy beach with palm trees",
    "a field of sunflowers", "a city skyline at dusk", "a river running through a forest", "a cozy living room",
    "a modern kitchen", "an empty football stadium", "a busy market square", "a lighthouse by the sea",
    "a country road in autumn", "a waterfall in the jungle", "a foggy morning in the hills",
)
_STYLES = ("a photo of", "an image of", "a picture of", "a close up of", "a painting of", "a drawing of", "")


def _compose(rng: random.Random) -> str:
    kind = rng.random()
    style = rng.choice(_STYLES)
    if kind < 0.55:
        text = f"{rng.choice(_SUBJECTS)} {rng.choice(_ACTIONS)} {rng.choice(_PLACES)}"
    elif kind < 0.85:
        text = f"{rng.choice(_OBJECTS)} {rng.choice(_OBJECT_CONTEXTS)}"
    else:
        text = rng.choice(_SCENES)
    return f"{style} {text}".strip()


@lru_cache(maxsize=4)
def default_captions(num_captions: int = 2000, seed: int = 0) -> tuple[str, ...]:
    """``num_captions`` distinct general captions, the same for the same arguments on every machine."""
    rng = random.Random(seed)
    captions: dict[str, None] = {}
    limit = num_captions * 50
    while len(captions) < num_captions and limit:
        captions.setdefault(_compose(rng), None)
        limit -= 1
    return tuple(captions)
