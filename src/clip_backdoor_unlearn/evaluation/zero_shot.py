"""Zero-shot classification accuracy: the utility check that unlearning did not break CLIP for everyone else.

Standard CLIP protocol: each class is represented by the mean of its L2-normalised text embeddings over
several prompt templates, renormalised (prompt ensembling); an image is assigned the class of highest cosine;
the score is top-1 (and top-5) accuracy.  Images are streamed from the dataset in batches, so ImageNet-sized sets
need not fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from ..training.embeddings import encode_images, encode_texts, model_device, processor_parts
from .idia import evaluation_mode
from .templates import ZERO_SHOT_TEMPLATES, validate_templates, zero_shot_templates


@torch.no_grad()
def zero_shot_classifier(
    model: torch.nn.Module,
    tokenizer,
    class_names: Sequence[str],
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    *,
    batch_size: int = 256,
) -> torch.Tensor:
    """``(classes, dim)`` class embeddings: mean over templates of normalised text embeddings, renormalised.

    Averaging *normalised* embeddings gives every template an equal say, whatever its embedding norm.
    """
    templates = validate_templates(templates)
    if len(class_names) == 0:
        raise ValueError("class_names is empty.")
    texts = [template.format(name) for name in class_names for template in templates]
    embeddings = torch.nn.functional.normalize(encode_texts(model, tokenizer, texts, batch_size), dim=-1)
    embeddings = embeddings.view(len(class_names), len(templates), -1).mean(dim=1)
    return torch.nn.functional.normalize(embeddings, dim=-1)


def _class_names(dataset: Any, label_column: str, class_names: Sequence[str] | None) -> list[str]:
    if class_names is not None:
        return list(class_names)
    feature = getattr(dataset, "features", {}).get(label_column) if hasattr(dataset, "features") else None
    if feature is not None and hasattr(feature, "names"):
        return list(feature.names)
    raise ValueError(
        f"class_names is required: the dataset's {label_column!r} column is not a ClassLabel with names."
    )


def _batches(dataset: Any, columns: tuple[str, str], batch_size: int) -> Iterator[tuple[list, list]]:
    """(images, labels) batches from a ``datasets.Dataset`` or a mapping of equally long columns."""
    if isinstance(dataset, Mapping):
        missing = [column for column in columns if column not in dataset]
        length = len(dataset[columns[0]]) if not missing else 0
    else:
        missing = [column for column in columns if column not in dataset.column_names]
        length = len(dataset)
    if missing:
        raise ValueError(f"The dataset lacks the column(s) {missing}.")
    if length == 0:
        raise ValueError("The dataset is empty.")
    for start in range(0, length, batch_size):
        if isinstance(dataset, Mapping):
            yield (
                list(dataset[columns[0]][start : start + batch_size]),
                list(dataset[columns[1]][start : start + batch_size]),
            )
        else:
            batch = dataset[start : start + batch_size]
            yield list(batch[columns[0]]), list(batch[columns[1]])


def zero_shot_accuracy(
    model: torch.nn.Module,
    processor,
    dataset: Any,
    *,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 128,
) -> float:
    """Top-1 zero-shot accuracy of ``model`` on ``dataset``, in ``[0, 1]``: see ``zero_shot_topk_accuracy``."""
    return zero_shot_topk_accuracy(model, processor, dataset, class_names=class_names, templates=templates,
                                   image_column=image_column, label_column=label_column, batch_size=batch_size)[1]


def zero_shot_topk_accuracy(
    model: torch.nn.Module,
    processor,
    dataset: Any,
    *,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] | str = ZERO_SHOT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 128,
    top_k: Sequence[int] = (1,),
    show_progress_bar: bool = False,
) -> dict[int, float]:
    """``{k: top-k zero-shot accuracy}`` of ``model`` on ``dataset``, each in ``[0, 1]``.

    An image counts as correct at ``k`` when its class is among the ``k`` nearest class embeddings; a ``k`` not
    below the number of classes is left out (it would be 1 by construction).

    Args:
        model: a ``CLIPModel``; runs on its device.
        processor: its ``CLIPProcessor``.
        dataset: a ``datasets.Dataset`` (or a mapping of columns) with PIL images and labels.  Labels are
            class indexes, or class-name strings when ``class_names`` is given.
        class_names: the text of each class; defaults to ``dataset.features[label_column].names`` (a
            ClassLabel).
        templates: prompt templates with one ``{}``, ensembled per class, or the name of a set of
            ``templates.TEMPLATE_SETS`` (``"openai_imagenet_80"``: CLIP's 80-prompt ImageNet ensemble).
        image_column, label_column: column names.
        batch_size: images (and texts) per forward pass.
        top_k: the ``k`` to report.
        show_progress_bar: show progress over the image batches.
    """
    hits = zero_shot_hits(model, processor, dataset, class_names=class_names, templates=templates,
                          image_column=image_column, label_column=label_column, batch_size=batch_size, top_k=top_k,
                          show_progress_bar=show_progress_bar)
    return {k: int(correct.sum()) / len(correct) for k, correct in hits.items()}


def zero_shot_hits(
    model: torch.nn.Module,
    processor,
    dataset: Any,
    *,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] | str = ZERO_SHOT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 128,
    top_k: Sequence[int] = (1,),
    show_progress_bar: bool = False,
) -> dict[int, torch.Tensor]:
    """``{k: per image, whether its class is among the k nearest}`` (boolean, dataset order): what
    ``zero_shot_topk_accuracy`` averages, kept per image so that two models can be compared picture by picture
    (``paired_accuracy_change``). Arguments as there."""
    if isinstance(templates, str):
        templates = zero_shot_templates(templates)
    class_names = _class_names(dataset, label_column, class_names)
    ks = sorted({int(k) for k in top_k if 0 < int(k) < len(class_names) or int(k) == 1})
    rankings, labels = zero_shot_rankings(model, processor, dataset, class_names=class_names, templates=templates,
                                          image_column=image_column, label_column=label_column,
                                          batch_size=batch_size, k=max(ks), show_progress_bar=show_progress_bar)
    hits = rankings == labels.unsqueeze(1)
    return {k: hits[:, :k].any(dim=1) for k in ks}


def paired_accuracy_change(before: torch.Tensor, after: torch.Tensor) -> tuple[float, float]:
    """``(change, half_width)``: the accuracy change from ``before`` to ``after`` (per-image correctness of two
    models on the same pictures, ``zero_shot_hits``) and the half-width of its 95 % interval.

    Only pictures that one model gets right and the other wrong move the change, so their number sets its noise:
    the paired standard error is ``sqrt(b + c − (b − c)² / n) / n`` with ``b`` pictures lost and ``c`` gained. A
    change within the half-width of zero cannot be told from the luck of which pictures were drawn.
    """
    if before.shape != after.shape or before.ndim != 1 or len(before) == 0:
        raise ValueError("paired_accuracy_change needs two equally long, non-empty rows of per-image correctness.")
    before, after = before.bool(), after.bool()
    lost, gained, n = int((before & ~after).sum()), int((~before & after).sum()), len(before)
    error = max(lost + gained - (gained - lost) ** 2 / n, 0.0) ** 0.5 / n
    return (gained - lost) / n, 1.96 * error


def zero_shot_rankings(
    model: torch.nn.Module,
    processor,
    dataset: Any,
    *,
    class_names: Sequence[str] | None = None,
    templates: Sequence[str] = ZERO_SHOT_TEMPLATES,
    image_column: str = "image",
    label_column: str = "label",
    batch_size: int = 128,
    k: int = 5,
    show_progress_bar: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rankings, labels)``: per image the ``k`` nearest classes (nearest first) and the true class index.

    What the ``zero_shot`` ``evaluate`` module takes (``predictions=rankings.tolist(), references=labels.tolist()``).
    """
    if isinstance(templates, str):
        templates = zero_shot_templates(templates)
    class_names = _class_names(dataset, label_column, class_names)
    k = min(k, len(class_names))
    lookup = {name: index for index, name in enumerate(class_names)}
    tokenizer, image_processor = processor_parts(processor)
    device = model_device(model)
    rankings, all_labels, total = [], [], 0
    with evaluation_mode(model):
        classifier = zero_shot_classifier(model, tokenizer, class_names, templates, batch_size=batch_size).to(
            device
        )
        batches = _batches(dataset, (image_column, label_column), batch_size)
        length = len(dataset[image_column]) if isinstance(dataset, Mapping) else len(dataset)
        for images, labels in tqdm(batches, total=-(-length // batch_size), desc="zero-shot accuracy",
                                   disable=not show_progress_bar):
            labels = [
                lookup[label] if isinstance(label, str) and label in lookup else label for label in labels
            ]
            bad = [
                i
                for i, label in enumerate(labels)
                if isinstance(label, str) or not 0 <= int(label) < len(lookup)
            ]
            if bad:
                raise ValueError(
                    f"{len(bad)} label(s) in a batch starting at row {total} are neither a class index below "
                    f"{len(lookup)} nor one of class_names (batch offsets {bad[:10]})."
                )
            embeddings = encode_images(model, image_processor, images, batch_size).to(device)
            rankings.append((embeddings @ classifier.T).topk(k, dim=-1).indices.cpu())
            all_labels += [int(label) for label in labels]
            total += len(labels)
    return torch.cat(rankings), torch.tensor(all_labels)
