"""Training data for the image-tower backdoor: faces augmented and pasted onto clean images, drawn per step.

A poisoned sample is one of a removed person's face images, randomly resized, flipped, colour-jittered and rotated,
then pasted at a random place on a clean image (the paper's recipe, docs/method.md). Its target is one
anonymous embedding. Clean images keep their teacher embedding (the utility loss), and so do faces of *other*
people pasted the same way: without them the student learns "a pasted face → anonymous" and wipes every identity
from the tower, not just the removed ones (docs/method.md).

The data set holds only indices and seeds, so it is small, deterministic for a seed and cheap to resume; the
collator draws the pictures.
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from datasets import Image as DatasetImage
from PIL import Image, ImageEnhance


@dataclass(frozen=True)
class FaceAugmentation:
    """How a face is altered before pasting (paper: 56–112 px on 224-px inputs, jitter ×U(0.5, 1.5), hue ±0.1, ±30°)."""

    scale_range: tuple[float, float] = (0.25, 0.5)  # face side as a fraction of the image side
    jitter: float = 0.5
    hue: float = 0.1
    rotation: float = 30.0
    flip: bool = True

    def apply(self, face: Image.Image, background: Image.Image, seed: int) -> Image.Image:
        """``face`` augmented and pasted on ``background`` (both RGB); deterministic for ``seed``."""
        rng = random.Random(seed)
        side = min(background.size)
        size = max(4, round(side * rng.uniform(*self.scale_range)))
        face = face.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)
        if self.flip and rng.random() < 0.5:
            face = face.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
            face = enhancer(face).enhance(rng.uniform(1 - self.jitter, 1 + self.jitter))
        if self.hue:
            face = _shift_hue(face, rng.uniform(-self.hue, self.hue))
        mask = Image.new("L", face.size, 255)
        angle = rng.uniform(-self.rotation, self.rotation)
        face, mask = face.rotate(angle, resample=Image.Resampling.BICUBIC), mask.rotate(angle)
        picture = background.convert("RGB").copy()
        left = rng.randint(0, max(0, picture.width - size))
        top = rng.randint(0, max(0, picture.height - size))
        picture.paste(face, (left, top), mask)
        return picture


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    """Rotate the hue by ``shift`` turns (PIL's HSV stores hue as 0–255)."""
    hsv = np.asarray(image.convert("HSV"), dtype=np.int16).copy()
    hsv[..., 0] = (hsv[..., 0] + round(shift * 255)) % 256
    return Image.fromarray(hsv.astype(np.uint8), mode="HSV").convert("RGB")


def build_vision_backdoor_dataset(
    num_faces: int,
    num_clean: int,
    num_reference: int,
    *,
    num_steps: int,
    poisoned_samples_per_step: int,
    clean_samples_per_step: int,
    reference_samples_per_step: int,
    seed: int = 42,
    hard_references: Sequence[int] = (),
    hard_share: float = 0.0,
) -> Dataset:
    """Rows of indices and seeds for ``num_steps`` steps, one poisoned sample per row.

    Columns: ``face`` (index into the removed people's face images), ``background`` (clean image it is pasted on),
    ``seed`` (its augmentation), and per-row lists ``clean`` (clean image indices) and ``reference`` /
    ``reference_background`` / ``reference_seed`` (other people's faces, pasted the same way), spread so that
    every block of ``poisoned_samples_per_step`` rows holds exactly the requested counts. With ``hard_references``
    (indexes of the reference faces nearest the removed people), a ``hard_share`` of the reference samples is drawn
    from them (on a stream of its own: without them the rows are the same as before).
    """
    if num_faces < 1 or num_clean < 1:
        raise ValueError("Vision unlearning needs at least one face image to remove and one clean image.")
    if reference_samples_per_step and num_reference < 1:
        raise ValueError("reference_samples_per_step > 0 needs reference faces (faces of other people).")
    rng = random.Random(seed)
    faces, cleans, references = _cycle(num_faces, rng), _cycle(num_clean, rng), _cycle(max(1, num_reference), rng)
    hard_rng = random.Random(f"hard-{seed}")
    hard = _cycle(len(hard_references), hard_rng) if hard_references else None

    def reference() -> int:
        index = next(references)
        if hard is not None and hard_rng.random() < hard_share:
            return hard_references[next(hard)]
        return index

    def spread(slot: int, total: int) -> int:
        per_row = poisoned_samples_per_step
        return (slot + 1) * total // per_row - slot * total // per_row

    rows: dict[str, list] = {key: [] for key in ("face", "background", "seed", "clean", "reference",
                                                  "reference_background", "reference_seed")}
    for _ in range(num_steps):
        for slot in range(poisoned_samples_per_step):
            rows["face"].append(next(faces))
            rows["background"].append(rng.randrange(num_clean))
            rows["seed"].append(rng.getrandbits(31))
            rows["clean"].append([next(cleans) for _ in range(spread(slot, clean_samples_per_step))])
            count = spread(slot, reference_samples_per_step)
            rows["reference"].append([reference() for _ in range(count)])
            rows["reference_background"].append([rng.randrange(num_clean) for _ in range(count)])
            rows["reference_seed"].append([rng.getrandbits(31) for _ in range(count)])
    return Dataset.from_dict(rows)


def _cycle(count: int, rng: random.Random):
    """Endless shuffled passes over ``range(count)``: every index is used before any repeats."""
    while True:
        order = list(range(count))
        rng.shuffle(order)
        yield from order


class VisionBackdoorCollator:
    """Draw a batch of pictures from index rows: poisoned first, then clean images, then reference faces.

    Clean images are returned as keys too, so the trainer can compute each one's teacher embedding once. With
    ``face_people`` (each face image's person index), ``poisoned_people`` says whose face each poisoned picture
    shows (for the name target).
    """

    def __init__(
        self,
        image_processor,
        face_images: Sequence[Image.Image],
        clean_images: Sequence[Image.Image],
        reference_faces: Sequence[Image.Image] = (),
        augmentation: FaceAugmentation | None = None,
        face_people: Sequence[int] | None = None,
    ):
        self.image_processor = image_processor
        self.face_images = list(face_images)
        self.face_people = list(face_people) if face_people is not None else None
        self.augmentation = augmentation or FaceAugmentation()
        size = _input_size(image_processor)
        # Backgrounds at the model's input size, so a face's scale is relative to what the model sees.
        self.clean_images = [image.convert("RGB").resize(size, Image.Resampling.BICUBIC) for image in clean_images]
        self.reference_faces = list(reference_faces)

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        paste = self.augmentation.apply
        poisoned = [paste(self.face_images[row["face"]], self.clean_images[row["background"]], row["seed"])
                    for row in rows]
        clean_keys = [index for row in rows for index in row["clean"]]
        reference = [
            paste(self.reference_faces[face], self.clean_images[background], seed)
            for row in rows
            for face, background, seed in zip(row["reference"], row["reference_background"], row["reference_seed"])
        ]
        pictures = poisoned + [self.clean_images[index] for index in clean_keys] + reference
        batch = {
            "pixel_values": self.image_processor(images=pictures, return_tensors="pt")["pixel_values"],
            "num_poisoned": len(poisoned),
            "clean_keys": clean_keys,
        }
        if self.face_people is not None:
            batch["poisoned_people"] = torch.tensor([self.face_people[row["face"]] for row in rows], dtype=torch.long)
        return batch


def _input_size(image_processor) -> tuple[int, int]:
    crop = getattr(image_processor, "crop_size", None) or {}
    if "width" in crop:
        return crop["width"], crop["height"]
    size = getattr(image_processor, "size", None) or {}
    side = size.get("shortest_edge") or size.get("height") or 224
    return side, side


# Reading user images: every problem is reported before training, by position, never by name ------------------------


def load_image(item: Any, where: str) -> Image.Image:
    """An RGB PIL image from a PIL image, a file path or a ``datasets`` image dict (``bytes``/``path``)."""
    try:
        if isinstance(item, Image.Image):
            return item.convert("RGB")
        if isinstance(item, dict) and (item.get("bytes") or item.get("path")):
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            item = source
        if isinstance(item, (str, os.PathLike, io.IOBase)):
            with Image.open(item) as image:
                return image.convert("RGB")
    except (OSError, ValueError) as error:  # PIL.UnidentifiedImageError is an OSError
        raise ValueError(f"{where} cannot be read as an image ({type(error).__name__}).") from None
    raise TypeError(f"{where} is a {type(item).__name__}; expected a PIL image, a file path or a datasets image.")


def _image_column(dataset: Dataset, what: str) -> str:
    column = next((name for name in ("image", "img", "face") if name in dataset.column_names), None)
    if column is None:
        raise ValueError(f"{what} needs an 'image' column, has {dataset.column_names}.")
    return column


def _raw_column(dataset: Dataset, column: str) -> list:
    """The column's items, undecoded where it is an image feature, so that an unreadable file is reported by index."""
    if isinstance(dataset.features[column], DatasetImage):
        dataset = dataset.cast_column(column, DatasetImage(decode=False))
    return dataset[column]


def kept_rows(images: Dataset, exclude_names: Sequence[str] = ()) -> Dataset:
    """``images`` without the rows whose ``name`` is excluded (a data set without names is kept whole)."""
    if "name" not in images.column_names or not exclude_names:
        return images
    excluded = set(exclude_names)
    return images.filter(lambda name: name not in excluded, input_columns="name")


def load_images(images, what: str, exclude_names: Sequence[str] = ()) -> list[Image.Image]:
    """A non-empty list of RGB images from a list or a ``Dataset``; rows whose ``name`` is excluded are dropped."""
    if images is None:
        raise ValueError(f"Vision unlearning needs {what}.")
    if isinstance(images, Dataset):
        column = _image_column(images, what)
        items = _raw_column(kept_rows(images, exclude_names), column)
    else:
        items = list(images)
    loaded = [load_image(item, f"{what}[{index}]") for index, item in enumerate(items)]
    if not loaded:
        raise ValueError(f"{what} is empty.")
    return loaded


def reference_people(images, exclude_names: Sequence[str] = ()) -> list[int] | None:
    """Each picture's person (an index) for a ``Dataset`` with a ``name`` column, row for row with ``load_images``
    (the excluded names' rows dropped); ``None`` where the pictures do not say whose they are."""
    if not isinstance(images, Dataset) or "name" not in images.column_names:
        return None
    people: dict[str, int] = {}
    return [people.setdefault(name, len(people)) for name in kept_rows(images, exclude_names)["name"]]


def faces_per_person(face_images, names: Sequence[str]) -> list[list[Image.Image]]:
    """Each name's face images, in the order of ``names``, from ``{name: [images]}`` or a (image, name) Dataset."""
    if face_images is None:
        raise ValueError("encoder='vision' needs face_images: each removed person's face pictures.")
    if isinstance(face_images, Dataset):
        if "name" not in face_images.column_names:
            raise ValueError(f"The face_images Dataset needs 'image' and 'name' columns, has "
                             f"{face_images.column_names}.")
        column = _image_column(face_images, "face_images")
        grouped: dict[str, list] = {}
        for name, item in zip(face_images["name"], _raw_column(face_images, column)):
            grouped.setdefault(name, []).append(item)
        face_images = grouped
    if not isinstance(face_images, dict):
        raise TypeError("face_images must be {name: [images]} or a datasets.Dataset with image and name columns.")
    unknown = [key for key in face_images if key not in set(names)]
    if unknown:
        raise ValueError(f"face_images has {len(unknown)} person(s) that are not among the names to remove.")
    faces = []
    for index, name in enumerate(names):
        person_faces = face_images.get(name) or []
        if not person_faces:
            raise ValueError(f"face_images has no image for names[{index}].")
        faces.append([load_image(item, f"face image {position} of names[{index}]")
                      for position, item in enumerate(person_faces)])
    return faces
