"""Loading a CLIP checkpoint (Hub id or local directory) with the processor that goes with it.

A ``CLIPModel`` comes with a ``CLIPProcessor``; a standalone tower with its half of one (the tokenizer of a text
tower, the image processor of a vision tower). The PIL image processor is used where transformers 5's default
would need torchvision.

A text-only checkpoint is loaded as the class its config names (``architectures``), or, without one, as the class
its weights describe: ``text_projection`` weights → ``CLIPTextModelWithProjection``, none → ``CLIPTextModel``. A
projection is never invented (a freshly initialised one would make the "embedding" random). The text encoder of a
diffusers pipeline (``subfolder="text_encoder"``) has no tokenizer of its own: it is read from the pipeline's
``tokenizer`` folder (``text_encoder_2`` → ``tokenizer_2``; ``image_encoder`` → ``feature_extractor``).
"""

from __future__ import annotations

import json
import os

from safetensors import SafetensorError, safe_open
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModel,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)

# Tower checkpoints: (plain class, projected class, the projection's weight prefix).
TOWER_CLASSES = {
    CLIPTextConfig: (CLIPTextModel, CLIPTextModelWithProjection, "text_projection."),
    CLIPVisionConfig: (CLIPVisionModel, CLIPVisionModelWithProjection, "visual_projection."),
}
# A pipeline component folder → the sibling folder holding its preprocessing (diffusers' layout).
PIPELINE_PROCESSOR_FOLDERS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2",
                              "text_encoder_3": "tokenizer_3", "image_encoder": "feature_extractor"}


def _local_weight_names(directory: str) -> list[str] | None:
    """The tensor names of a local safetensors checkpoint (single file or sharded), or ``None`` if not local."""
    index = os.path.join(directory, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index, encoding="utf-8") as handle:
            return list(json.load(handle).get("weight_map", {}))
    single = os.path.join(directory, "model.safetensors")
    if os.path.isfile(single):
        try:
            with safe_open(single, framework="pt") as weights:
                return list(weights.keys())
        except (SafetensorError, OSError, ValueError):  # corrupt: loading the weights reports it
            return None
    return None


def model_class_for(name_or_path: str, config, subfolder: str = "") -> type[PreTrainedModel]:
    """The class to load: a ``CLIPModel``, or for a tower checkpoint the class it was saved as, never adding a head."""
    if isinstance(config, CLIPConfig):
        return CLIPModel
    if type(config) not in TOWER_CLASSES:
        raise TypeError(f"{name_or_path!r} holds a {type(config).__name__}; expected a CLIP model (CLIPConfig, "
                        "CLIPTextConfig or CLIPVisionConfig).")
    plain, projected, projection = TOWER_CLASSES[type(config)]
    architectures = set(getattr(config, "architectures", None) or ())
    if projected.__name__ in architectures:
        return projected
    if plain.__name__ in architectures:
        return plain
    names = _local_weight_names(os.path.join(name_or_path, subfolder)) if os.path.isdir(name_or_path) else None
    return projected if names and any(name.startswith(projection) for name in names) else plain


def _processor_folders(subfolder: str) -> list[str]:
    """Where a component's tokenizer / image processor may be: the pipeline's sibling folder first, then its own."""
    if not subfolder:
        return [""]
    parent, leaf = os.path.split(subfolder.rstrip("/"))
    sibling = PIPELINE_PROCESSOR_FOLDERS.get(leaf)
    return ([os.path.join(parent, sibling)] if sibling else []) + [subfolder]


def _first_loadable(load, name_or_path: str, folders: list[str], **hf_kwargs):
    error = None
    for folder in folders:
        try:
            return load(name_or_path, **({"subfolder": folder} if folder else {}), **hf_kwargs)
        except (OSError, ValueError, TypeError) as exc:  # no such folder / files there
            error = exc
    raise error


def load_processor(name_or_path: str, config, **hf_kwargs):
    """The CLIP processor of ``name_or_path``, or the half of one a standalone tower needs.

    ``subfolder`` (a diffusers pipeline component) is looked up as described in the module docstring.
    """
    folders = _processor_folders(hf_kwargs.pop("subfolder", "") or "")
    if isinstance(config, CLIPVisionConfig):
        return _first_loadable(CLIPImageProcessorPil.from_pretrained, name_or_path, folders, **hf_kwargs)
    tokenizer = _first_loadable(AutoTokenizer.from_pretrained, name_or_path, folders, **hf_kwargs)
    try:
        image_processor = _first_loadable(CLIPImageProcessorPil.from_pretrained, name_or_path, folders, **hf_kwargs)
    except (OSError, ValueError, TypeError):  # a text-only checkpoint has no preprocessor config
        return tokenizer
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def load_clip(name_or_path: str | os.PathLike, **hf_kwargs) -> tuple[PreTrainedModel, object]:
    """``(model, processor)`` from a Hub id or a saved directory, with clear errors for what is not a CLIP.

    ``hf_kwargs`` go to every ``from_pretrained`` call (``revision``, ``token``, ``cache_dir``, ``torch_dtype``,
    ``subfolder``…). ``subfolder="text_encoder"`` loads the text encoder of a diffusers pipeline with the
    pipeline's tokenizer.
    """
    name_or_path = os.fspath(name_or_path)
    subfolder = hf_kwargs.get("subfolder") or ""
    location = os.path.join(name_or_path, subfolder)
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(location, "config.json")):
        raise OSError(f"{location!r} has no config.json: it is not a saved model (missing or incomplete).")
    config_kwargs = {key: value for key, value in hf_kwargs.items() if key not in ("torch_dtype", "dtype")}
    config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
    model_class = model_class_for(name_or_path, config, subfolder)
    try:
        model = model_class.from_pretrained(name_or_path, **hf_kwargs)
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        raise OSError(f"Could not load the model weights from {name_or_path!r} (corrupt or incomplete "
                      f"checkpoint?): {error}") from error
    processor_kwargs = {key: value for key, value in config_kwargs.items() if key != "cache_dir" or value}
    return model, load_processor(name_or_path, config, **processor_kwargs)
