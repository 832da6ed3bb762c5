"""Which parameters make up a CLIP tower (text or vision), and how to get a frozen teacher copy of just that tower.

``CLIPModel`` and the standalone ``CLIP{Text,Vision}ModelWithProjection`` name a tower's weights identically
(``text_model.*`` + ``text_projection.*``, ``vision_model.*`` + ``visual_projection.*``), so one prefix rule serves
all of them, and a teacher built as a standalone tower loads the student's weights key for key — without copying
the other tower.

The plain ``CLIPTextModel`` (the text encoder of Stable Diffusion 1.x/2.x pipelines) and ``CLIPVisionModel`` have
no projection, and since transformers 5.6 no ``text_model.``/``vision_model.`` level either: their parameters are
``embeddings.*``, ``encoder.*``, ``final_layer_norm.*`` (``post_layernorm.*``). Every parameter of such a model
belongs to its tower, so the prefixes and LoRA targets are chosen per model (``prefixes_of``, ``lora_targets_of``);
the prefix rule alone would match nothing and train nothing.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import (
    CLIPModel,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPVisionConfig,
    CLIPVisionModel,
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
    lora_modules: str  # LoRA target regex, relative to the tower: see ``_LAYERS`` and ``_TOKENS``
    plain_class: type  # the tower without projection (CLIPTextModel, CLIPVisionModel): all its weights are the tower

    def is_plain(self, model: torch.nn.Module) -> bool:
        """Whether ``model`` (or the model inside a PEFT wrapper) is this tower alone, without projection."""
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        return isinstance(base, self.plain_class)

    def prefixes_of(self, model: torch.nn.Module) -> tuple[str, ...]:
        """The parameter-name prefixes of this tower in ``model``: every parameter (``""``) of a plain tower."""
        return ("",) if self.is_plain(model) else self.prefixes

    @property
    def lora_targets(self) -> str:
        """The LoRA target regex for this tower inside a ``CLIPModel`` or a projected standalone tower."""
        return rf".*{self.prefixes[0].rstrip('.')}\.({self.lora_modules})"

    def lora_targets_of(self, model: torch.nn.Module) -> str:
        """The LoRA target regex for this tower in ``model`` (a plain tower's modules are top-level and anchored, so
        nothing else can match)."""
        return f"({self.lora_modules})" if self.is_plain(model) else self.lora_targets

    def is_parameter(self, name: str, model: torch.nn.Module | None = None) -> bool:
        return name.startswith(self.prefixes if model is None else self.prefixes_of(model))

    def config_of(self, model: PreTrainedModel):
        config = getattr(model.config, self.config_attribute, model.config)
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(model).__name__} has no CLIP {self.name} tower; {self.name} unlearning needs a "
                            f"CLIPModel, a {self.standalone_class.__name__} or a {self.plain_class.__name__}.")
        return config

    def check_model(self, model: PreTrainedModel) -> None:
        """Fail early, with the fix in the message, on models whose tower cannot be trained."""
        if isinstance(model, (CLIPModel, self.standalone_class, self.plain_class)):
            return
        raise TypeError(
            f"{type(model).__name__} cannot be used for {self.name} unlearning: it needs a CLIPModel, a "
            f"{self.standalone_class.__name__} or a {self.plain_class.__name__}."
        )


# Attention and MLP projections of every encoder layer.
_LAYERS = r"encoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.fc1|mlp\.fc2)"
# The text tower's token embedding as well: a name is its tokens, and an adapter on the layers alone left some
# people findable on one demo world (benchmarks/RESULTS.md, "LoRA defaults").
_TOKENS = r"embeddings\.token_embedding"

TEXT = Tower("text", ("text_model.", "text_projection."), CLIPTextConfig, "text_config", CLIPTextModelWithProjection,
             f"{_LAYERS}|{_TOKENS}", CLIPTextModel)
VISION = Tower("vision", ("vision_model.", "visual_projection."), CLIPVisionConfig, "vision_config",
               CLIPVisionModelWithProjection, _LAYERS, CLIPVisionModel)

CLIP_MODEL_CLASSES = (CLIPModel, CLIPTextModelWithProjection, CLIPVisionModelWithProjection, CLIPTextModel,
                      CLIPVisionModel)


def check_clip_model(model: PreTrainedModel) -> None:
    """Any model one of the towers can train."""
    if not isinstance(model, CLIP_MODEL_CLASSES):
        raise TypeError(f"Expected a CLIPModel, CLIPTextModel(WithProjection) or CLIPVisionModel(WithProjection), "
                        f"got {type(model).__name__}.")


def is_norm_parameter(model: torch.nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), torch.nn.LayerNorm)


def is_token_embedding(name: str) -> bool:
    """The text tower's token embedding matrix (``text_model.embeddings.token_embedding.weight``, or without the
    ``text_model.`` level in a plain ``CLIPTextModel``)."""
    return re.search(rf"(^|\.){_TOKENS}\.weight$", name) is not None


def set_tower_trainable(model: PreTrainedModel, tower: Tower, freeze_norm_layers: bool = True,
                        token_embedding_only: bool = False) -> list[str]:
    """Train ``tower`` (optionally without its LayerNorms, or only its token embedding), freeze everything else;
    returns the trained names."""
    if token_embedding_only and tower is not TEXT:
        raise ValueError("trainable_parameters='token_embedding' trains the text tower's token embedding; the image "
                         "tower has none.")
    trained = []
    for name, parameter in model.named_parameters():
        train = tower.is_parameter(name, model) and not (freeze_norm_layers and is_norm_parameter(model, name))
        train = train and (is_token_embedding(name) or not token_embedding_only)
        parameter.requires_grad_(train)
        if train:
            trained.append(name)
    return trained


def name_token_ids(tokenizer, forms: Sequence[str]) -> list[int]:
    """The token ids ``forms`` (the names and their variants) tokenize to, special tokens left out, sorted."""
    ids = tokenizer(list(forms), add_special_tokens=False)["input_ids"] if forms else []
    return sorted({token for form_ids in ids for token in form_ids})


def train_token_rows(model: torch.nn.Module, token_ids: Sequence[int]) -> torch.utils.hooks.RemovableHandle:
    """Let only the rows ``token_ids`` of the text tower's token embedding learn: every other row's gradient is zeroed.

    With Adam and no weight decay the other rows keep their values exactly, so any text made of other tokens alone
    (a zero-shot prompt, a caption without a name) embeds as before. Returns the hook's handle.
    """
    weight = next(parameter for name, parameter in model.named_parameters() if is_token_embedding(name))
    rows = torch.as_tensor(list(token_ids), dtype=torch.long)
    if len(rows) == 0 or int(rows.min()) < 0 or int(rows.max()) >= weight.shape[0]:
        raise ValueError(f"The names' token ids must be rows of the {weight.shape[0]}-row token embedding.")
    mask = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    mask[rows.to(weight.device)] = 1
    return weight.register_hook(lambda grad: grad * mask)


def frozen_teacher(model: PreTrainedModel, tower: Tower) -> PreTrainedModel:
    """A frozen standalone copy of ``tower`` with the current weights of ``model``, in eval mode.

    A plain tower is all tower: its teacher is a copy of the whole model.
    """
    if tower.is_plain(model):
        return copy.deepcopy(model).requires_grad_(False).eval()
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


def plain_tower(model: PreTrainedModel, tower: Tower) -> PreTrainedModel:
    """A standalone plain ``CLIPTextModel``/``CLIPVisionModel`` with the weights of ``model``'s ``tower``.

    What a text-to-image pipeline uses as its text encoder; handy to sanitize the text tower of a ``CLIPModel`` for
    a pipeline, and for tests. The projection, if any, is dropped.
    """
    if tower.is_plain(model):
        return copy.deepcopy(model)
    attribute = f"{tower.name}_model"
    plain = tower.plain_class(tower.config_of(model)).to(dtype=next(model.parameters()).dtype)
    # transformers ≥ 5.6: model.text_model *is* a CLIPTextModel; before, both wrap a CLIPTextTransformer there.
    getattr(plain, attribute, plain).load_state_dict(getattr(model, attribute).state_dict(), strict=True)
    return plain.eval()
