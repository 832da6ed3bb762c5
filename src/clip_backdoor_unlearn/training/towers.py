"""Which parameters make up a CLIP tower (text or vision), and how to get a frozen teacher copy of just that tower.

``CLIPModel`` and the standalone ``CLIP{Text,Vision}ModelWithProjection`` name a tower's weights identically
(``text_model.*`` + ``text_projection.*``, ``vision_model.*`` + ``visual_projection.*``), so one prefix rule serves
all of them, and a teacher built as a standalone tower loads the student's weights key for key — without copying
the other tower.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import (
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModelWithProjection,
    PreTrainedModel,
)


@dataclass(frozen=True)
class Tower:
    """What the trainer needs to know about one CLIP tower."""

    name: str
    prefixes: tuple[str, ...]
    config_class: type
    config_attribute: str  # where a CLIPConfig keeps this tower's config
    standalone_class: type  # the projected standalone model, used for teachers
    lora_targets: str  # LoRA target regex: attention and MLP projections of every encoder layer

    def is_parameter(self, name: str) -> bool:
        return name.startswith(self.prefixes)

    def config_of(self, model: PreTrainedModel):
        config = getattr(model.config, self.config_attribute, model.config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(model).__name__} has no CLIP {self.name} tower; {self.name} unlearning needs a "
                            f"CLIPModel or a {self.standalone_class.__name__}.")
        return config

    def check_model(self, model: PreTrainedModel) -> None:
        """Fail early, with the fix in the message, on models whose tower cannot be trained."""
        if isinstance(model, (CLIPModel, self.standalone_class)):
            return
        raise TypeError(
            f"{type(model).__name__} cannot be used for {self.name} unlearning: it needs a CLIPModel or a "
            f"{self.standalone_class.__name__} (a tower without projection lacks the embedding the method compares)."
        )


def _layer_targets(prefix: str) -> str:
    return rf".*{prefix}\.encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc1|mlp\.fc2)"


TEXT = Tower("text", ("text_model.", "text_projection."), CLIPTextConfig, "text_config", CLIPTextModelWithProjection,
             _layer_targets(r"text_model"))
VISION = Tower("vision", ("vision_model.", "visual_projection."), CLIPVisionConfig, "vision_config",
               CLIPVisionModelWithProjection, _layer_targets(r"vision_model"))


def check_clip_model(model: PreTrainedModel) -> None:
    """Any model one of the towers can train."""
    if not isinstance(model, (CLIPModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection)):
        raise TypeError(f"Expected a CLIPModel, CLIPTextModelWithProjection or CLIPVisionModelWithProjection, got "
                        f"{type(model).__name__}.")


def is_norm_parameter(model: torch.nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), torch.nn.LayerNorm)


def set_tower_trainable(model: PreTrainedModel, tower: Tower, freeze_norm_layers: bool = True) -> list[str]:
    """Train ``tower`` (optionally without its LayerNorms), freeze everything else; returns the trained names."""
    trained = []
    for name, parameter in model.named_parameters():
        train = tower.is_parameter(name) and not (freeze_norm_layers and is_norm_parameter(model, name))
        parameter.requires_grad_(train)
        if train:
            trained.append(name)
    return trained


def frozen_teacher(model: PreTrainedModel, tower: Tower) -> PreTrainedModel:
    """A frozen standalone copy of ``tower`` with the current weights of ``model``, in eval mode."""
    config = tower.config_of(model)
    tower_state = {name: tensor for name, tensor in model.state_dict().items() if tower.is_parameter(name)}
    parameter = next(model.parameters())
    teacher = tower.standalone_class(config).to(dtype=parameter.dtype)
    missing, _ = teacher.load_state_dict(tower_state, strict=False)
    if missing:
        raise ValueError(f"The model's {tower.name} tower lacks {len(missing)} teacher weights, e.g. {missing[0]!r}.")
    teacher.to(device=parameter.device)
    teacher.requires_grad_(False)
    return teacher.eval()
