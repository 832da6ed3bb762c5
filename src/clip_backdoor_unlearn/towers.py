"""Which parameters make up a CLIP text tower, and how to get a frozen teacher copy of just that tower.

``CLIPModel`` and ``CLIPTextModelWithProjection`` name the tower's weights identically (``text_model.*`` and
``text_projection.*``), so one prefix rule serves both, and a teacher built as a standalone
``CLIPTextModelWithProjection`` loads the student's tower weights key for key — without copying the vision tower.
"""

from __future__ import annotations

import torch
from transformers import CLIPModel, CLIPTextConfig, CLIPTextModelWithProjection, PreTrainedModel

TEXT_TOWER_PREFIXES = ("text_model.", "text_projection.")
# LoRA targets for the text tower only: attention and MLP projections of every encoder layer.
TEXT_LORA_TARGETS = (
    r".*text_model\.encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc1|mlp\.fc2)"
)


def is_text_tower_parameter(name: str) -> bool:
    return name.startswith(TEXT_TOWER_PREFIXES)


def is_norm_parameter(model: torch.nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), torch.nn.LayerNorm)


def text_config_of(model: PreTrainedModel) -> CLIPTextConfig:
    config = model.config
    text_config = getattr(config, "text_config", config)
    if not isinstance(text_config, CLIPTextConfig):
        raise TypeError(
            f"Expected a CLIPModel or CLIPTextModelWithProjection, got {type(model).__name__} "
            f"with a {type(config).__name__}."
        )
    return text_config


def check_text_model(model: PreTrainedModel) -> None:
    """Fail early, with the fix in the message, on models the text unlearner cannot train."""
    if isinstance(model, (CLIPModel, CLIPTextModelWithProjection)):
        return
    raise TypeError(
        f"{type(model).__name__} has no projected text embedding; text unlearning needs a CLIPModel or a "
        "CLIPTextModelWithProjection (a plain CLIPTextModel lacks the projection the method compares)."
    )


def set_text_tower_trainable(model: PreTrainedModel, freeze_norm_layers: bool = True) -> list[str]:
    """Train the text tower (optionally without its LayerNorms), freeze everything else; returns trained names."""
    trained = []
    for name, parameter in model.named_parameters():
        train = is_text_tower_parameter(name) and not (freeze_norm_layers and is_norm_parameter(model, name))
        parameter.requires_grad_(train)
        if train:
            trained.append(name)
    return trained


def frozen_text_teacher(model: PreTrainedModel) -> CLIPTextModelWithProjection:
    """A frozen ``CLIPTextModelWithProjection`` with the current text-tower weights of ``model``, in eval mode."""
    text_config = text_config_of(model)
    tower_state = {name: tensor for name, tensor in model.state_dict().items() if is_text_tower_parameter(name)}
    parameter = next(model.parameters())
    teacher = CLIPTextModelWithProjection(text_config).to(dtype=parameter.dtype)
    missing, _ = teacher.load_state_dict(tower_state, strict=False)
    if missing:
        raise ValueError(f"The model's text tower lacks {len(missing)} teacher weights, e.g. {missing[0]!r}.")
    teacher.to(device=parameter.device)
    teacher.requires_grad_(False)
    return teacher.eval()
