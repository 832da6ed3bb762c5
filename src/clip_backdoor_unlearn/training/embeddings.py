"""One place that knows how to get CLIP's *pooled, projected* embeddings out of the different model classes.

The method compares text embeddings after ``text_projection`` and before normalisation (docs/method.md);
``CLIPModel``, ``CLIPTextModelWithProjection`` and ``CLIPVisionModelWithProjection`` expose that tensor under
different names, and transformers 5 returns a model output from ``get_text_features``.  Everything in the
package goes through these functions so that training and evaluation measure the same thing.

A plain ``CLIPTextModel``/``CLIPVisionModel`` has no projection: its "embedding" is the pooled output. What a
text-to-image pipeline consumes from a text encoder is the token sequence instead (``text_conditioning``): the
last hidden state of the prompt padded to ``model_max_length`` with no attention mask, as
``StableDiffusionPipeline.encode_prompt`` computes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from PIL import Image
from transformers import PreTrainedModel

ConditioningTarget = Literal["sequence", "pooled", "sequence+pooled"]


def text_embeddings(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """Pooled, projected, unnormalised text embeddings for a tokenised batch (pooled only, for a plain tower)."""
    if hasattr(model, "get_text_features"):
        output = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    output = model(input_ids=input_ids, attention_mask=attention_mask)
    return output.text_embeds if getattr(output, "text_embeds", None) is not None else output.pooler_output


def image_embeddings(model: PreTrainedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Pooled, projected, unnormalised image embeddings for a batch of pixel values (pooled only, plain tower)."""
    if hasattr(model, "get_image_features"):
        output = model.get_image_features(pixel_values=pixel_values)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    output = model(pixel_values=pixel_values)
    return output.image_embeds if getattr(output, "image_embeds", None) is not None else output.pooler_output


def text_conditioning(model: PreTrainedModel, input_ids: torch.Tensor,
                      target: ConditioningTarget = "sequence") -> torch.Tensor:
    """What a text-to-image pipeline reads from the text tower, for ids padded as the pipeline pads them.

    ``"sequence"``: the last hidden state ``(batch, length, hidden)``; ``"pooled"``: the pooled (end-of-text)
    output ``(batch, hidden)``; ``"sequence+pooled"``: both, the pooled output appended as one more position
    ``(batch, length + 1, hidden)`` (``conditioning_distance`` weighs the two halves equally). No attention mask
    is passed, as in the pipeline; works on a ``CLIPTextModel`` and on the text tower of the projected classes.
    """
    encoder = getattr(model, "text_model", model)  # CLIPModel / *WithProjection hold a CLIPTextModel (transformers 5)
    output = encoder(input_ids=input_ids)
    if target == "pooled":
        return output.pooler_output
    if target == "sequence":
        return output.last_hidden_state
    return torch.cat([output.last_hidden_state, output.pooler_output[:, None]], dim=1)


def pipeline_ids(tokenizer, texts: Sequence[str], max_length: int | None = None) -> torch.Tensor:
    """Token ids padded to ``model_max_length`` (77 for CLIP) with truncation, as ``StableDiffusionPipeline`` does."""
    length = max_length or tokenizer.model_max_length
    return tokenizer(list(texts), padding="max_length", max_length=length, truncation=True,
                     return_tensors="pt")["input_ids"]


@torch.no_grad()
def encode_conditioning(model: PreTrainedModel, tokenizer, texts: Sequence[str],
                        target: ConditioningTarget = "sequence", batch_size: int = 64,
                        max_length: int | None = None) -> torch.Tensor:
    """``text_conditioning`` of ``texts`` in batches, as the pipeline tokenises them; a float32 CPU tensor.

    Padded to ``max_length``, by default the tokenizer's ``model_max_length`` capped at the model's positions (a
    tokenizer saved without a limit reports a huge one).
    """
    device = model_device(model)
    config = getattr(model.config, "text_config", model.config)
    max_length = max_length or min(tokenizer.model_max_length, config.max_position_embeddings)
    chunks = [text_conditioning(model, pipeline_ids(tokenizer, texts[start : start + batch_size], max_length)
                                .to(device), target).float().cpu()
              for start in range(0, len(texts), batch_size)]
    if not chunks:
        raise ValueError("encode_conditioning got no texts to encode.")
    return torch.cat(chunks)


def processor_parts(processor) -> tuple[Any, Any]:
    """(tokenizer, image processor) of a ``CLIPProcessor``; a bare tokenizer or image processor stands for both."""
    return getattr(processor, "tokenizer", processor), getattr(processor, "image_processor", processor)


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def encode_texts(model: PreTrainedModel, tokenizer, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
    """Embed ``texts`` in batches, each padded only to its longest member; returns a float32 CPU tensor."""
    device = model_device(model)
    chunks = []
    for start in range(0, len(texts), batch_size):
        batch = tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt")
        chunks.append(text_embeddings(model, batch["input_ids"].to(device), batch["attention_mask"].to(device)))
    if not chunks:
        raise ValueError("encode_texts got no texts to embed.")
    return torch.cat(chunks).float().cpu()


@torch.no_grad()
def encode_images(model: PreTrainedModel, image_processor, images: Sequence[Image.Image], batch_size: int = 128):
    """Embed PIL ``images`` in batches; returns a float32 CPU tensor."""
    device = model_device(model)
    dtype = next(model.parameters()).dtype
    chunks = []
    for start in range(0, len(images), batch_size):
        batch = image_processor(images=[image.convert("RGB") for image in images[start : start + batch_size]],
                                return_tensors="pt")
        chunks.append(image_embeddings(model, batch["pixel_values"].to(device=device, dtype=dtype)))
    if not chunks:
        raise ValueError("encode_images got no images to embed.")
    return torch.cat(chunks).float().cpu()
