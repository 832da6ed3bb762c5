"""Tiny CLIP models and processors built entirely offline, for tests, benchmarks and the demo world.

Sizes follow transformers' own CLIP test configs: a few layers of width 32 train and run in milliseconds on a
CPU yet exercise exactly the code paths of a ViT-B/32 or ViT-L/14 checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from transformers import CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPProcessor, CLIPTokenizer

from .tokenization import train_clip_tokenizer

DEFAULT_CORPUS = (
    "a photo of a person",
    "a picture of a dog on the grass",
    "an image of a red car parked in the street",
    "a close up photo of a cat sleeping on a sofa",
    "two people walking along the beach at sunset",
    "a bowl of fresh fruit on a wooden table",
    "a mountain landscape with snow and a blue sky",
)

# Widths of real checkpoints' text towers, for benchmarks ("random weights from config").
TEXT_TOWER_SIZES = {
    "tiny": dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4),
    "small": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
    "vit-b-32": dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8),
    "vit-l-14": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12),
}
PROJECTION_DIMS = {"tiny": 32, "small": 64, "vit-b-32": 512, "vit-l-14": 768}


def build_tokenizer(corpus: Iterable[str] = DEFAULT_CORPUS, vocab_size: int = 1024) -> CLIPTokenizer:
    """A CLIP tokenizer trained on ``corpus`` (no download)."""
    return train_clip_tokenizer(corpus, vocab_size=vocab_size)


def tiny_clip_config(
    vocab_size: int,
    size: str = "tiny",
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 32,
    vision_layers: int = 2,
    max_position_embeddings: int = 77,
) -> CLIPConfig:
    """A ``CLIPConfig`` whose text tower has the widths of ``size`` (see ``TEXT_TOWER_SIZES``).

    ``projection_dim`` is set in ``text_config`` and ``vision_config`` as well as on the top level, because the
    standalone ``CLIPTextModelWithProjection`` reads it from the sub-config.
    """
    projection_dim = PROJECTION_DIMS[size]
    text_config = dict(
        vocab_size=vocab_size,
        max_position_embeddings=max_position_embeddings,
        projection_dim=projection_dim,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
        **TEXT_TOWER_SIZES[size],
    )
    vision_config = dict(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=vision_hidden_size,
        intermediate_size=vision_hidden_size * 2,
        num_hidden_layers=vision_layers,
        num_attention_heads=4,
        projection_dim=projection_dim,
    )
    return CLIPConfig(text_config=text_config, vision_config=vision_config, projection_dim=projection_dim)


def build_processor(tokenizer: CLIPTokenizer, image_size: int = 32) -> CLIPProcessor:
    """A ``CLIPProcessor`` with the PIL image processor (transformers 5's default one needs torchvision)."""
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def tiny_clip(
    corpus: Iterable[str] = DEFAULT_CORPUS, seed: int = 0, size: str = "tiny", image_size: int = 32, **config_kwargs
) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised tiny ``CLIPModel`` and its processor, deterministic for ``seed``."""
    tokenizer = build_tokenizer(corpus)
    config = tiny_clip_config(len(tokenizer), size=size, image_size=image_size, **config_kwargs)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    return model, build_processor(tokenizer, image_size=image_size)
