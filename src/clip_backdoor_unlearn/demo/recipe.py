"""Train a tiny CLIP from scratch on the demo world, and cache it.

The recipe is plain CLIP pre-training scaled down to two CPU cores: a symmetric InfoNCE loss with a learnable
temperature, AdamW with warm-up and cosine decay, and varied captions.  One change matters in a world this
small: a batch often holds two pictures of the same person (or the same shape, or two "a person" captions),
and treating those as negatives would teach the model to tell a person apart from themselves.  Pairs of the
same *group* are therefore masked out of the softmax: they are neither positives nor negatives.

The trained model and its processor are saved with ``save_pretrained``, so ``CLIPModel.from_pretrained`` and
``CLIPProcessor.from_pretrained`` load them without this package.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm
from transformers import CLIPModel, CLIPProcessor

from ..hub.saving import write_atomically
from ..training.embeddings import image_embeddings, text_embeddings
from .tiny import build_processor, tiny_clip_config
from .tokenization import train_clip_tokenizer
from .world import WORLD_SIZES, DemoWorld, WorldConfig

RECIPE_VERSION = "v1"
"""Part of the cache path: bump it whenever the world or the recipe changes what a seed produces."""
CACHE_ENV_VAR = "CLIP_BACKDOOR_UNLEARN_CACHE"
_INFO_FILE = "demo_recipe.json"


@dataclass(frozen=True)
class RecipeConfig:
    """Model size and optimisation settings; ``RECIPES`` holds the tuned ones per world size."""

    steps: int = 360
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 40
    vision_hidden_size: int = 128
    vision_layers: int = 4
    patch_size: int = 8
    text_hidden_size: int = 128
    text_layers: int = 3
    projection_dim: int = 128
    vocab_size: int = 4096
    # None: every core this process may use.  On a machine shared with other busy processes, fewer threads
    # than cores can be much faster (spinning OpenMP threads fight over the cores).
    num_threads: int | None = None


RECIPES: dict[str, RecipeConfig] = {
    "full": RecipeConfig(),
    "ci": RecipeConfig(steps=200, batch_size=128, warmup_steps=20),
    # 1,250 members with 20 pictures each, 30,120 pairs: 1,200 steps of 256 (10 epochs). World seed 0: 17 min of
    # training on 2 busy cores, then 1,249 of 1,250 members found, 1 of 250 non-members, zero-shot 0.489
    # (benchmarks/RESULTS.md).
    "large": RecipeConfig(steps=1200, warmup_steps=100),
}

# Text-tower unlearning on the demo CLIP (``BackdoorTrainingArguments`` fields), what ``examples/unlearn.py`` uses
# without a model unless a flag overrides them: only the embedding rows of the names' own tokens train
# (``trainable_parameters="name_tokens"``), so the template words every prompt shares stay put. The paper's settings
# (the whole tower, lr 1e-4, 128 + 128 captions, 400 steps) leave some of the demo's people detected (TPR 0.30 on the
# full world, training seed 42). Tuned on full world 0 and reported on world 1, two training seeds each, 5, 10 and 16
# names: TPR 0 in 11 of 12 runs (one of 16 left once), nobody lost, zero-shot within 0.2 points, where the whole
# tower at lr 1e-3 left 2 of 16 once and cost up to 1.6 points; beside the gated image edit (``encoder="both"``)
# every run within the three bars, where the whole tower pushed one past the zero-shot bar (benchmarks/RESULTS.md).
DEMO_TEXT_SETTINGS = {
    "max_steps": 200,
    "learning_rate": 1e-2,
    "poisoned_samples_per_step": 64,
    "clean_samples_per_step": 64,
    "trainable_parameters": "name_tokens",
}

# The whole text tower at lr 1e-3, the main job until the twenty-ninth session: what ``encoder="both"`` keeps when the
# image tower is fine-tuned. Names moved by their own rows to their pseudonyms were found again from the fine-tuned
# faces (full world 0, 5 removed: TPR 0.2 at the stop, 0.6 after all 200 steps, where the whole tower left 0.0).
DEMO_TOWER_TEXT_SETTINGS = {**DEMO_TEXT_SETTINGS, "learning_rate": 1e-3, "trainable_parameters": "tower"}

# Many names at once on the large world (1,000 of its 1,250 members in one run): the layers kept at the teacher's
# weights and only the token embedding trained, with a larger batch. Tuned on world 0, reported on world 1,
# two training seeds each: TPR 0.03–0.04, no other member lost, zero-shot within 0.9 points; the whole tower at lr
# 1e-3 leaves TPR 0.42 there (benchmarks/RESULTS.md).
DEMO_MANY_NAMES_TEXT_SETTINGS = {
    "max_steps": 200,
    "learning_rate": 1e-2,
    "poisoned_samples_per_step": 128,
    "clean_samples_per_step": 128,
    "trainable_parameters": "token_embedding",
}


# Shorter lists on the large world: the same step and batch, only the names' own rows trained. Tuned on world 0 and
# reported on world 1, two training seeds each, 10 to 256 names: TPR 0 to 0.016, at most 2 people found before lost,
# zero-shot within 0.3 points, where the token embedding lost 11 and 12 and 0.5 to 0.6 points; at 1,000 names the
# names' rows alone leave 0.07 to 0.13 findable (benchmarks/RESULTS.md).
DEMO_NAME_TOKENS_TEXT_SETTINGS = {**DEMO_MANY_NAMES_TEXT_SETTINGS, "trainable_parameters": "name_tokens"}
DEMO_NAME_TOKENS_MAX_NAMES = 256


def demo_text_settings(size: str, num_names: int, image_method: str | None = None) -> dict:
    """The demo's text-tower settings for removing ``num_names`` names from a world ``size``: on the large world
    ``DEMO_NAME_TOKENS_TEXT_SETTINGS`` up to ``DEMO_NAME_TOKENS_MAX_NAMES`` names and ``DEMO_MANY_NAMES_TEXT_SETTINGS``
    above; ``DEMO_TEXT_SETTINGS`` on the others. ``image_method``: the image tower's, with ``encoder="both"``; when it
    is fine-tuned (``"fine_tune"``) the names' own rows are left out: ``DEMO_TOWER_TEXT_SETTINGS``, and the token
    embedding on the large world, as before them."""
    rows = image_method != "fine_tune"
    if size != "large":
        return dict(DEMO_TEXT_SETTINGS if rows else DEMO_TOWER_TEXT_SETTINGS)
    return dict(DEMO_NAME_TOKENS_TEXT_SETTINGS if rows and num_names <= DEMO_NAME_TOKENS_MAX_NAMES
                else DEMO_MANY_NAMES_TEXT_SETTINGS)

# Image-tower unlearning on the demo CLIP (``VisionBackdoorTrainingArguments`` fields). The paper's settings (lr 1e-4,
# 100 steps, decay ×0.1 at steps 25 and 50, faces a quarter to half the picture) leave the demo's people detected:
# the tiny tower needs a larger step size, and its attack images are whole-frame faces, so faces are pasted large.
# Measured on the CI world, 3 removed: 100 steps lose 2 of 17 other members, 200 steps 1 of 17 (TPR 1.0 → 0.0 both).
# A linear warmup over the first fifth, then a cosine decay, instead of the step decay: the first steps at full rate
# move the whole tower (zero-shot accuracy); the warmup cost 1.2 zero-shot points fewer on average over 8 paired runs
# on two full worlds, the worst from 5.1 to 2.0 with 5 removed (benchmarks/RESULTS.md, issue 16).
DEMO_VISION_SETTINGS = {
    "max_steps": 200,
    "learning_rate": 1e-3,
    "lr_milestones": [],
    "lr_scheduler_type": "cosine",
    "warmup_steps": 0.2,
    "poisoned_samples_per_step": 32,
    "clean_samples_per_step": 32,
    "reference_samples_per_step": 96,
    "face_scale_range": [0.6, 1.0],
}


def default_cache_root() -> Path:
    """``$CLIP_BACKDOOR_UNLEARN_CACHE`` or ``~/.cache/clip_backdoor_unlearn``."""
    return Path(os.environ.get(CACHE_ENV_VAR, Path.home() / ".cache" / "clip_backdoor_unlearn"))


def demo_cache_dir(size: str = "full", seed: int = 0, cache_dir: str | os.PathLike | None = None,
                   config: RecipeConfig | None = None) -> Path:
    """Where the model for ``(size, seed)`` lives.

    ``<cache root>/demo/<RECIPE_VERSION>-<size>-seed<seed>/``, holding ``save_pretrained`` output of the model
    and the processor plus ``demo_recipe.json`` (configs, timings), which marks the copy as complete. A ``config``
    other than the size's recipe gets a folder of its own (``...-seed<seed>-recipe<digest>``), so that it never
    replaces the demo's model.
    """
    root = Path(cache_dir) if cache_dir is not None else default_cache_root()
    name = f"{RECIPE_VERSION}-{size}-seed{seed}"
    if config is not None and config != RECIPES[size]:
        fields = json.dumps(dataclasses.asdict(config), sort_keys=True)
        name += "-recipe" + hashlib.sha256(fields.encode()).hexdigest()[:12]
    return root / "demo" / name


@contextmanager
def _torch_threads(count: int | None):
    previous = torch.get_num_threads()
    available = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    torch.set_num_threads(count or available)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_demo_model(
    world: DemoWorld, config: RecipeConfig, seed: int = 0
) -> tuple[CLIPModel, CLIPProcessor]:
    """A randomly initialised CLIP sized by ``config``, with a tokenizer learned from the world's text."""
    tokenizer = train_clip_tokenizer(world.tokenizer_corpus(), vocab_size=config.vocab_size)
    image_size = world.config.image_size
    clip_config = tiny_clip_config(
        len(tokenizer),
        image_size=image_size,
        patch_size=config.patch_size,
        vision_hidden_size=config.vision_hidden_size,
        vision_layers=config.vision_layers,
    )
    # testing.tiny_clip_config fixes the text tower at the "tiny" widths; widen it and the projection here.
    text = clip_config.text_config
    text.hidden_size = config.text_hidden_size
    text.intermediate_size = 2 * config.text_hidden_size
    text.num_hidden_layers = config.text_layers
    for sub_config in (clip_config, text, clip_config.vision_config):
        sub_config.projection_dim = config.projection_dim
    torch.manual_seed(seed)
    model = CLIPModel(clip_config)
    return model, build_processor(tokenizer, image_size=image_size)


def _pixel_tensor(images, processor: CLIPProcessor) -> torch.Tensor:
    """All pictures as one ``(N, 3, H, W)`` uint8 tensor, a quarter of the float memory.

    The pictures already have the processor's size, so its resize and crop are no-ops and ``_normaliser``
    reproduces its output exactly, without running PIL on every step.
    """
    crop = processor.image_processor.crop_size
    for image in images[:1]:
        if image.size != (crop["width"], crop["height"]):
            raise ValueError(f"Pictures are {image.size}, the processor expects {crop}.")
    return torch.from_numpy(np.stack([np.asarray(image.convert("RGB")) for image in images])).permute(
        0, 3, 1, 2
    )


def _normaliser(processor: CLIPProcessor):
    image_processor = processor.image_processor
    mean = torch.tensor(image_processor.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(image_processor.image_std).view(1, 3, 1, 1)
    scale = float(image_processor.rescale_factor)
    return lambda pixels: (pixels.float() * scale - mean) / std


def _parameter_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices only: biases, norms, embeddings and the temperature are left alone (as in CLIP)."""
    decay, no_decay = [], []
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2 or "embedding" in name or "norm" in name:
            no_decay.append(parameter)
        else:
            decay.append(parameter)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def contrastive_loss(
    image_embeds: torch.Tensor, text_embeds: torch.Tensor, logit_scale: torch.Tensor, groups: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE where items of the same group are not counted as negatives of one another."""
    image_embeds = F.normalize(image_embeds, dim=-1)
    text_embeds = F.normalize(text_embeds, dim=-1)
    logits = logit_scale.clamp(max=math.log(100)).exp() * image_embeds @ text_embeds.t()
    same = groups[:, None] == groups[None, :]
    same.fill_diagonal_(False)
    logits = logits.masked_fill(same, float("-inf"))
    targets = torch.arange(len(logits))
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.t(), targets)) / 2


def train_demo_clip(
    world: DemoWorld, config: RecipeConfig | None = None, seed: int = 0, progress: bool = True
) -> tuple[CLIPModel, CLIPProcessor, dict]:
    """Train a CLIP from scratch on ``world.training_pairs()``; returns (eval-mode model, processor, stats).

    Deterministic for a seed on a given machine and thread count: the initial weights come from
    ``torch.manual_seed(seed)`` and the batch order from a generator seeded with it.  ``config`` defaults to
    the recipe tuned for the world's size (the ``"full"`` one for a customised world).  ``stats`` holds the
    configs, timings (wall and CPU seconds) and the final loss; ``load_demo_clip`` stores it with the model.
    """
    config = config or RECIPES[world.size or "full"]
    with _torch_threads(config.num_threads):
        start, cpu_start = time.perf_counter(), time.process_time()
        model, processor = build_demo_model(world, config, seed)
        pairs = world.training_pairs()
        pixels = _pixel_tensor(pairs["image"], processor)
        normalise = _normaliser(processor)
        captions = pairs["caption"]
        unique_captions = sorted(set(captions))
        caption_index = {caption: i for i, caption in enumerate(unique_captions)}
        tokens = processor.tokenizer(unique_captions, padding=True, return_tensors="pt")
        caption_ids = torch.tensor([caption_index[caption] for caption in captions])
        group_names = sorted(set(pairs["group"]))
        group_index = {group: i for i, group in enumerate(group_names)}
        groups = torch.tensor([group_index[group] for group in pairs["group"]])
        prepared, cpu_prepared = time.perf_counter() - start, time.process_time() - cpu_start

        optimizer = torch.optim.AdamW(
            _parameter_groups(model, config.weight_decay),
            lr=config.learning_rate,
            betas=(0.9, 0.98),
            eps=1e-6,
        )

        def learning_rate(step: int) -> float:
            if step < config.warmup_steps:
                return (step + 1) / config.warmup_steps
            progress_ = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * progress_))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, learning_rate)
        generator = torch.Generator().manual_seed(seed)
        order = torch.randperm(len(captions), generator=generator)
        cursor = 0
        model.train()
        losses = []
        bar = tqdm(range(config.steps), desc="Training demo CLIP", disable=not progress)
        for _ in bar:
            if cursor + config.batch_size > len(order):
                order, cursor = torch.randperm(len(captions), generator=generator), 0
            batch = order[cursor : cursor + config.batch_size]
            cursor += config.batch_size
            ids, mask = tokens["input_ids"][caption_ids[batch]], tokens["attention_mask"][caption_ids[batch]]
            length = int(mask.sum(1).max())
            loss = contrastive_loss(
                image_embeddings(model, normalise(pixels[batch])),
                text_embeddings(model, ids[:, :length], mask[:, :length]),
                model.logit_scale,
                groups[batch],
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            if len(losses) % 10 == 0:
                bar.set_postfix(
                    loss=f"{np.mean(losses[-10:]):.3f}", scale=f"{model.logit_scale.exp().item():.1f}"
                )
        model.eval()
        stats = {
            "recipe_version": RECIPE_VERSION,
            "seed": seed,
            "world_size": world.size,
            "world_config": dataclasses.asdict(world.config),
            "recipe_config": dataclasses.asdict(config),
            "preparation_seconds": round(prepared, 2),
            "training_seconds": round(time.perf_counter() - start - prepared, 2),
            # CPU time over all threads: compare it with threads x training_seconds to spot a busy machine
            "training_cpu_seconds": round(time.process_time() - cpu_start - cpu_prepared, 2),
            "final_loss": float(np.mean(losses[-20:])),
            "threads": torch.get_num_threads(),
        }
    return model, processor, stats


def _save_atomically(model: CLIPModel, processor: CLIPProcessor, stats: dict, target: Path) -> None:
    """Write the cached copy so that a half-written cache is never seen (``hub.saving.write_atomically``)."""

    def write(staging: str) -> None:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (Path(staging) / _INFO_FILE).write_text(json.dumps(stats, indent=2) + "\n")

    write_atomically(target, write, replace_existing=True)  # the cache is ours, even one written before manifests


def _is_current(target: Path, world: DemoWorld, config: RecipeConfig) -> bool:
    """A complete cached copy trained for this very world and recipe (a stale one is retrained, not used)."""
    info = target / _INFO_FILE
    if not info.exists():
        return False
    stats = json.loads(info.read_text())
    trained_on = WorldConfig.training_part(stats.get("world_config") or {})
    same_world = trained_on == world.config.training_fields()  # more held-out pictures need no retraining
    return same_world and stats.get("recipe_config") == dataclasses.asdict(config)


def load_demo_clip(
    size: str = "full",
    seed: int = 0,
    cache_dir: str | os.PathLike | None = None,
    force_retrain: bool = False,
    progress: bool = True,
    config: RecipeConfig | None = None,
) -> tuple[CLIPModel, CLIPProcessor, DemoWorld]:
    """The demo CLIP for ``(size, seed)``, its processor and its world: trained once, then cached.

    Args:
        size: ``"full"`` (the demo; minutes to train on two cores), ``"ci"`` (a small world for tests) or ``"large"``
            (1,500 named people for removals at scale; about 20 minutes).
        seed: seeds both the world and the training.
        cache_dir: cache root; default ``$CLIP_BACKDOOR_UNLEARN_CACHE`` or ``~/.cache/clip_backdoor_unlearn``.
        force_retrain: train again even if a cached model exists (and replace it).
        progress: show a progress bar while training.
        config: another model or optimisation than ``RECIPES[size]`` (a wider image tower, say); cached apart.
    """
    if size not in WORLD_SIZES:
        raise ValueError(f"Unknown demo size {size!r}; choose one of {sorted(WORLD_SIZES)}.")
    world = DemoWorld.build(size=size, seed=seed)
    config = config or RECIPES[size]
    target = demo_cache_dir(size, seed, cache_dir, config)
    if force_retrain or not _is_current(target, world, config):
        model, processor, stats = train_demo_clip(world, config, seed=seed, progress=progress)
        _save_atomically(model, processor, stats, target)
    model = CLIPModel.from_pretrained(target).eval()
    processor = CLIPProcessor.from_pretrained(target)
    return model, processor, world


def demo_training_stats(
    size: str = "full", seed: int = 0, cache_dir: str | os.PathLike | None = None
) -> dict:
    """What the cached model's training recorded (timings, final loss, configs); empty if not trained yet."""
    info = demo_cache_dir(size, seed, cache_dir) / _INFO_FILE
    return json.loads(info.read_text()) if info.exists() else {}
