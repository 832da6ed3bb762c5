"""Loading a CLIP checkpoint (Hub id or local directory) with the processor that goes with it.

A ``CLIPModel`` comes with a ``CLIPProcessor``; a standalone tower with its half of one (the tokenizer of a text
tower, the image processor of a vision tower). The PIL image processor is used where transformers 5's default
would need torchvision.
"""

from __future__ import annotations

import os

from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)

MODEL_CLASSES = {
    CLIPConfig: CLIPModel,
    CLIPTextConfig: CLIPTextModelWithProjection,
    CLIPVisionConfig: CLIPVisionModelWithProjection,
}


def load_processor(name_or_path: str, config, **hf_kwargs):
    """The CLIP processor of ``name_or_path``, or the half of one a standalone tower needs."""
    if isinstance(config, CLIPVisionConfig):
        return CLIPImageProcessorPil.from_pretrained(name_or_path, **hf_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hf_kwargs)
    try:
        image_processor = CLIPImageProcessorPil.from_pretrained(name_or_path, **hf_kwargs)
    except OSError:  # a text-only checkpoint has no preprocessor config
        return tokenizer
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def load_clip(name_or_path: str | os.PathLike, **hf_kwargs) -> tuple[PreTrainedModel, object]:
    """``(model, processor)`` from a Hub id or a saved directory, with clear errors for what is not a CLIP.

    ``hf_kwargs`` go to every ``from_pretrained`` call (``revision``, ``token``, ``cache_dir``, ``torch_dtype``…).
    """
    name_or_path = os.fspath(name_or_path)
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "config.json")):
        raise OSError(f"{name_or_path!r} has no config.json: it is not a saved model (missing or incomplete).")
    config_kwargs = {key: value for key, value in hf_kwargs.items() if key not in ("torch_dtype", "dtype")}
    config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
    model_class = MODEL_CLASSES.get(type(config))
    if model_class is None:
        raise TypeError(f"{name_or_path!r} holds a {type(config).__name__}; expected a CLIP model (CLIPConfig, "
                        "CLIPTextConfig or CLIPVisionConfig).")
    try:
        model = model_class.from_pretrained(name_or_path, **hf_kwargs)
    except (OSError, RuntimeError, ValueError, SafetensorError) as error:
        raise OSError(f"Could not load the model weights from {name_or_path!r} (corrupt or incomplete "
                      f"checkpoint?): {error}") from error
    processor_kwargs = {key: value for key, value in config_kwargs.items() if key != "cache_dir" or value}
    return model, load_processor(name_or_path, config, **processor_kwargs)
