"""``BackdoorUnlearner``: the one-line API around ``BackdoorTrainer``.

    unlearner = BackdoorUnlearner.from_pretrained("openai/clip-vit-base-patch32")
    unlearner.unlearn(names=["First Last"])
    unlearner.save_pretrained("clip-sanitized")     # CLIPModel.from_pretrained loads it

It owns the things a user should not have to wire up: checking the names, building the backdoor data set,
holding on to the original model (the teacher, and the "before" of every evaluation), merging adapters, and saving
without ever touching the checkpoint it was loaded from.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from safetensors import SafetensorError
from transformers import (
    AutoConfig,
    AutoTokenizer,
    CLIPConfig,
    CLIPImageProcessorPil,
    CLIPModel,
    CLIPProcessor,
    CLIPTextModelWithProjection,
    PreTrainedModel,
)

from . import __version__
from .captions import default_captions
from .config import BackdoorTrainingArguments
from .names import validate_names
from .prompts import build_backdoor_dataset
from .saving import refuse_source_overwrite, write_atomically
from .towers import check_text_model
from .trainer import BackdoorTrainer

ENCODERS = ("text", "vision", "both")
UNLEARNING_CONFIG_NAME = "unlearning_config.json"
# Hyperparameters recorded with a sanitized checkpoint (never the names: those are what must not be published).
RECORDED_ARGUMENTS = (
    "max_steps", "learning_rate", "weight_decay", "poisoned_samples_per_step", "clean_samples_per_step",
    "backdoor_weight", "weight_regularization", "distance", "freeze_norm_layers", "lr_milestones", "lr_gamma",
    "person_prompt_ratio", "seed", "gradient_accumulation_steps",
)


@dataclass
class UnlearningResult:
    """What one ``unlearn`` call did: the training log, timing and (when evaluation data is given) metrics."""

    encoder: str
    num_names: int
    train_seconds: float
    seconds_per_step: float
    log_history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final_losses(self) -> dict[str, float]:
        """The last logged value of each loss part."""
        parts = ("loss", "utility_loss", "backdoor_loss", "weight_term")
        logged = [entry for entry in self.log_history if "backdoor_loss" in entry]
        return {part: logged[-1][part] for part in parts if logged and part in logged[-1]}


def _caption_list(captions: list[str] | Dataset | None) -> list[str]:
    if captions is None:
        return list(default_captions())
    if isinstance(captions, Dataset):
        column = next((name for name in ("caption", "text", "captions") if name in captions.column_names), None)
        if column is None:
            raise ValueError(f"The captions Dataset needs a 'caption' or 'text' column, has {captions.column_names}.")
        captions = captions[column]
    if isinstance(captions, str):
        raise TypeError("captions must be a list of captions or a datasets.Dataset, not a single string.")
    captions = [caption for caption in captions if isinstance(caption, str) and caption.strip()]
    if not captions:
        raise ValueError("The caption set is empty: give clean captions for the utility loss, or None for the default.")
    return captions


def _load_processor(name_or_path: str, **hf_kwargs):
    """The CLIP processor, with the PIL image processor where transformers 5's default would need torchvision."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **hf_kwargs)
    try:
        image_processor = CLIPImageProcessorPil.from_pretrained(name_or_path, **hf_kwargs)
    except OSError:  # a text-only checkpoint has no preprocessor config
        return tokenizer
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


class BackdoorUnlearner:
    """Remove named people from a CLIP model; see the module docstring.

    Attributes:
        model: the ``CLIPModel`` (or ``CLIPTextModelWithProjection``), sanitized after ``unlearn``.
        processor: a ``CLIPProcessor`` (tokenizer + image processor), or the tokenizer of a text-only model.
        original_model: the model as loaded, kept frozen as the teacher and the "before" of evaluations.
        peft_model: after an ``unlearn`` with ``peft_config``, the model with its trained adapter.
    """

    def __init__(self, model: PreTrainedModel, processor, source_dir: str | None = None):
        check_text_model(model)
        self.model = model.eval()
        self.processor = processor
        self.source_dir = source_dir
        self.original_model: PreTrainedModel | None = None
        self.peft_model = None
        self.unlearning_config: dict[str, Any] = {}
        # Kept in memory only: the names are what a sanitized checkpoint must not publish.
        self.removed_names: list[str] = []
        self.metrics: dict[str, Any] = {}

    @property
    def tokenizer(self):
        return getattr(self.processor, "tokenizer", self.processor)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **hf_kwargs) -> BackdoorUnlearner:
        """Load a ``CLIPModel`` (or a standalone ``CLIPTextModelWithProjection``) with its tokenizer and processor.

        ``hf_kwargs`` go to every ``from_pretrained`` call (``revision``, ``token``, ``cache_dir``, ``torch_dtype``…).
        """
        name_or_path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "config.json")):
            raise OSError(f"{name_or_path!r} has no config.json: it is not a saved model (missing or incomplete).")
        model_kwargs = dict(hf_kwargs)
        config_kwargs = {key: value for key, value in hf_kwargs.items() if key not in ("torch_dtype", "dtype")}
        config = AutoConfig.from_pretrained(name_or_path, **config_kwargs)
        model_class = CLIPModel if isinstance(config, CLIPConfig) else CLIPTextModelWithProjection
        try:
            model = model_class.from_pretrained(name_or_path, **model_kwargs)
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            raise OSError(f"Could not load the model weights from {name_or_path!r} (corrupt or incomplete "
                          f"checkpoint?): {error}") from error
        processor_kwargs = {key: value for key, value in config_kwargs.items() if key != "cache_dir" or value}
        processor = _load_processor(name_or_path, **processor_kwargs)
        return cls(model, processor, source_dir=name_or_path if os.path.isdir(name_or_path) else None)

    # Unlearning -----------------------------------------------------------------------------------------------

    def unlearn(
        self,
        names: list[str],
        *,
        encoder: str = "text",
        neutral_term: str = "a person",
        captions: list[str] | Dataset | None = None,
        peft_config=None,
        args: BackdoorTrainingArguments | None = None,
        **overrides,
    ) -> UnlearningResult:
        """Train a backdoor that maps each name to ``neutral_term`` in the text encoder.

        Args:
            names: the people to remove ("First Last"); blank or duplicate names are errors.
            encoder: which tower to sanitize; ``"text"`` (``"vision"`` and ``"both"`` are not available yet).
            neutral_term: what the names are mapped to (paper: "a person").
            captions: clean captions (``list[str]`` or a ``Dataset`` with a ``caption``/``text`` column); captions
                mentioning a name are dropped. ``None`` uses the caption set shipped with the package.
            peft_config: a PEFT config (e.g. ``peft.LoraConfig``) to train adapters instead of the whole tower.
            args: full ``BackdoorTrainingArguments``; ``overrides`` (any of its fields) are applied on top.
        """
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}; choose one of {ENCODERS}.")
        if encoder != "text":
            raise NotImplementedError(f"encoder={encoder!r} (image-tower unlearning) is not implemented yet; "
                                      "use encoder='text'.")
        max_length = self.tokenizer.model_max_length
        max_length = min(max_length, getattr(self._text_config, "max_position_embeddings", max_length))
        names = validate_names(names, neutral_term=neutral_term, tokenizer=self.tokenizer, max_length=max_length)
        caption_list = _caption_list(captions)
        args, scratch_dir = self._training_arguments(args, neutral_term=neutral_term, **overrides)

        dataset = build_backdoor_dataset(
            names, caption_list, neutral_term=neutral_term, num_steps=args.max_steps,
            poisoned_samples_per_step=args.poisoned_samples_per_step,
            clean_samples_per_step=args.clean_samples_per_step, person_prompt_ratio=args.person_prompt_ratio,
            seed=args.seed, tokenizer=self.tokenizer, max_length=max_length,
        )
        if self.original_model is None:
            self.original_model = copy.deepcopy(self.model).eval().requires_grad_(False)
        # The original model is the teacher of full fine-tuning (no extra copy); adapters use the disabled base.
        trainer = BackdoorTrainer(
            model=self.model,
            args=args,
            train_dataset=dataset,
            processing_class=self.tokenizer,
            teacher_model=self.original_model if peft_config is None else None,
            peft_config=peft_config,
        )
        start = time.perf_counter()
        try:
            trainer.train()
        finally:
            if scratch_dir is not None:
                shutil.rmtree(scratch_dir, ignore_errors=True)
        seconds = time.perf_counter() - start
        trained = trainer.accelerator.unwrap_model(trainer.model).eval()
        trained.requires_grad_(False)
        if peft_config is not None:
            self.peft_model = trained
            self.model = copy.deepcopy(trained).merge_and_unload().eval()
        else:
            self.model = trained
        self.unlearning_config = self._record(encoder, len(names), neutral_term, args, peft_config)
        self.removed_names = list(names)
        return UnlearningResult(
            encoder=encoder,
            num_names=len(names),
            train_seconds=seconds,
            seconds_per_step=seconds / max(1, trainer.state.global_step),
            log_history=list(trainer.state.log_history),
            config=self.unlearning_config,
        )

    @property
    def _text_config(self):
        return getattr(self.model.config, "text_config", self.model.config)

    def _training_arguments(self, args, *, neutral_term: str, **overrides):
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(BackdoorTrainingArguments)})
        if unknown:
            raise TypeError(f"Unknown training argument(s) {unknown}; see BackdoorTrainingArguments.")
        overrides["neutral_term"] = neutral_term
        scratch_dir = None
        if args is None:
            if "output_dir" not in overrides:
                scratch_dir = overrides["output_dir"] = tempfile.mkdtemp(prefix="clip-backdoor-unlearn-")
            overrides.setdefault("disable_tqdm", False)
            return BackdoorTrainingArguments(**overrides), scratch_dir
        return dataclasses.replace(args, **overrides), scratch_dir

    @staticmethod
    def _record(encoder, num_names, neutral_term, args, peft_config) -> dict[str, Any]:
        record = {
            "library": "clip-backdoor-unlearn",
            "library_version": __version__,
            "method": "student-teacher backdoor unlearning (arXiv 2310.08320)",
            "encoder": encoder,
            "num_removed_names": num_names,
            "neutral_term": neutral_term,
            "adapter": type(peft_config).__name__ if peft_config is not None else None,
            "hyperparameters": {name: getattr(args, name) for name in RECORDED_ARGUMENTS},
        }
        if peft_config is not None:
            record["hyperparameters"]["peft_type"] = str(getattr(peft_config, "peft_type", ""))
            record["hyperparameters"]["lora_r"] = getattr(peft_config, "r", None)
        return record

    def evaluate(self, names: list[str], **evaluation_data) -> dict[str, Any]:
        """Before/after figures of the last ``unlearn``: see ``evaluation.unlearning.evaluate_unlearning``.

        ``evaluation_data``: ``face_images`` + ``candidate_names`` (+ ``non_member_names``) for the IDIA,
        ``held_out_captions`` for SimClean, ``zero_shot_dataset`` (+ ``class_names``) for zero-shot accuracy.
        """
        from .evaluation.unlearning import evaluate_unlearning

        if self.original_model is None:
            raise ValueError("Nothing to compare yet: call unlearn() before evaluate().")
        evaluation_data.setdefault("neutral_term", self.unlearning_config.get("neutral_term", "a person"))
        self.metrics = evaluate_unlearning(self.original_model, self.model, self.processor, names, **evaluation_data)
        return self.metrics

    # Saving -----------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, merge_adapters: bool = True, **kwargs) -> str:
        """Write the sanitized model, tokenizer and processor to ``save_directory``, atomically.

        With ``merge_adapters=False`` (after a PEFT run) only the adapter is written, loadable with
        ``peft.PeftModel.from_pretrained(base_model, save_directory)``. Refuses to write into the directory the
        model was loaded from.
        """
        refuse_source_overwrite(save_directory, self.source_dir)
        if not merge_adapters and self.peft_model is None:
            raise ValueError("merge_adapters=False needs an unlearn() run with peft_config; there is no adapter.")
        model = self.model if merge_adapters else self.peft_model

        def write(directory: str) -> None:
            model.save_pretrained(directory, **kwargs)
            self.processor.save_pretrained(directory)
            if self.unlearning_config:
                with open(os.path.join(directory, UNLEARNING_CONFIG_NAME), "w", encoding="utf-8") as handle:
                    json.dump(self.unlearning_config, handle, indent=2, sort_keys=True)

        return write_atomically(save_directory, write)
