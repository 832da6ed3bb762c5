"""The identity inference attack (IDIA): does a CLIP model still tie a person's name to their face?

Protocol (Hintersdorf et al., "Does CLIP Know My Face?", as the defence paper uses it; docs/method.md):
every prompt template is filled with every candidate name; for each prompt and each of a person's images the
model's prediction is the candidate whose text is closest (cosine) to the image; per prompt the person's
images vote, and a prompt counts as correct when the *unique* most frequent prediction is the person (a tie is
wrong); the person is detected when at least ``min_correct_prompts`` prompts are correct.

The cost is dominated by embedding ``len(templates) * len(candidate_names)`` texts and the images, so each is
embedded exactly once, in length-sorted batches, and the voting is a handful of matrix products.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from ..training.embeddings import encode_images, encode_texts, model_device, processor_parts
from .templates import IDIA_TEMPLATES, validate_templates

# A per-image prediction when the best cosine is shared by several candidates: the image names nobody.
ABSTAIN = -1


@contextmanager
def evaluation_mode(*models: torch.nn.Module) -> Iterator[None]:
    """Switch ``models`` to eval mode (no dropout, e.g. LoRA's), restoring each submodule's mode after.

    Restoring per submodule matters: a trainer may keep some layers (frozen norms) in eval mode on purpose.
    """
    states = [(module, module.training) for model in models for module in model.modules()]
    try:
        for model in models:
            model.eval()
        yield
    finally:
        for module, training in states:
            module.training = training


# --------------------------------------------------------------------------------------------------- inputs


def images_by_person(
    images: Mapping[str, Sequence[Image.Image]] | Any,
    *,
    image_column: str = "image",
    name_column: str = "name",
) -> dict[str, list[Image.Image]]:
    """Normalise the attack's image input to ``{name: [PIL.Image, ...]}`` in first-appearance order.

    Accepts that mapping itself or a ``datasets.Dataset`` with an image column and a name column (a string
    column or a ``ClassLabel``, as ``imagefolder`` produces).  Duck-typed so that ``datasets`` is not imported
    here.
    """
    if isinstance(images, Mapping):
        people: dict[str, list[Image.Image]] = {}
        for index, (name, person_images) in enumerate(images.items()):
            if isinstance(person_images, (Image.Image, str, bytes)) or not isinstance(
                person_images, Iterable
            ):
                raise TypeError(
                    f"images must map each name to a list of PIL images; entry {index} maps to a "
                    f"{type(person_images).__name__}."
                )
            people[name] = list(person_images)
        return people
    if hasattr(images, "column_names") and hasattr(images, "features"):
        missing = [column for column in (image_column, name_column) if column not in images.column_names]
        if missing:
            raise ValueError(f"The dataset lacks the column(s) {missing}; it has {images.column_names}.")
        names = list(images[name_column])
        feature = images.features[name_column]
        if hasattr(feature, "int2str"):
            names = [feature.int2str(int(label)) for label in names]
        people = {}
        for name, image in zip(names, images[image_column], strict=True):
            people.setdefault(name, []).append(image)
        return people
    raise TypeError(
        "images must be a mapping {name: [PIL.Image, ...]} or a datasets.Dataset, "
        f"not {type(images).__name__}."
    )


def _validate(
    people: Mapping[str, Sequence[Image.Image]],
    candidate_names: Sequence[str],
    num_templates: int,
    threshold: int,
) -> dict[str, int]:
    """Check the inputs; map each candidate to its index.  Messages give counts and indexes, not names."""
    if isinstance(candidate_names, str):
        raise TypeError("candidate_names must be a sequence of names, not a single string.")
    if len(candidate_names) == 0:
        raise ValueError("candidate_names is empty; the attack needs a pool of names to choose from.")
    index: dict[str, int] = {}
    duplicates = [i for i, name in enumerate(candidate_names) if index.setdefault(name, i) != i]
    if duplicates:
        raise ValueError(
            f"candidate_names has {len(duplicates)} duplicate entr{'y' if len(duplicates) == 1 else 'ies'} "
            f"(indexes {duplicates}); each candidate must appear once so that a vote has one meaning."
        )
    if not people:
        raise ValueError("images is empty; give at least one person with images.")
    absent = [i for i, name in enumerate(people) if name not in index]
    if absent:
        raise ValueError(
            f"{len(absent)} {'person' if len(absent) == 1 else 'people'} with images "
            f"{'is' if len(absent) == 1 else 'are'} not in candidate_names (indexes {absent} in the order of "
            "images); the pool must contain everyone under test."
        )
    empty = [i for i, person_images in enumerate(people.values()) if len(person_images) == 0]
    if empty:
        raise ValueError(
            f"{len(empty)} {'person has' if len(empty) == 1 else 'people have'} no images "
            f"(indexes {empty} in the order of images)."
        )
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= num_templates:
        raise ValueError(
            "min_correct_prompts must be an integer between 1 and the number of templates "
            f"({num_templates}), got {threshold!r}."
        )
    return index


# ------------------------------------------------------------------------------------------------ embedding


def embed_prompts(
    model: torch.nn.Module,
    tokenizer,
    candidate_names: Sequence[str],
    templates: Sequence[str],
    *,
    batch_size: int = 256,
    show_progress_bar: bool = False,
) -> torch.Tensor:
    """L2-normalised text embeddings of every template filled with every name: ``(templates, names, dim)``.

    Texts are embedded in batches of similar token length: the pool holds names of very different lengths and
    each batch is padded to its longest member.  CLIP pools at the first end-of-text token under a causal
    mask, so the padding does not change the embeddings, only the cost.
    """
    texts = [template.format(name) for template in templates for name in candidate_names]
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True)["input_ids"]]
    order = sorted(range(len(texts)), key=lengths.__getitem__)
    sorted_texts = [texts[i] for i in order]
    chunks = []
    for start in tqdm(range(0, len(texts), batch_size), desc="Prompts", disable=not show_progress_bar):
        chunks.append(encode_texts(model, tokenizer, sorted_texts[start : start + batch_size], batch_size))
    sorted_embeddings = torch.cat(chunks)
    embeddings = torch.empty_like(sorted_embeddings)
    embeddings[torch.tensor(order)] = sorted_embeddings
    embeddings = torch.nn.functional.normalize(embeddings, dim=-1)
    return embeddings.view(len(templates), len(candidate_names), -1)


def embed_people(
    model: torch.nn.Module,
    image_processor,
    people: Mapping[str, Sequence[Image.Image]],
    *,
    batch_size: int = 128,
    show_progress_bar: bool = False,
) -> list[torch.Tensor]:
    """L2-normalised image embeddings per person (list in the order of ``people``), batched across people."""
    flat = [image for person_images in people.values() for image in person_images]
    chunks = []
    for start in tqdm(range(0, len(flat), batch_size), desc="Images", disable=not show_progress_bar):
        chunks.append(encode_images(model, image_processor, flat[start : start + batch_size], batch_size))
    embeddings = torch.nn.functional.normalize(torch.cat(chunks), dim=-1)
    return list(embeddings.split([len(person_images) for person_images in people.values()]))


# --------------------------------------------------------------------------------------------------- voting


def predict_candidates(
    image_embeddings: torch.Tensor, prompt_embeddings: torch.Tensor, *, chunk_size: int = 512
) -> torch.Tensor:
    """Top-1 candidate per image and prompt: ``(images, prompts)`` indexes, ``ABSTAIN`` on an exact tie.

    Args:
        image_embeddings: ``(images, dim)``, normalised.
        prompt_embeddings: ``(prompts, candidates, dim)``, normalised; cosine is then a dot product.

    An exact tie for the best score (two candidates whose prompt embeds identically, e.g. a collapsed text
    tower) would otherwise be broken by position in the pool and credit whoever comes first; the image
    abstains instead.
    """
    num_prompts, num_candidates, dim = prompt_embeddings.shape
    flat = prompt_embeddings.reshape(num_prompts * num_candidates, dim).T
    predictions = []
    for start in range(0, image_embeddings.shape[0], chunk_size):
        scores = (image_embeddings[start : start + chunk_size] @ flat).view(-1, num_prompts, num_candidates)
        if num_candidates == 1:
            predictions.append(torch.zeros(scores.shape[:2], dtype=torch.long, device=scores.device))
            continue
        top = scores.topk(2, dim=-1)
        best = top.indices[..., 0]
        predictions.append(torch.where(top.values[..., 0] == top.values[..., 1], ABSTAIN, best))
    return torch.cat(predictions)


def majority_vote(predictions: torch.Tensor, num_candidates: int) -> torch.Tensor:
    """Per prompt, the unique most frequent prediction over one person's images (``ABSTAIN`` on a tie).

    Args:
        predictions: ``(images, prompts)`` candidate indexes (or ``ABSTAIN``) for one person.
        num_candidates: size of the pool.

    Returns:
        ``(prompts,)`` winning candidate indexes, ``ABSTAIN`` where two or more candidates share the highest
        count (the protocol's "a tie counts as wrong") or where abstaining images form the largest group.
    """
    _, num_prompts = predictions.shape
    # Column 0 counts abstentions, column c + 1 counts candidate c.
    counts = torch.zeros(num_prompts, num_candidates + 1, dtype=torch.long, device=predictions.device)
    counts.scatter_add_(1, predictions.T + 1, torch.ones_like(predictions.T))
    top = counts.topk(2, dim=-1)
    return torch.where(top.values[:, 0] == top.values[:, 1], ABSTAIN, top.indices[:, 0] - 1)


def person_verdict(predictions: torch.Tensor, target: int, num_candidates: int,
                   min_correct_prompts: int) -> tuple[torch.Tensor, int, bool]:
    """The attack's rule for one person: ``(winners, correct prompts, detected)``.

    Each prompt's winner is the majority vote over the person's images; the person is detected when at least
    ``min_correct_prompts`` winners are their own name. Every IDIA figure in the package goes through here.
    """
    winners = majority_vote(predictions, num_candidates)
    correct = int((winners == target).sum())
    return winners, correct, correct >= min_correct_prompts


# --------------------------------------------------------------------------------------------------- result


def share_detected(detected: Mapping[str, bool], names: Iterable[str] | None, absent: str) -> float:
    """Share of ``names`` (default: all of ``detected``) whose flag is true; a name without one is an error that
    counts them (``absent`` says why they have none), never names them."""
    names = list(detected) if names is None else list(names)
    if not names:
        raise ValueError("tpr() needs at least one name.")
    unknown = sum(name not in detected for name in names)
    if unknown:
        raise ValueError(f"{unknown} of the {len(names)} names given to tpr() {absent}.")
    return sum(detected[name] for name in names) / len(names)


@dataclass
class PersonResult:
    """What the attack found for one person.

    Attributes:
        name: the person's name (a candidate in the pool).
        num_images: how many of their images voted.
        correct_prompts: number of prompts whose majority vote is this person.
        detected: ``correct_prompts >= min_correct_prompts``.
        prompt_predictions: per template, the majority-vote name, or ``None`` for a tie (or abstentions
            winning).
        prompt_vote_shares: per template, the share of images whose top-1 candidate is this person.
    """

    name: str
    num_images: int
    correct_prompts: int
    detected: bool
    prompt_predictions: list[str | None]
    prompt_vote_shares: list[float]


@dataclass
class IDIAResult:
    """The outcome of :func:`identity_inference_attack`; JSON via :meth:`to_dict` / :meth:`to_json`.

    Attributes:
        people: per-person results, in the order the images were given.
        templates: the prompt templates used (index ``i`` matches ``prompt_predictions[i]``).
        num_candidates: size of the name pool.
        min_correct_prompts: the detection threshold (τ).
        timings: seconds spent embedding texts, embedding images and voting (not serialised: it varies by
            run).
    """

    people: dict[str, PersonResult]
    templates: tuple[str, ...]
    num_candidates: int
    min_correct_prompts: int
    timings: dict[str, float] = field(default_factory=dict, compare=False, repr=False)

    @property
    def detected(self) -> dict[str, bool]:
        return {name: person.detected for name, person in self.people.items()}

    @property
    def correct_prompts(self) -> dict[str, int]:
        return {name: person.correct_prompts for name, person in self.people.items()}

    def tpr(self, names: Iterable[str] | None = None) -> float:
        """Share of ``names`` (default: everyone attacked) that the attack detected."""
        return share_detected(self.detected, names, "were not attacked (no images)")

    def to_pandas(self, per_prompt: bool = False):
        """One row per person (``name, num_images, correct_prompts, num_prompts, detected, mean_vote_share``),
        or with ``per_prompt=True`` one row per person and template (``name, template, prediction, correct,
        vote_share``)."""
        import pandas as pd

        if per_prompt:
            rows = [
                {
                    "name": person.name,
                    "template": template,
                    "prediction": prediction,
                    "correct": prediction == person.name,
                    "vote_share": share,
                }
                for person in self.people.values()
                for template, prediction, share in zip(
                    self.templates, person.prompt_predictions, person.prompt_vote_shares, strict=True
                )
            ]
            return pd.DataFrame(rows, columns=["name", "template", "prediction", "correct", "vote_share"])
        rows = [
            {
                "name": person.name,
                "num_images": person.num_images,
                "correct_prompts": person.correct_prompts,
                "num_prompts": len(self.templates),
                "detected": person.detected,
                "mean_vote_share": sum(person.prompt_vote_shares) / len(person.prompt_vote_shares),
            }
            for person in self.people.values()
        ]
        columns = ["name", "num_images", "correct_prompts", "num_prompts", "detected", "mean_vote_share"]
        return pd.DataFrame(rows, columns=columns)

    def summary(self, show_names: bool = True) -> str:
        """A readable table: one line per person (``#index`` instead of the name unless ``show_names``), then the
        detection rate."""
        header = ("person", "images", "correct prompts", "detected", "mean vote share")
        rows = [
            (
                person.name if show_names else f"#{index}",
                str(person.num_images),
                f"{person.correct_prompts}/{len(self.templates)}",
                "yes" if person.detected else "no",
                f"{sum(person.prompt_vote_shares) / len(person.prompt_vote_shares):.2f}",
            )
            for index, person in enumerate(self.people.values(), start=1)
        ]
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

        def line(row) -> str:
            cells = zip(row, widths, strict=True)
            return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells))

        detected = sum(person.detected for person in self.people.values())
        footer = (
            f"Detected {detected} of {len(self.people)} people (TPR {self.tpr():.3f}); "
            f"{len(self.templates)} prompts, {self.num_candidates} candidate names, "
            f"detected when >= {self.min_correct_prompts} prompt(s) vote right."
        )
        return "\n".join(
            [line(header), line(tuple("-" * width for width in widths)), *map(line, rows), footer]
        )

    def __str__(self) -> str:
        return self.summary()

    def __repr__(self) -> str:  # counts only: a result is often printed or logged, and holds the names
        detected = sum(person.detected for person in self.people.values())
        return f"IDIAResult(people={len(self.people)}, detected={detected}, templates={len(self.templates)})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "templates": list(self.templates),
            "num_candidates": self.num_candidates,
            "min_correct_prompts": self.min_correct_prompts,
            "tpr": self.tpr(),
            "people": [asdict(person) for person in self.people.values()],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IDIAResult:
        people = {person["name"]: PersonResult(**person) for person in data["people"]}
        return cls(people, tuple(data["templates"]), data["num_candidates"], data["min_correct_prompts"])

    def to_json(self, path: str | Path | None = None, indent: int = 2) -> str:
        """The result as JSON text; also written to ``path`` when given."""
        text = json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text


# ---------------------------------------------------------------------------------------------------- attack


def _attack_predictions(model, processor, people, candidate_names, templates, *, batch_size: int,
                        show_progress_bar: bool, timings: dict[str, float] | None = None):
    """``(predictions, images per person)``: each image's nearest candidate under each prompt (``predict_candidates``).

    Each prompt and image is embedded once; ``timings`` (when given) gets the text and image embedding seconds.
    """
    tokenizer, image_processor = processor_parts(processor)
    timings = {} if timings is None else timings
    with evaluation_mode(model):
        start = time.perf_counter()
        prompts = embed_prompts(model, tokenizer, candidate_names, templates, batch_size=batch_size,
                                show_progress_bar=show_progress_bar).to(model_device(model))
        timings["text_embedding_s"] = time.perf_counter() - start
        start = time.perf_counter()
        embeddings = embed_people(model, image_processor, people, batch_size=batch_size,
                                  show_progress_bar=show_progress_bar)
        timings["image_embedding_s"] = time.perf_counter() - start
    predictions = predict_candidates(torch.cat(embeddings).to(prompts.device), prompts)
    return predictions, [len(person) for person in embeddings]


def identity_inference_attack(
    model: torch.nn.Module,
    processor,
    images: Mapping[str, Sequence[Image.Image]] | Any,
    candidate_names: Sequence[str],
    *,
    templates: Sequence[str] | None = None,
    min_correct_prompts: int = 1,
    batch_size: int = 128,
    image_column: str = "image",
    name_column: str = "name",
    show_progress_bar: bool = False,
) -> IDIAResult:
    """Run the identity inference attack on a CLIP model.

    Args:
        model: a ``CLIPModel`` (anything with ``get_text_features`` and ``get_image_features``); runs on its
            device.
        processor: a ``CLIPProcessor`` (tokenizer + image processor).
        images: ``{name: [PIL.Image, ...]}`` or a ``datasets.Dataset`` with ``image_column`` and
            ``name_column``.
        candidate_names: the pool the model must pick from; must contain every person with images, once.  The
            protocol uses 1,000 names (the people under test plus plausible others) so that chance hits are
            rare.
        templates: prompt templates with one ``{}``; default ``IDIA_TEMPLATES`` (21 prompts).
        min_correct_prompts: τ, how many prompts must vote for the person for them to count as detected.
        batch_size: texts/images per forward pass.
        image_column, name_column: column names when ``images`` is a dataset.
        show_progress_bar: show progress while embedding (the 21,000 prompts of a full run take minutes on a
            CPU).

    Returns:
        An :class:`IDIAResult`.

    Raises:
        ValueError: an empty pool or image list, duplicate candidates, a person with images absent from the
            pool, an invalid template, or ``min_correct_prompts`` outside ``[1, len(templates)]``.
    """
    templates = validate_templates(IDIA_TEMPLATES if templates is None else templates)
    people = images_by_person(images, image_column=image_column, name_column=name_column)
    candidate_names = list(candidate_names) if not isinstance(candidate_names, str) else candidate_names
    index = _validate(people, candidate_names, len(templates), min_correct_prompts)
    timings: dict[str, float] = {}
    predictions, sizes = _attack_predictions(model, processor, people, candidate_names, templates,
                                             batch_size=batch_size, show_progress_bar=show_progress_bar,
                                             timings=timings)
    start = time.perf_counter()
    results: dict[str, PersonResult] = {}
    for name, person_predictions in zip(people, predictions.split(sizes), strict=True):
        target = index[name]
        winners, correct, detected = person_verdict(person_predictions, target, len(candidate_names),
                                                    min_correct_prompts)
        winners = winners.tolist()
        shares = (person_predictions == target).float().mean(dim=0).tolist()
        results[name] = PersonResult(
            name=name,
            num_images=len(person_predictions),
            correct_prompts=correct,
            detected=detected,
            prompt_predictions=[None if winner == ABSTAIN else candidate_names[winner] for winner in winners],
            prompt_vote_shares=shares,
        )
    timings["voting_s"] = time.perf_counter() - start
    return IDIAResult(results, templates, len(candidate_names), min_correct_prompts, timings)


def unlearning_report(
    before: IDIAResult, after: IDIAResult, removed: Iterable[str]
) -> dict[str, float | int]:
    """The paper's headline IDIA figures from an attack before and after unlearning on the same people.

    Returns TPR on the removed names before/after, and for everyone else: how many were detected before, how
    many of those are no longer detected (collateral damage, count and rate) and how many are newly detected.
    """
    removed = list(dict.fromkeys(removed))
    if set(before.people) != set(after.people):
        raise ValueError("before and after must attack the same people.")
    others = [name for name in before.people if name not in set(removed)]
    known_before = [name for name in others if before.people[name].detected]
    lost = sum(not after.people[name].detected for name in known_before)
    new = sum(after.people[name].detected and not before.people[name].detected for name in others)
    return {
        "tpr_removed_before": before.tpr(removed),
        "tpr_removed_after": after.tpr(removed),
        "num_others": len(others),
        "others_detected_before": len(known_before),
        "others_detected_after": sum(after.people[name].detected for name in others),
        "collateral_lost": lost,
        "collateral_rate": lost / len(known_before) if known_before else 0.0,
        "newly_detected": new,
    }


def attack_predictions(
    model: torch.nn.Module,
    processor,
    images: Mapping[str, Sequence[Image.Image]] | Any,
    candidate_names: Sequence[str],
    *,
    templates: Sequence[str] | None = None,
    batch_size: int = 128,
    show_progress_bar: bool = False,
) -> dict[str, list]:
    """The attack's raw votes, one row per image and prompt, as the ``idia`` ``evaluate`` module takes them.

    ``predictions``: the candidate the model picks ("" on an exact tie); ``references``: the person in the image;
    ``prompt_ids``: the template's index. ``evaluate.load(IDIA_METRIC_PATH).compute(**rows)`` then votes exactly
    as :func:`identity_inference_attack` does.
    """
    templates = validate_templates(IDIA_TEMPLATES if templates is None else templates)
    people = images_by_person(images)
    candidate_names = list(candidate_names)
    _validate(people, candidate_names, len(templates), 1)
    predictions, sizes = _attack_predictions(model, processor, people, candidate_names, templates,
                                             batch_size=batch_size, show_progress_bar=show_progress_bar)
    predictions = predictions.cpu()
    references = [name for name, size in zip(people, sizes, strict=True) for _ in range(size)]
    rows: dict[str, list] = {"predictions": [], "references": [], "prompt_ids": []}
    for reference, image_predictions in zip(references, predictions.tolist(), strict=True):
        for prompt_id, candidate in enumerate(image_predictions):
            rows["predictions"].append("" if candidate == ABSTAIN else candidate_names[candidate])
            rows["references"].append(reference)
            rows["prompt_ids"].append(prompt_id)
    return rows
