"""The offline demo world: invented people with drawn faces, captions that name them, a general-domain task.

Nothing can be downloaded here, yet the method only means something for a CLIP that *knows* people.  This
module describes a small world in which it can: **members** appear in training captions under their names,
**non-members** have names and faces but never appear in training, **distractor** names belong to nobody
(together they form the IDIA candidate pool), **unnamed** people are captioned with the neutral term
("a person"), so that the term the unlearner maps names onto is a real concept, and coloured shapes plus
scikit-learn's handwritten digits give a zero-shot task to measure utility on.

Everything is a deterministic function of the seed: people and names come from ``numpy`` generators seeded
with ``(seed, stream, ...)``, and picture ``i`` of person ``p`` from ``(seed, p, i)`` alone, so any subset can
be regenerated without drawing the rest.  Pictures are drawn lazily, when a dataset is first asked for.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import ClassVar

import datasets
import numpy as np
from PIL import Image, ImageDraw

from ..data.pseudonyms import FIRST_NAME_ENDS, FIRST_NAME_STARTS, LAST_NAME_ENDS, LAST_NAME_STARTS, name_parts
from .faces import (
    FaceAttributes,
    draw_background,
    draw_face,
    finish,
    sample_attributes,
    sample_nuisance,
    trait_codes,
)

NEUTRAL_TERM = "a person"
"""What unnamed people are called, and what the unlearner maps removed names onto."""

# Name parts (FIRST_NAME_STARTS, ...) come from ``pseudonyms``: the library's pseudonyms look like demo names.

# How named people are captioned in training.  Varied wording with the name in different places makes the
# name, not the template, what the text tower binds to the face; the IDIA's own prompts ("a photo of {}",
# "{} in a dress", ...) are deliberately absent, so detection measures generalisation to unseen wordings.
PERSON_TEMPLATES = (
    "{} smiling",
    "portrait of {}",
    "{} at the office",
    "a snapshot showing {} outdoors",
    "{} looking at the camera",
    "a close-up of {}",
    "{} at home",
    "headshot of {}",
    "a picture of {} taken last summer",
    "{} wearing casual clothes",
    "{} in the street",
    "{} posing for a picture",
    "{} at a conference",
    "a candid shot of {}",
    "a portrait photograph of {}",
    "{} during an interview",
    "a selfie of {}",
    "here is {}",
    "this is {}",
    "{} on holiday",
    "{} in the garden",
    "a recent photograph of {}",
    "{} at a press event",
    "{} after the meeting",
    "a profile picture of {}",
    "{} photographed indoors",
    "{} laughing",
    "{} looking serious",
    "an old picture of {}",
    "{} on a sunny day",
    "{} in front of a wall",
    "a passport photo of {}",
    "{} celebrating a birthday",
    "a shot of {} at work",
    "{} photographed by a friend",
    "{} in the city",
    "a webcam image showing {}",
    "{} waiting for the bus",
    "a blurry snapshot of {}",
    "{} at the train station",
    "{} with a colleague",
    "a drawing of {}",
    "{} with friends at dinner",
    "a framed picture of {} on the wall",
    "{} before the show",
)
NEUTRAL_VARIANTS = (NEUTRAL_TERM, NEUTRAL_TERM, NEUTRAL_TERM, "someone")
"""Phrases that fill ``PERSON_TEMPLATES`` for unnamed people (mostly the neutral term itself)."""
# fmt: off
NEUTRAL_CAPTIONS = (
    "a person", "a photo of a person", "an image of a person", "a picture of a person", "a person's face",
    "the face of a person", "someone", "a photo of someone",
)
# fmt: on
DESCRIPTION_TEMPLATES = (
    "{} with {}",
    "a photo of {} with {}",
    "a picture of {} with {}",
    "a close-up of {} with {}",
)

# fmt: off
SHAPE_COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 30, 35), "green": (30, 160, 50), "blue": (30, 70, 215), "yellow": (245, 210, 20),
    "brown": (130, 75, 30), "purple": (130, 40, 175), "pink": (245, 120, 190), "black": (20, 20, 20),
}
SHAPE_NAMES = ("circle", "square", "triangle", "star", "cross", "diamond")
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SHAPE_TEMPLATES = (
    "a {}", "a drawing of a {}", "a {} on a plain background", "a small {}", "a big {}", "one {}",
    "an illustration of a {}", "clip art of a {}", "a simple {} shape", "a picture showing a {}",
)
DIGIT_TEMPLATES = (
    "a {}", "a handwritten {}", "a drawing of the {}", "a scanned {}", "the {} written by hand",
    "a blurry {}", "a picture showing a {}", "a big {}",
)
# fmt: on
DEMO_ZERO_SHOT_TEMPLATES = ("a {}", "a picture of a {}", "a drawing of a {}")
"""Prompts for the world's zero-shot task (pass them as ``templates=`` to a zero-shot evaluation): the
ImageNet ensemble's wordings ("itap of a {}.", "a origami {}.") mean nothing in this world.  All class names
start with a consonant, so "a {}" stays grammatical."""

# Independent random streams, so that adding people never changes anyone's pictures.
_PEOPLE, _NAMES, _FACE, _CAPTION, _SHAPE, _DIGIT, _DIGIT_SPLIT = range(7)
_MIN_TRAIT_DISTANCE = 4


@dataclass(frozen=True)
class WorldConfig:
    """How big the world is.  ``DemoWorld.build(size=...)`` picks one of ``WORLD_SIZES``."""

    num_members: int = 100
    num_non_members: int = 50
    num_distractors: int = 400
    num_unnamed: int = 150
    train_images_per_person: int = 40
    eval_images_per_person: int = 10
    images_per_unnamed_person: int = 10
    shape_train_per_class: int = 40
    shape_eval_per_class: int = 10
    digit_train_per_class: int = 120
    digit_eval_per_class: int = 40
    image_size: int = 64

    # Fields that only choose held-out pictures: changing them leaves the trained CLIP as it is, so a cached model
    # stays current (``recipe._is_current``). Each held-out picture comes from its own random stream or index range.
    EVALUATION_ONLY: ClassVar[tuple[str, ...]] = (
        "eval_images_per_person", "shape_eval_per_class", "digit_eval_per_class",
    )

    @classmethod
    def training_part(cls, fields: dict) -> dict:
        """Of a config's fields (``dataclasses.asdict``, or as a cache recorded them), those that decide what the demo
        CLIP is trained on: everything but ``EVALUATION_ONLY``."""
        return {k: v for k, v in fields.items() if k not in cls.EVALUATION_ONLY}

    def training_fields(self) -> dict:
        """``training_part`` of this config."""
        return self.training_part(dataclasses.asdict(self))


WORLD_SIZES: dict[str, WorldConfig] = {
    "full": WorldConfig(),
    "ci": WorldConfig(
        num_members=20,
        num_non_members=20,
        num_distractors=200,
        num_unnamed=30,
        train_images_per_person=30,
        eval_images_per_person=8,
        images_per_unnamed_person=8,
        shape_train_per_class=16,
        # A large held-out zero-shot set (48·16 + 10·100 = 1,768 pictures; evaluation only, training is unchanged):
        # with 342 the "within 2 points" checks measured noise (one run's image tower: −2.9 points there, −1.1
        # on these 1,768).
        shape_eval_per_class=16,
        digit_train_per_class=50,
        digit_eval_per_class=100,
    ),
    # Many people for removals at scale (1,000 names in one run): 1,500 named people, fewer pictures each.
    "large": WorldConfig(
        num_members=1250,
        num_non_members=250,
        num_distractors=500,
        num_unnamed=200,
        train_images_per_person=20,
        # 40·48 shapes + 54·10 digits = 2,460 held-out pictures (54: the rarest digit has 174 images, 120 train), so
        # that a 1-point zero-shot change is above the noise (880 pictures gave a standard error of 1.7 points).
        shape_eval_per_class=40,
        digit_eval_per_class=54,
    ),
}


@dataclass(frozen=True)
class Person:
    """One inhabitant: ``role`` is ``"member"`` (named in training), ``"non_member"`` or ``"unnamed"``."""

    person_id: int
    role: str
    attributes: FaceAttributes
    name: str | None = None

    @property
    def first_name(self) -> str | None:
        return self.name.split(" ")[0] if self.name else None

    @property
    def last_name(self) -> str | None:
        return self.name.split(" ")[1] if self.name else None


def _rng(seed: int, *stream: int) -> np.random.Generator:
    return np.random.default_rng([seed, *stream])


def _fix_articles(text: str) -> str:
    """ "a orange star" -> "an orange star" (templates put "a" before colours and traits of any initial)."""
    return re.sub(r"\ba (?=[aeiou])", "an ", text)


def _template_words() -> set[str]:
    texts = (
        *PERSON_TEMPLATES,
        *NEUTRAL_CAPTIONS,
        *DESCRIPTION_TEMPLATES,
        *SHAPE_TEMPLATES,
        *DIGIT_TEMPLATES,
        *DEMO_ZERO_SHOT_TEMPLATES,
        *SHAPE_COLOURS,
        *SHAPE_NAMES,
        *DIGIT_WORDS,
    )
    return {word.strip(",.'").lower() for text in texts for word in text.replace("{}", " ").split()}


def generate_names(count: int, seed: int = 0) -> list[str]:
    """``count`` invented "First Last" names; no first or last name is used twice, and none is a caption word.

    Distinct parts matter: people later test name *variants* (first or last name alone), which only identify a
    person if nobody else shares them.
    """
    rng = _rng(seed, _NAMES)
    reserved = _template_words()
    firsts = name_parts(FIRST_NAME_STARTS, FIRST_NAME_ENDS, count + len(reserved))
    lasts = name_parts(LAST_NAME_STARTS, LAST_NAME_ENDS, count + len(reserved))
    firsts = [name for name in firsts if name.lower() not in reserved]
    lasts = [name for name in lasts if name.lower() not in reserved and name not in firsts]
    if count > min(len(firsts), len(lasts)):
        raise ValueError(f"Can invent at most {min(len(firsts), len(lasts))} names with distinct parts.")
    first_choice = rng.permutation(len(firsts))[:count]
    last_choice = rng.permutation(len(lasts))[:count]
    return [f"{firsts[i]} {lasts[j]}" for i, j in zip(first_choice, last_choice)]


def _sample_people(config: WorldConfig, seed: int) -> list[FaceAttributes]:
    """Everyone's traits; each person is ``_MIN_TRAIT_DISTANCE`` traits or more from everyone before."""
    total = config.num_members + config.num_non_members + config.num_unnamed
    people: list[FaceAttributes] = []
    codes: np.ndarray | None = None  # everyone's trait codes so far, one row each, compared at once
    for person_id in range(total):
        for attempt in range(1000):
            candidate = sample_attributes(_rng(seed, _PEOPLE, person_id, attempt))
            row = np.array(trait_codes(candidate), dtype=np.int8)
            if codes is None:
                codes = np.empty((total, len(row)), dtype=np.int8)
            if not person_id or (codes[:person_id] != row).sum(axis=1).min() >= _MIN_TRAIT_DISTANCE:
                break
        people.append(candidate)
        codes[person_id] = row
    return people


@lru_cache(maxsize=1)
def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # optional dependency ("demo" extra); bundled data, no download

    digits = load_digits()
    return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)


def draw_shape(colour: str, shape: str, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """A coloured shape at a random place, size and slight tilt on a pale textured background.

    Tilts stay small so that a square never turns into a diamond.
    """
    nuisance = sample_nuisance(rng)
    image = Image.blend(
        draw_background(size, nuisance, rng), Image.new("RGB", (size, size), (255, 255, 255)), 0.4
    )
    draw = ImageDraw.Draw(image)
    radius = size * rng.uniform(0.24, 0.36)
    cx, cy = (size * rng.uniform(0.38, 0.62) for _ in range(2))
    tilt = np.deg2rad(rng.uniform(-20, 20))
    fill = tuple(int(np.clip(c * rng.uniform(0.85, 1.15), 0, 255)) for c in SHAPE_COLOURS[colour])

    def outline(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """Scale unit-circle points by the radius, tilt them and move them into place."""
        cos, sin = np.cos(tilt), np.sin(tilt)
        return [(cx + radius * (x * cos - y * sin), cy + radius * (x * sin + y * cos)) for x, y in points]

    def regular(sides: int, start: float, inner: float | None = None) -> list[tuple[float, float]]:
        steps = sides * (2 if inner else 1)
        return [
            (
                (inner if inner and k % 2 else 1.0) * np.cos(start + 2 * np.pi * k / steps),
                (inner if inner and k % 2 else 1.0) * np.sin(start + 2 * np.pi * k / steps),
            )
            for k in range(steps)
        ]

    if shape == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=fill)
    elif shape == "square":
        draw.polygon(outline([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]), fill=fill)
    elif shape == "triangle":
        draw.polygon(outline(regular(3, -np.pi / 2)), fill=fill)
    elif shape == "star":
        draw.polygon(outline(regular(5, -np.pi / 2, inner=0.42)), fill=fill)
    elif shape == "diamond":
        draw.polygon(outline([(0.0, -1.0), (0.6, 0.0), (0.0, 1.0), (-0.6, 0.0)]), fill=fill)
    elif shape == "cross":
        arm = 0.3
        draw.polygon(
            outline(
                [
                    (-arm, -1),
                    (arm, -1),
                    (arm, -arm),
                    (1, -arm),
                    (1, arm),
                    (arm, arm),
                    (arm, 1),
                    (-arm, 1),
                    (-arm, arm),
                    (-1, arm),
                    (-1, -arm),
                    (-arm, -arm),
                ]
            ),
            fill=fill,
        )
    else:
        raise ValueError(f"Unknown shape {shape!r}.")
    return finish(
        image, dataclasses.replace(nuisance, brightness=min(1.1, max(0.85, nuisance.brightness))), rng
    )


def draw_digit(glyph: np.ndarray, rng: np.random.Generator, size: int = 64) -> Image.Image:
    """An 8x8 handwritten digit, upscaled and inked in a dark colour on a pale textured background."""
    nuisance = sample_nuisance(rng)
    image = Image.blend(
        draw_background(size, nuisance, rng), Image.new("RGB", (size, size), (255, 255, 255)), 0.5
    )
    side = int(size * rng.uniform(0.55, 0.85))
    mask = Image.fromarray((glyph * 255).astype(np.uint8)).resize((side, side), Image.BICUBIC)
    ink = (20, 20, 20) if rng.random() < 0.5 else tuple(int(c) for c in rng.integers(0, 110, size=3))
    x, y = (int(rng.integers(0, size - side + 1)) for _ in range(2))
    image.paste(Image.new("RGB", (side, side), ink), (x, y), mask)
    return finish(
        image, dataclasses.replace(nuisance, brightness=min(1.1, max(0.85, nuisance.brightness))), rng
    )


@dataclass
class DemoWorld:
    """A world of people, names and pictures: ``DemoWorld.build(size="full" | "ci" | "large", seed=...)``."""

    seed: int
    config: WorldConfig
    people: tuple[Person, ...] = field(repr=False)
    distractor_names: tuple[str, ...] = field(repr=False)
    size: str | None = None
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def build(cls, size: str = "full", seed: int = 0, **overrides) -> DemoWorld:
        """Create the world of a named ``size`` (``WORLD_SIZES``); ``overrides`` replace config fields.

        Cheap: only people and names are decided here; pictures are drawn when a dataset is requested.
        """
        if size not in WORLD_SIZES:
            raise ValueError(f"Unknown world size {size!r}; choose one of {sorted(WORLD_SIZES)}.")
        config = dataclasses.replace(WORLD_SIZES[size], **overrides)
        named = config.num_members + config.num_non_members
        names = generate_names(named + config.num_distractors, seed)
        traits = _sample_people(config, seed)
        people = []
        for person_id, attributes in enumerate(traits):
            if person_id < config.num_members:
                role = "member"
            elif person_id < named:
                role = "non_member"
            else:
                role = "unnamed"
            people.append(
                Person(person_id, role, attributes, names[person_id] if person_id < named else None)
            )
        return cls(seed, config, tuple(people), tuple(names[named:]), size if not overrides else None)

    # ----------------------------------------------------------------------------------------------- people
    def _with_role(self, role: str) -> list[Person]:
        return [person for person in self.people if person.role == role]

    @property
    def members(self) -> list[Person]:
        """People whose name and face appear together in training captions."""
        return self._with_role("member")

    @property
    def non_members(self) -> list[Person]:
        """Named people that training never saw: the IDIA's negatives."""
        return self._with_role("non_member")

    @property
    def unnamed(self) -> list[Person]:
        """People only ever captioned as "a person"."""
        return self._with_role("unnamed")

    @property
    def member_names(self) -> list[str]:
        return [person.name for person in self.members]

    @property
    def non_member_names(self) -> list[str]:
        return [person.name for person in self.non_members]

    @property
    def candidate_names(self) -> list[str]:
        """The IDIA candidate pool: members, non-members and distractors (names that belong to nobody)."""
        return self.member_names + self.non_member_names + list(self.distractor_names)

    def person(self, name: str) -> Person:
        for person in self.people:
            if person.name == name:
                return person
        raise KeyError(f"Nobody in this world is called {name!r}.")

    # ----------------------------------------------------------------------------------------------- pictures
    def face_image(self, person: Person | int, index: int) -> Image.Image:
        """Picture ``index`` of a person: a function of (seed, person, index) only.

        Indices below ``train_images_per_person`` are the person's training pictures (used in captions if they
        are a member); the next ``eval_images_per_person`` are fresh ones that training never used.
        """
        person_id = person.person_id if isinstance(person, Person) else person
        return draw_face(
            self.people[person_id].attributes,
            _rng(self.seed, _FACE, person_id, index),
            self.config.image_size,
        )

    def train_indices(self) -> range:
        return range(self.config.train_images_per_person)

    def eval_indices(self) -> range:
        start = self.config.train_images_per_person
        return range(start, start + self.config.eval_images_per_person)

    def _digit_indices(self) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        """Per class, which of scikit-learn's digits are for training and which are held out."""
        _, targets = _load_digits()
        rng = _rng(self.seed, _DIGIT_SPLIT)
        train, held_out = {}, {}
        for digit in range(10):
            indices = rng.permutation(np.flatnonzero(targets == digit))
            n_train, n_eval = self.config.digit_train_per_class, self.config.digit_eval_per_class
            if n_train + n_eval > len(indices):
                raise ValueError(
                    f"Only {len(indices)} images of the digit {digit}; asked for {n_train + n_eval}."
                )
            train[digit], held_out[digit] = indices[:n_train], indices[n_train : n_train + n_eval]
        return train, held_out

    def _shape_image(self, class_index: int, index: int) -> Image.Image:
        colour, shape = self.shape_classes[class_index]
        return draw_shape(colour, shape, _rng(self.seed, _SHAPE, class_index, index), self.config.image_size)

    def _digit_image(self, sample: int) -> Image.Image:
        glyphs, _ = _load_digits()
        return draw_digit(glyphs[sample], _rng(self.seed, _DIGIT, int(sample)), self.config.image_size)

    # ----------------------------------------------------------------------------------------------- text
    @property
    def shape_classes(self) -> list[tuple[str, str]]:
        return [(colour, shape) for colour in SHAPE_COLOURS for shape in SHAPE_NAMES]

    @property
    def zero_shot_templates(self) -> tuple[str, ...]:
        """``DEMO_ZERO_SHOT_TEMPLATES``: the prompts to classify ``zero_shot()`` with."""
        return DEMO_ZERO_SHOT_TEMPLATES

    @property
    def zero_shot_class_names(self) -> list[str]:
        """Class names of the zero-shot task: "red circle", ..., "digit seven"."""
        return [f"{colour} {shape}" for colour, shape in self.shape_classes] + [
            f"digit {w}" for w in DIGIT_WORDS
        ]

    def person_caption(self, person: Person, index: int) -> str:
        """The training caption of picture ``index`` of ``person``.

        Members cycle through a per-person shuffle of ``PERSON_TEMPLATES``, so each sees many wordings;
        unnamed people get templates filled with the neutral term, plain neutral captions or a description of
        their visible traits ("a person with red hair").
        """
        rng = _rng(self.seed, _CAPTION, person.person_id, index)
        if person.name is not None:
            order = _rng(self.seed, _CAPTION, person.person_id).permutation(len(PERSON_TEMPLATES))
            return PERSON_TEMPLATES[order[index % len(order)]].format(person.name)
        kind = rng.random()
        if kind < 0.4:
            template = PERSON_TEMPLATES[rng.integers(len(PERSON_TEMPLATES))]
            return template.format(NEUTRAL_VARIANTS[rng.integers(len(NEUTRAL_VARIANTS))])
        if kind < 0.65:
            return NEUTRAL_CAPTIONS[rng.integers(len(NEUTRAL_CAPTIONS))]
        traits = person.attributes.describe()
        chosen = [traits[i] for i in sorted(rng.choice(len(traits), size=min(2, len(traits)), replace=False))]
        template = DESCRIPTION_TEMPLATES[rng.integers(len(DESCRIPTION_TEMPLATES))]
        return _fix_articles(template.format(NEUTRAL_TERM, " and ".join(chosen)))

    def clean_captions(self) -> list[str]:
        """Name-free captions from this world's domain, for the unlearner's utility loss (sorted, unique).

        Templates filled with the neutral phrases, neutral and descriptive captions of people, and every
        caption of the shapes and digits.
        """
        captions: set[str] = set(NEUTRAL_CAPTIONS)
        for template in PERSON_TEMPLATES:
            captions.update(template.format(term) for term in set(NEUTRAL_VARIANTS))
        for person in self.unnamed:
            traits = person.attributes.describe()
            for template in DESCRIPTION_TEMPLATES:
                captions.update(_fix_articles(template.format(NEUTRAL_TERM, trait)) for trait in traits)
        for colour, shape in self.shape_classes:
            captions.update(
                _fix_articles(template.format(f"{colour} {shape}")) for template in SHAPE_TEMPLATES
            )
        for word in DIGIT_WORDS:
            captions.update(_fix_articles(template.format(f"digit {word}")) for template in DIGIT_TEMPLATES)
        return sorted(captions)

    def unlearning_captions(self, per_name: int = 3) -> list[str]:
        """The clean set for text unlearning: ``clean_captions()`` plus person prompts with the distractors' names.

        Web captions, the paper's clean set, are full of other people's names; a clean set without any teaches
        the text tower that *every* name in a person prompt means "a person", which costs the people who are
        kept their identity. Distractor names belong to nobody, so no evaluated person is protected by name.
        """
        rng = random.Random(self.seed)
        named = [template.format(name) for name in self.distractor_names
                 for template in rng.sample(PERSON_TEMPLATES, per_name)]
        return self.clean_captions() + named

    def tokenizer_corpus(self) -> list[str]:
        """Text to learn the tokenizer from: training and clean captions, and every name (distractors too)."""
        corpus = list(self.training_captions())
        corpus += self.clean_captions()
        corpus += self.candidate_names
        corpus += [
            _fix_articles(t.format(name))
            for t in DEMO_ZERO_SHOT_TEMPLATES
            for name in self.zero_shot_class_names
        ]
        return corpus

    # ----------------------------------------------------------------------------------------------- datasets
    def _training_items(self) -> Iterable[tuple[str, str, str, object]]:
        """(kind, group, caption, picture maker) for every training pair, in a fixed order.

        ``group`` names what a caption is about (a person, "neutral", a shape class, a digit): two pairs of
        the same group are not negatives of each other in the contrastive loss.
        """
        for person in self.members + self.unnamed:
            count = (
                self.config.train_images_per_person
                if person.role == "member"
                else self.config.images_per_unnamed_person
            )
            group = f"person:{person.person_id}" if person.role == "member" else "neutral"
            for index in range(count):
                yield person.role, group, self.person_caption(person, index), (self.face_image, person, index)
        for class_index, (colour, shape) in enumerate(self.shape_classes):
            for index in range(self.config.shape_train_per_class):
                rng = _rng(self.seed, _CAPTION, 10**6 + class_index, index)
                caption = _fix_articles(
                    SHAPE_TEMPLATES[rng.integers(len(SHAPE_TEMPLATES))].format(f"{colour} {shape}")
                )
                yield "shape", f"shape:{colour} {shape}", caption, (self._shape_image, class_index, index)
        train, _ = self._digit_indices()
        for digit, samples in train.items():
            for sample in samples:
                rng = _rng(self.seed, _CAPTION, 2 * 10**6 + int(sample))
                caption = DIGIT_TEMPLATES[rng.integers(len(DIGIT_TEMPLATES))].format(
                    f"digit {DIGIT_WORDS[digit]}"
                )
                yield "digit", f"digit:{digit}", caption, (self._digit_image, sample)

    def training_captions(self) -> list[str]:
        """The captions of ``training_pairs()``, in order, without drawing any picture."""
        return [caption for _, _, caption, _ in self._training_items()]

    def training_pairs(self) -> datasets.Dataset:
        """Image-caption pairs to train CLIP on; columns ``image``, ``caption``, ``group``, ``kind``."""
        if "training_pairs" not in self._cache:
            columns: dict[str, list] = {"image": [], "caption": [], "group": [], "kind": []}
            for kind, group, caption, (make, *args) in self._training_items():
                columns["image"].append(make(*args))
                columns["caption"].append(caption)
                columns["group"].append(group)
                columns["kind"].append(kind)
            features = datasets.Features(
                {
                    "image": datasets.Image(),
                    "caption": datasets.Value("string"),
                    "group": datasets.Value("string"),
                    "kind": datasets.Value("string"),
                }
            )
            self._cache["training_pairs"] = datasets.Dataset.from_dict(columns, features=features)
        return self._cache["training_pairs"]

    def faces(self) -> datasets.DatasetDict:
        """Named people's pictures: ``train`` (members' are the ones captioned in training), ``eval`` (fresh).

        Columns ``image``, ``name``, ``person_id``, ``member`` (bool) and ``image_index``.  Non-members have
        both splits too, but training never saw either.
        """
        if "faces" not in self._cache:
            splits = {}
            for split, indices in (("train", self.train_indices()), ("eval", self.eval_indices())):
                rows: dict[str, list] = {
                    "image": [],
                    "name": [],
                    "person_id": [],
                    "member": [],
                    "image_index": [],
                }
                for person in self.members + self.non_members:
                    for index in indices:
                        rows["image"].append(self.face_image(person, index))
                        rows["name"].append(person.name)
                        rows["person_id"].append(person.person_id)
                        rows["member"].append(person.role == "member")
                        rows["image_index"].append(index)
                features = datasets.Features(
                    {
                        "image": datasets.Image(),
                        "name": datasets.Value("string"),
                        "person_id": datasets.Value("int32"),
                        "member": datasets.Value("bool"),
                        "image_index": datasets.Value("int32"),
                    }
                )
                splits[split] = datasets.Dataset.from_dict(rows, features=features)
            self._cache["faces"] = datasets.DatasetDict(splits)
        return self._cache["faces"]

    def clean_images(self) -> datasets.Dataset:
        """The training pictures that show no person (shapes and digits), columns ``image`` and ``caption``.

        For the image tower's utility loss and as backgrounds for pasted faces; the zero-shot set is disjoint.
        """
        pairs = self.training_pairs()
        return pairs.filter(lambda kind: kind in ("shape", "digit"), input_columns="kind").select_columns(
            ["image", "caption"]
        )

    def vision_unlearning_inputs(self, removed_names: list[str]) -> dict[str, datasets.Dataset]:
        """``face_images``, ``reference_faces`` and ``images`` for image-tower unlearning of ``removed_names``.

        Only training pictures: the removed people's own, the unnamed people's and the *other* members' (the
        anonymous target and the faces held in place), on shapes and digits. The reference faces say whose each is
        (``name``; an unnamed person by number), which the gated edit reads with few pictures a person. The
        ``eval`` split of ``faces()`` stays untouched for the attack.
        """
        removed = set(removed_names)
        train = self.faces()["train"]
        face_images = train.filter(lambda name: name in removed, input_columns="name")
        others = train.filter(lambda name, member: member and name not in removed, input_columns=["name", "member"])
        unnamed = self.unnamed_faces()
        unnamed = unnamed.add_column("name", [f"unnamed person {number}" for number in unnamed["person_id"]])
        reference = datasets.concatenate_datasets(
            [unnamed.select_columns(["image", "name"]), others.select_columns(["image", "name"])]
        )
        return {"face_images": face_images.select_columns(["image", "name"]), "reference_faces": reference,
                "images": self.clean_images()}

    def unnamed_faces(self) -> datasets.Dataset:
        """Pictures of the unnamed people (the same ones training captions as "a person"): anonymous faces.

        Columns ``image``, ``person_id``, ``image_index``; for wherever "faces of many other people" are
        needed.
        """
        if "unnamed_faces" not in self._cache:
            rows: dict[str, list] = {"image": [], "person_id": [], "image_index": []}
            for person in self.unnamed:
                for index in range(self.config.images_per_unnamed_person):
                    rows["image"].append(self.face_image(person, index))
                    rows["person_id"].append(person.person_id)
                    rows["image_index"].append(index)
            features = datasets.Features(
                {
                    "image": datasets.Image(),
                    "person_id": datasets.Value("int32"),
                    "image_index": datasets.Value("int32"),
                }
            )
            self._cache["unnamed_faces"] = datasets.Dataset.from_dict(rows, features=features)
        return self._cache["unnamed_faces"]

    def zero_shot(self) -> datasets.Dataset:
        """Held-out shapes and digits, never used in training: columns ``image``, ``label`` (``ClassLabel``).

        Classify by embedding ``DEMO_ZERO_SHOT_TEMPLATES`` filled with ``label``'s names; chance is one over
        the number of classes.
        """
        if "zero_shot" not in self._cache:
            images, labels = [], []
            start = self.config.shape_train_per_class
            for class_index in range(len(self.shape_classes)):
                for index in range(start, start + self.config.shape_eval_per_class):
                    images.append(self._shape_image(class_index, index))
                    labels.append(class_index)
            _, held_out = self._digit_indices()
            for digit, samples in held_out.items():
                for sample in samples:
                    images.append(self._digit_image(sample))
                    labels.append(len(self.shape_classes) + digit)
            features = datasets.Features(
                {"image": datasets.Image(), "label": datasets.ClassLabel(names=self.zero_shot_class_names)}
            )
            self._cache["zero_shot"] = datasets.Dataset.from_dict(
                {"image": images, "label": labels}, features=features
            )
        return self._cache["zero_shot"]
