"""An image-to-image identity attack: does a fresh photo of a person still retrieve that person's other photos?

The IDIA goes through names; an attacker holding pictures can compare pictures with pictures, so the image tower's
unlearning is measured that way too. Protocol: every query and gallery image is embedded once with the image tower
(cosine); each query's prediction is the gallery *person* owning the nearest gallery image (an exact tie between
people abstains); the person is identified when the unique most frequent prediction over their queries is
themselves (the IDIA's vote with one prompt: a tie is not a hit). Queries must be other pictures than the gallery's.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from PIL import Image

from ..training.embeddings import processor_parts
from .idia import ABSTAIN, embed_people, evaluation_mode, images_by_person, person_verdict, share_detected


@dataclass
class ImageRetrievalResult:
    """The outcome of :func:`image_retrieval_attack`, per query person (in the order the queries were given).

    Attributes:
        hits: how many of the person's queries retrieved one of their own gallery pictures first.
        num_queries: how many query pictures the person had.
        identified: whether the person's queries voted for themselves (unique most frequent nearest person).
        gallery_people, gallery_images: the size of the gallery searched.
    """

    hits: dict[str, int]
    num_queries: dict[str, int]
    identified: dict[str, bool]
    gallery_people: int
    gallery_images: int
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def hit_rates(self) -> dict[str, float]:
        """Per person, the share of their queries whose nearest gallery picture is their own."""
        return {name: self.hits[name] / self.num_queries[name] for name in self.hits}

    def tpr(self, names: Iterable[str] | None = None) -> float:
        """Share of ``names`` (default: every query person) that the attack identified."""
        return share_detected(self.identified, names, "had no query pictures")

    def to_dict(self) -> dict[str, Any]:
        return {
            "gallery_people": self.gallery_people,
            "gallery_images": self.gallery_images,
            "tpr": self.tpr(),
            "people": [{"name": name, "num_queries": self.num_queries[name], "hits": self.hits[name],
                        "identified": self.identified[name]} for name in self.identified],
        }

    def __repr__(self) -> str:  # counts only: a result is often printed or logged, and holds the names
        return (f"ImageRetrievalResult(people={len(self.identified)}, identified={sum(self.identified.values())}, "
                f"gallery_people={self.gallery_people}, gallery_images={self.gallery_images})")


def _validate(queries: Mapping[str, Sequence[Image.Image]], gallery: Mapping[str, Sequence[Image.Image]]) -> None:
    """Check the inputs; messages give counts and indexes, never names."""
    for label, people in (("queries", queries), ("gallery", gallery)):
        if not people:
            raise ValueError(f"{label} is empty; give at least one person with images.")
        empty = [i for i, images in enumerate(people.values()) if len(images) == 0]
        if empty:
            raise ValueError(f"{len(empty)} {label} entr{'y has' if len(empty) == 1 else 'ies have'} no images "
                             f"(indexes {empty} in the order of {label}).")
    absent = [i for i, name in enumerate(queries) if name not in gallery]
    if absent:
        raise ValueError(f"{len(absent)} query {'person has' if len(absent) == 1 else 'people have'} no gallery "
                         f"pictures (indexes {absent} in the order of queries); nobody could retrieve them.")
    gallery_ids = {id(image) for images in gallery.values() for image in images}
    shared = sum(id(image) in gallery_ids for images in queries.values() for image in images)
    if shared:
        raise ValueError(f"{shared} query picture(s) are also in the gallery: a picture retrieves itself, so the "
                         "queries must be other pictures than the gallery's.")


def image_retrieval_attack(
    model: torch.nn.Module,
    processor,
    queries: Mapping[str, Sequence[Image.Image]] | Any,
    gallery: Mapping[str, Sequence[Image.Image]] | Any,
    *,
    batch_size: int = 128,
    image_column: str = "image",
    name_column: str = "name",
    show_progress_bar: bool = False,
) -> ImageRetrievalResult:
    """Run the image-to-image attack with ``model``'s image tower.

    Args:
        model: a ``CLIPModel`` or ``CLIPVisionModelWithProjection``; runs on its device.
        processor: a ``CLIPProcessor`` or a bare image processor.
        queries: ``{name: [PIL.Image, ...]}`` or a ``datasets.Dataset`` with ``image_column`` and ``name_column``:
            the pictures the attacker holds (fresh ones, not in the gallery).
        gallery: the same kinds of input: many people's pictures, every query person's *other* pictures among them.
        batch_size: images per forward pass.

    Raises:
        ValueError: empty inputs, a person without images, a query person absent from the gallery, or a picture
            that is both a query and in the gallery.
    """
    query_people = images_by_person(queries, image_column=image_column, name_column=name_column)
    gallery_people = images_by_person(gallery, image_column=image_column, name_column=name_column)
    _validate(query_people, gallery_people)
    _, image_processor = processor_parts(processor)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    with evaluation_mode(model):
        query_embeddings = embed_people(model, image_processor, query_people, batch_size=batch_size,
                                        show_progress_bar=show_progress_bar)
        gallery_embeddings = embed_people(model, image_processor, gallery_people, batch_size=batch_size,
                                          show_progress_bar=show_progress_bar)
    timings["image_embedding_s"] = time.perf_counter() - start
    start = time.perf_counter()
    gallery_matrix = torch.cat(gallery_embeddings)
    owners = torch.cat([torch.full((len(person),), index, device=gallery_matrix.device)
                        for index, person in enumerate(gallery_embeddings)])
    chunks = []
    for block in torch.cat(query_embeddings).split(1024):  # (queries, gallery images) a block at a time
        scores = block @ gallery_matrix.T
        # Per query and gallery person, the best cosine over that person's pictures.
        per_person = torch.full((scores.shape[0], len(gallery_people)), -torch.inf, device=scores.device)
        per_person.scatter_reduce_(1, owners.expand_as(scores), scores, reduce="amax")
        if len(gallery_people) == 1:
            chunks.append(torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device))
        else:
            top = per_person.topk(2, dim=-1)
            chunks.append(torch.where(top.values[:, 0] == top.values[:, 1], ABSTAIN, top.indices[:, 0]))
    predictions = torch.cat(chunks).cpu()
    index = {name: position for position, name in enumerate(gallery_people)}
    hits, num_queries, identified = {}, {}, {}
    for name, person_predictions in zip(query_people, predictions.split([len(q) for q in query_embeddings]),
                                        strict=True):
        _, _, identified[name] = person_verdict(person_predictions[:, None], index[name], len(gallery_people), 1)
        hits[name] = int((person_predictions == index[name]).sum())
        num_queries[name] = len(person_predictions)
    timings["retrieval_s"] = time.perf_counter() - start
    return ImageRetrievalResult(hits, num_queries, identified, len(gallery_people),
                                sum(len(person) for person in gallery_embeddings), timings)
