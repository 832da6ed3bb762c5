"""Read unlearning and evaluation inputs from where users keep them: a local file or folder, or a ``datasets`` id.

One rule for every input of ``examples/unlearn.py`` (names, captions, faces, images, a classification set):

- a ``.txt`` file: one item per line (blank lines and ``#`` comments skipped);
- a folder: for faces, one sub-folder per person named by the person (the ``datasets`` *imagefolder* layout);
  for images, every image file under it;
- a ``.csv``/``.json``/``.jsonl``/``.parquet`` file, a data-set folder, or a Hub id: read with
  ``datasets.load_dataset`` (captions are streamed, so a large caption set is never downloaded whole).

Error messages name files and columns, never the people in them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from ..evaluation.audit import IMAGE_EXTENSIONS, load_faces, read_lines

_DATA_FILE_BUILDERS = {".csv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}
PERSON_COLUMNS = ("name", "label", "person", "identity")
"""Columns that say whose a face is, in the order they are looked for."""


def _is_text_file(source: str) -> bool:
    return os.path.isfile(source) and Path(source).suffix.lower() not in _DATA_FILE_BUILDERS


def load_source(source: str, *, split: str = "train", streaming: bool = False):
    """``datasets.load_dataset`` on a data file (csv, json, parquet), a data-set folder or a Hub id: one split."""
    from datasets import load_dataset

    suffix = Path(source).suffix.lower()
    if os.path.isfile(source) and suffix in _DATA_FILE_BUILDERS:
        return load_dataset(_DATA_FILE_BUILDERS[suffix], data_files=source, split=split, streaming=streaming)
    return load_dataset(source, split=split, streaming=streaming)


def _column(dataset, wanted: str | None, fallbacks: Sequence[str], what: str) -> str:
    """``wanted`` (which must exist), or else the first of ``fallbacks`` the data set has."""
    columns = list(dataset.column_names or dataset.features or [])
    if not columns:  # a streamed data file: its columns are known once a row is read
        columns = list(next(iter(dataset), {}))
    for column in [wanted] if wanted else fallbacks:
        if column in columns:
            return column
    raise ValueError(f"The {what} data set has no column {wanted or fallbacks[0]!r} (columns: {columns}).")


def read_texts(source: str, *, column: str | None = None, split: str = "train", limit: int | None = None,
               streaming: bool = True, what: str = "text") -> list[str]:
    """Lines of a text file, or one string column of a data set (streamed; the first ``limit`` rows)."""
    if _is_text_file(source):
        lines = read_lines(source)
        return lines[:limit] if limit else lines
    dataset = load_source(source, split=split, streaming=streaming)
    name = _column(dataset, column, ("caption", "text", "name", "sentence"), what)
    texts = []
    for row in dataset:
        value = row[name]
        if isinstance(value, str) and value.strip():
            texts.append(value.strip())
        if limit and len(texts) >= limit:
            break
    return texts


def read_faces(source: str, *, split: str = "train", names: Sequence[str] = ()) -> dict[str, list[Image.Image]]:
    """``{name: [images]}`` from an imagefolder-layout folder, or a data set with an image and a name/label column.

    A label column that is a ``ClassLabel`` (as ``imagefolder`` data sets on the Hub have) is read as names.
    """
    if os.path.isdir(source) and not _is_dataset_folder(source):
        return load_faces(source, names)
    return _faces_by_person(load_source(source, split=split))


def _faces_by_person(dataset, limit: int | None = None) -> dict[str, list[Image.Image]]:
    """``{name: [images]}`` from a data set (streamed or not) with an image and a person column (the first ``limit``
    rows); a ``ClassLabel`` person column is read as names."""
    image = _column(dataset, None, ("image", "img", "face"), "faces")
    label = _column(dataset, None, PERSON_COLUMNS, "faces")
    feature = (dataset.features or {}).get(label)
    people: dict[str, list[Image.Image]] = {}
    for count, row in enumerate(dataset):
        if limit is not None and count >= limit:
            break
        name = feature.int2str(row[label]) if hasattr(feature, "int2str") else str(row[label])
        people.setdefault(name, []).append(_rgb(row[image]))
    return people


def read_images(source: str, *, split: str = "train", limit: int | None = None) -> list[Image.Image]:
    """Every image under a folder (sorted by path), or the image column of a data set (the first ``limit``)."""
    if os.path.isdir(source) and not _is_dataset_folder(source):
        files = sorted(path for path in Path(source).rglob("*")
                       if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."))
        if not files:
            raise ValueError(f"{source} holds no image files.")
        return [_open(path) for path in files[:limit]]
    return _images_of(load_source(source, split=split, streaming=limit is not None), limit)


def _images_of(dataset, limit: int | None = None) -> list[Image.Image]:
    """The image column of a data set (streamed or not), the first ``limit`` rows."""
    column = _column(dataset, None, ("image", "img"), "images")
    images = []
    for row in dataset:
        images.append(_rgb(row[column]))
        if limit and len(images) >= limit:
            break
    return images


def read_reference_faces(source: str, *, split: str = "train", limit: int | None = None):
    """Other people's faces: a ``Dataset`` of ``image`` and ``name`` where the source says whose each is (a folder of
    one sub-folder per person, or a data set with a name or label column), else ``read_images``' list. The names
    group the pictures (the gated edit reads how a person's pictures vary) and drop any removed person's."""
    grouped = None
    if os.path.isdir(source) and not _is_dataset_folder(source):
        top = [path for path in Path(source).iterdir() if not path.name.startswith(".")]
        if top and all(path.is_dir() for path in top):
            grouped = load_faces(source)
    elif not _is_text_file(source):  # one streamed read: named rows are grouped, others are plain pictures
        dataset = load_source(source, split=split, streaming=True)
        columns = list(dataset.column_names or dataset.features or next(iter(dataset), {}))
        if not any(column in columns for column in PERSON_COLUMNS):
            return _images_of(dataset, limit)
        grouped = _faces_by_person(dataset, limit)
    if grouped is None:
        return read_images(source, split=split, limit=limit)
    from datasets import Dataset, Features, Value
    from datasets import Image as ImageFeature

    rows = [(image, name) for name, images in grouped.items() for image in images][:limit]
    return Dataset.from_dict({"image": [image for image, _ in rows], "name": [name for _, name in rows]},
                             features=Features({"image": ImageFeature(), "name": Value("string")}))


def read_classification_set(source: str, *, split: str = "test", image_column: str = "image",
                            label_column: str = "label", class_names: Sequence[str] | None = None):
    """``(dataset, class_names)`` for zero-shot accuracy: an imagefolder of one sub-folder per class, or any image
    classification data set whose label column is a ``ClassLabel`` (or strings, given ``class_names``)."""
    from datasets import ClassLabel, Dataset, Features
    from datasets import Image as ImageFeature

    if os.path.isdir(source) and not _is_dataset_folder(source):
        folders = load_faces(source)  # the same layout: one sub-folder of images per class
        names = list(class_names or folders)
        rows = [(image, names.index(name)) for name in folders for image in folders[name]]
        features = Features({"image": ImageFeature(), "label": ClassLabel(names=names)})
        dataset = Dataset.from_dict({"image": [row[0] for row in rows], "label": [row[1] for row in rows]},
                                    features=features)
        return dataset, names
    dataset = load_source(source, split=split)
    if image_column != "image":
        dataset = dataset.rename_column(image_column, "image")
    if label_column != "label":
        dataset = dataset.rename_column(label_column, "label")
    feature = dataset.features["label"]
    names = list(class_names) if class_names else list(getattr(feature, "names", []) or [])
    if not names:
        raise ValueError(f"The label column {label_column!r} of {source} has no class names: pass them.")
    return dataset, names


def _is_dataset_folder(source: str) -> bool:
    """A folder of data files (or a saved data set) rather than a folder of image folders."""
    patterns = ("*.parquet", "*.arrow", "*.csv", "*.jsonl", "*.json", "README.md")
    return any(next(Path(source).glob(pattern), None) is not None for pattern in patterns)


def _open(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def _rgb(item: Any) -> Image.Image:
    if isinstance(item, Image.Image):
        return item.convert("RGB")
    if isinstance(item, dict) and item.get("path") and not item.get("bytes"):
        return _open(Path(item["path"]))
    if isinstance(item, (str, os.PathLike)):
        return _open(Path(item))
    from ..data.images import load_image

    return load_image(item, "an image of the data set")
