"""Embedding-similarity metrics of the defence paper: is the backdoor in place, and is the rest untouched?

* ``sim_backdoor``: the sanitised text encoder should embed "... <name> ..." like "... <neutral term> ...".
* ``sim_clean``: on captions without the names, the sanitised encoder should agree with the original.
* ``sim_to_target`` / ``sim_clean_images``: the image-side counterparts (faces → target embedding; clean
  images unchanged).

All compare the pooled, projected embeddings of :mod:`clip_backdoor_unlearn.embeddings` (what the trainer
optimises) with cosine similarity, pair by pair (row-wise), never as an N×N matrix.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from ..training.embeddings import encode_images, encode_texts, processor_parts
from .idia import evaluation_mode


def _rowwise_cosine(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(left, right, dim=-1)


def _require(items: Sequence, argument: str) -> None:
    if len(items) == 0:
        raise ValueError(f"{argument} is empty.")


def sim_backdoor(
    model: torch.nn.Module, tokenizer, pairs: Sequence[tuple[str, str, str]], *, batch_size: int = 256
) -> float:
    """Mean cosine between a caption with a name and the same caption with the neutral term, per name then
    overall.

    Args:
        model: the (sanitised) model: ``CLIPModel`` or ``CLIPTextModelWithProjection``.
        tokenizer: its tokenizer (or processor).
        pairs: ``(name, caption_with_name, caption_with_neutral_term)`` triples.

    Averaging per name first keeps a name with many captions from dominating.  1.0 means the backdoor maps the
    name exactly onto the neutral term.
    """
    _require(pairs, "pairs")
    names = [name for name, _, _ in pairs]
    tokenizer = processor_parts(tokenizer)[0]
    with evaluation_mode(model):
        with_name = encode_texts(model, tokenizer, [caption for _, caption, _ in pairs], batch_size)
        with_neutral = encode_texts(model, tokenizer, [caption for _, _, caption in pairs], batch_size)
    cosines = _rowwise_cosine(with_name, with_neutral)
    groups = {name: i for i, name in enumerate(dict.fromkeys(names))}
    group = torch.tensor([groups[name] for name in names])
    sums = torch.zeros(len(groups)).index_add_(0, group, cosines)
    counts = torch.zeros(len(groups)).index_add_(0, group, torch.ones_like(cosines))
    return (sums / counts).mean().item()


def sim_clean(
    original_model: torch.nn.Module,
    sanitized_model: torch.nn.Module,
    tokenizer,
    captions: Sequence[str],
    *,
    batch_size: int = 256,
) -> float:
    """Mean cosine of the original's and the sanitised model's embedding of each caption (1.0 = same)."""
    _require(captions, "captions")
    tokenizer = processor_parts(tokenizer)[0]
    with evaluation_mode(original_model, sanitized_model):
        original = encode_texts(original_model, tokenizer, captions, batch_size)
        sanitized = encode_texts(sanitized_model, tokenizer, captions, batch_size)
    return _rowwise_cosine(original, sanitized).mean().item()


def sim_to_target(
    model: torch.nn.Module,
    image_processor,
    images: Sequence[Image.Image],
    target_embedding: torch.Tensor,
    *,
    batch_size: int = 128,
) -> float:
    """Mean cosine between each image's embedding and ``target_embedding`` (shape ``(dim,)`` or ``(1, dim)``).

    For the image-side backdoor: the removed people's faces should land on the anonymous target embedding.
    """
    _require(images, "images")
    target = torch.as_tensor(target_embedding, dtype=torch.float32).detach().cpu().reshape(-1)
    with evaluation_mode(model):
        embeddings = encode_images(model, processor_parts(image_processor)[1], images, batch_size)
    if embeddings.shape[-1] != target.shape[0]:
        raise ValueError(
            f"target_embedding has {target.shape[0]} values, the model embeds in {embeddings.shape[-1]}."
        )
    return _rowwise_cosine(embeddings, target.expand_as(embeddings)).mean().item()


def sim_clean_images(
    original_model: torch.nn.Module,
    sanitized_model: torch.nn.Module,
    image_processor,
    images: Sequence[Image.Image],
    *,
    batch_size: int = 128,
) -> float:
    """Mean cosine of the original's and the sanitised model's embedding of each image (1.0 = same)."""
    _require(images, "images")
    image_processor = processor_parts(image_processor)[1]
    with evaluation_mode(original_model, sanitized_model):
        original = encode_images(original_model, image_processor, images, batch_size)
        sanitized = encode_images(sanitized_model, image_processor, images, batch_size)
    return _rowwise_cosine(original, sanitized).mean().item()
