"""One place that knows how to get CLIP's *pooled, projected* embeddings out of the different model classes.

The method compares text embeddings after ``text_projection`` and before normalisation (docs/method.md);
``CLIPModel``, ``CLIPTextModelWithProjection`` and ``CLIPVisionModelWithProjection`` expose that tensor under
different names, and transformers 5 returns a model output from ``get_text_features``.  Everything in the
package goes through these functions so that training and evaluation measure the same thing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image
from transformers import PreTrainedModel


def text_embeddings(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None):
    """Pooled, projected, unnormalised text embeddings for a tokenised batch."""
    if hasattr(model, "get_text_features"):
        output = model.get_text_features(input_ids=input_ids, attention_mask=attention_mask)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    output = model(input_ids=input_ids, attention_mask=attention_mask)
    return output.text_embeds


def image_embeddings(model: PreTrainedModel, pixel_values: torch.Tensor) -> torch.Tensor:
    """Pooled, projected, unnormalised image embeddings for a batch of pixel values."""
    if hasattr(model, "get_image_features"):
        output = model.get_image_features(pixel_values=pixel_values)
        return output if isinstance(output, torch.Tensor) else output.pooler_output
    return model(pixel_values=pixel_values).image_embeds


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
