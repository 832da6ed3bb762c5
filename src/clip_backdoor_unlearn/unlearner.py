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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from huggingface_hub import CommitInfo, HfApi, ModelCard
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
    TrainerCallback,
)

from . import __version__
from .captions import default_captions
from .checkpoints import resolve_resume_checkpoint
from .config import BackdoorTrainingArguments, VisionBackdoorTrainingArguments
from .embeddings import encode_images
from .model_card import UnlearningCardData, build_model_card, hub_base_model
from .names import validate_names
from .privacy import ensure_no_names
from .prompts import build_backdoor_dataset
from .pseudonyms import anchor_captions, invent_pseudonyms
from .saving import refuse_source_overwrite, write_atomically
from .towers import TEXT, VISION, check_clip_model
from .trainer import BackdoorTrainer
from .variants import expand_variants, variant_mode
from .vision_data import (
    FaceAugmentation,
    VisionBackdoorCollator,
    build_vision_backdoor_dataset,
    faces_per_person,
    load_images,
)
from .vision_trainer import VisionBackdoorTrainer

ENCODERS = ("text", "vision", "both")
UNLEARNING_CONFIG_NAME = "unlearning_config.json"
# Hyperparameters recorded with a sanitized checkpoint (never the names: those are what must not be published).
MODEL_CLASSES = {
    CLIPConfig: CLIPModel,
    CLIPTextConfig: CLIPTextModelWithProjection,
    CLIPVisionConfig: CLIPVisionModelWithProjection,
}
_SHARED_ARGUMENTS = (
    "max_steps", "learning_rate", "weight_decay", "poisoned_samples_per_step", "clean_samples_per_step",
    "backdoor_weight", "weight_regularization", "distance", "freeze_norm_layers", "lr_milestones", "lr_gamma",
    "seed", "gradient_accumulation_steps",
)
RECORDED_ARGUMENTS = {
    "text": (*_SHARED_ARGUMENTS, "person_prompt_ratio"),
    "vision": (*_SHARED_ARGUMENTS, "reference_samples_per_step", "face_scale_range", "face_jitter", "face_hue",
               "face_rotation"),
}


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


@dataclass
class _TrainingJob:
    """One tower's training, fully prepared (and so fully validated) before any tower is trained."""

    tower: str
    names: list[str]
    trainer_class: type
    args: BackdoorTrainingArguments
    dataset: Dataset
    trainer_kwargs: dict[str, Any]
    scratch_dir: str | None = None
    # Extra entries for the unlearning config (counts and modes only, never names).
    record: dict[str, Any] = field(default_factory=dict)
    # Text tower: what each name is mapped to (the neutral term, or a pseudonym each). Never recorded or saved.
    neutral_terms: dict[str, str] | None = None


def _training_arguments(args_class, args, **overrides):
    """``args`` (or the class defaults) with ``overrides``; a scratch ``output_dir`` when none is given."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(args_class)})
    if unknown:
        raise TypeError(f"Unknown training argument(s) {unknown}; see {args_class.__name__}.")
    scratch_dir = None
    if args is None:
        if "output_dir" not in overrides:
            scratch_dir = overrides["output_dir"] = tempfile.mkdtemp(prefix="clip-backdoor-unlearn-")
        overrides.setdefault("disable_tqdm", False)
        return args_class(**overrides), scratch_dir
    if not isinstance(args, args_class):
        raise TypeError(f"Expected {args_class.__name__}, got {type(args).__name__}.")
    return dataclasses.replace(args, **overrides), scratch_dir


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


def _load_processor(name_or_path: str, config, **hf_kwargs):
    """The CLIP processor, with the PIL image processor where transformers 5's default would need torchvision.

    A standalone tower gets just its half: the tokenizer of a text model, the image processor of a vision model.
    """
    if isinstance(config, CLIPVisionConfig):
        return CLIPImageProcessorPil.from_pretrained(name_or_path, **hf_kwargs)
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
        check_clip_model(model)
        self.model = model.eval()
        self.processor = processor
        self.source_dir = source_dir
        self.original_model: PreTrainedModel | None = None
        self.peft_model = None
        self.unlearning_config: dict[str, Any] = {}
        # Kept in memory only: the names are what a sanitized checkpoint must not publish.
        self.removed_names: list[str] = []
        self.metrics: dict[str, Any] = {}
        self.target_embedding = None  # the anonymous face embedding of the last image-tower unlearning
        self.neutral_terms: dict[str, str] | None = None  # what each name maps to (pseudonyms are not saved)

    @property
    def tokenizer(self):
        """The tokenizer (``None`` for a standalone vision tower)."""
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        return tokenizer if hasattr(tokenizer, "tokenize") else None

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
        model_class = MODEL_CLASSES.get(type(config))
        if model_class is None:
            raise TypeError(f"{name_or_path!r} holds a {type(config).__name__}; expected a CLIP model (CLIPConfig, "
                            "CLIPTextConfig or CLIPVisionConfig).")
        try:
            model = model_class.from_pretrained(name_or_path, **model_kwargs)
        except (OSError, RuntimeError, ValueError, SafetensorError) as error:
            raise OSError(f"Could not load the model weights from {name_or_path!r} (corrupt or incomplete "
                          f"checkpoint?): {error}") from error
        processor_kwargs = {key: value for key, value in config_kwargs.items() if key != "cache_dir" or value}
        processor = _load_processor(name_or_path, config, **processor_kwargs)
        return cls(model, processor, source_dir=name_or_path if os.path.isdir(name_or_path) else None)

    # Unlearning -----------------------------------------------------------------------------------------------

    def unlearn(
        self,
        names: list[str],
        *,
        encoder: str = "text",
        neutral_term: str = "a person",
        pseudonyms: bool | None = None,
        captions: list[str] | Dataset | None = None,
        face_images: dict[str, list] | Dataset | None = None,
        reference_faces: list | Dataset | None = None,
        images: list | Dataset | None = None,
        peft_config=None,
        args: BackdoorTrainingArguments | None = None,
        vision_args: VisionBackdoorTrainingArguments | None = None,
        name_variants: str | dict[str, list[str]] | None = "auto",
        kept_names: Sequence[str] = (),
        resume_from_checkpoint: str | os.PathLike | bool | None = None,
        callbacks: Sequence[TrainerCallback] | None = None,
        **overrides,
    ) -> UnlearningResult:
        """Remove ``names`` from the text tower (names → ``neutral_term``), the image tower (faces → anonymous) or both.

        Every input is checked before any training starts, and errors name indexes, never the names.

        Args:
            names: the people to remove ("First Last"); blank names and duplicates (ignoring case and spacing) are
                errors, never silently merged, so a typo in a list is noticed.
            encoder: ``"text"``, ``"vision"`` or ``"both"``. ``"both"`` trains the text tower, then the image tower,
                each with its own paper defaults: the towers share no parameter and neither loss reads the other
                tower, so one joint run would cost the same and could not use both sets of defaults.
            neutral_term: what the names are mapped to (paper: "a person").
            pseudonyms: (text) map each name to an invented name of its own (``pseudonyms.invent_pseudonyms``)
                instead of ``neutral_term``. ``None`` (default): on with ``encoder="both"``, off otherwise. With both
                towers edited, "a person" and the anonymous face are the same point, so the anonymous face would
                retrieve the removed names first (measured: the attack then still finds everyone). The pseudonyms
                are drawn from ``args.seed``, kept in memory for ``evaluate`` and never saved or published.
            captions: clean captions (``list[str]`` or a ``Dataset`` with a ``caption``/``text`` column); captions
                mentioning a name are dropped. ``None`` uses the caption set shipped with the package.
            face_images: (vision) each removed person's face images: ``{name: [image, ...]}`` or a ``Dataset`` with
                ``image`` and ``name`` columns. Images are PIL images, file paths or ``datasets`` image dicts.
            reference_faces: (vision) many faces of *other* people: their mean embedding under the original model is
                the anonymous target, and they are held at the teacher's embedding while training.
            images: (vision) clean images for the utility loss, and the backgrounds faces are pasted on.
            peft_config: a PEFT config (e.g. ``peft.LoraConfig``) to train adapters instead of the whole tower.
            args: ``BackdoorTrainingArguments`` for the text tower, or ``VisionBackdoorTrainingArguments`` with
                ``encoder="vision"``. ``vision_args``: the image tower's arguments with ``encoder="both"``.
            name_variants: (text) also remove other spellings of each name. ``"auto"`` (default): case changes, the
                first or last name alone where distinctive, titles, possessive, "Last, First", "F. Last" and a few
                misspellings (``variants.name_variants``); ``None``/``"none"``: the names exactly as given; a dict
                ``{name: [nickname, ...]}`` adds your own variants to the generated ones.
            kept_names: (text) people who must stay findable. A variant that names one of them, or only part of one
                (a shared surname), is not removed, with a ``VariantConflictWarning`` giving counts and indexes.
            resume_from_checkpoint: a ``checkpoint-<step>`` directory of an interrupted run with the same arguments
                (``save_strategy="steps"``), or ``True`` for the latest complete one in ``output_dir``. Training
                continues from it and ends with the same model as an uninterrupted run. Checked before training.
            callbacks: ``transformers.TrainerCallback``s added to each tower's Trainer (e.g.
                ``callbacks.ForgetMonitorCallback``, which stops training once the people are forgotten).
            overrides: any training-argument fields, applied on top of ``args`` (and of ``vision_args``).
        """
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}; choose one of {ENCODERS}.")
        if encoder == "vision" and pseudonyms:
            raise ValueError("pseudonyms=True maps names in the text tower; encoder='vision' trains no text tower.")
        if encoder == "vision" and isinstance(args, VisionBackdoorTrainingArguments):
            args, vision_args = None, args
        jobs = []
        if encoder in ("text", "both"):
            # With "both", image-only fields (reference_samples_per_step, face_*) go to the image tower alone.
            text_fields = {f.name for f in dataclasses.fields(BackdoorTrainingArguments)}
            text_overrides = overrides if encoder == "text" else {
                key: value for key, value in overrides.items() if key in text_fields}
            use_pseudonyms = encoder == "both" if pseudonyms is None else bool(pseudonyms)
            jobs.append(self._text_job(names, neutral_term, captions, args, text_overrides, name_variants, kept_names,
                                       use_pseudonyms))
        if encoder in ("vision", "both"):
            jobs.append(self._vision_job(names, face_images, reference_faces, images, vision_args, overrides))
        names = jobs[0].names
        for job in jobs:
            job.trainer_kwargs["callbacks"] = list(callbacks or [])
        resume = self._check_outputs(jobs, resume_from_checkpoint)
        if self.original_model is None:
            self.original_model = copy.deepcopy(self.model).eval().requires_grad_(False)

        log_history, seconds, steps, peft_model = [], 0.0, 0, None
        for job in jobs:
            trainer, job_seconds = self._train(job, copy.deepcopy(peft_config), resume)
            log_history += [{**entry, "tower": job.tower} for entry in trainer.state.log_history]
            seconds, steps = seconds + job_seconds, steps + trainer.state.global_step
            trained = trainer.accelerator.unwrap_model(trainer.model).eval().requires_grad_(False)
            if peft_config is not None:
                peft_model = trained
                self.model = copy.deepcopy(trained).merge_and_unload().eval()
            else:
                self.model = trained
        # An adapter alone stands for one tower; after "both" only the merged model describes the change.
        self.peft_model = peft_model if len(jobs) == 1 else None
        self.unlearning_config = self._record(encoder, len(names), neutral_term, jobs, peft_config)
        self.neutral_terms = next((job.neutral_terms for job in jobs if job.tower == "text"), None)
        self.removed_names = list(names)
        self.target_embedding = next((job.trainer_kwargs["target_embedding"] for job in jobs if job.tower == "vision"),
                                     None)
        return UnlearningResult(
            encoder=encoder,
            num_names=len(names),
            train_seconds=seconds,
            seconds_per_step=seconds / max(1, steps),
            log_history=log_history,
            config=self.unlearning_config,
        )

    def _text_job(self, names, neutral_term, captions, args, overrides, name_variants="auto",
                  kept_names=(), pseudonyms=False) -> _TrainingJob:
        TEXT.check_model(self.model)
        if self.tokenizer is None:
            raise ValueError("Text unlearning needs a tokenizer; this model was loaded without one.")
        max_length = self.tokenizer.model_max_length
        max_length = min(max_length, getattr(TEXT.config_of(self.model), "max_position_embeddings", max_length))
        names = validate_names(names, neutral_term=neutral_term, tokenizer=self.tokenizer, max_length=max_length)
        variants = expand_variants(names, name_variants, kept_names=kept_names, neutral_term=neutral_term,
                                   tokenizer=self.tokenizer, max_length=max_length)
        caption_list = _caption_list(captions)
        args, scratch_dir = _training_arguments(BackdoorTrainingArguments, args, neutral_term=neutral_term,
                                                **overrides)
        targets = dict.fromkeys(names, neutral_term)
        if pseudonyms:
            # The pseudonyms avoid every word the model is trained on here and every name that must stay findable;
            # other invented people, held at the teacher, keep unknown names where they were (anchor_captions).
            reserved = [*caption_list, *kept_names, neutral_term]
            targets = invent_pseudonyms(names, seed=args.seed, reserved=reserved)
            caption_list = caption_list + anchor_captions(targets, seed=args.seed, reserved=reserved)
        dataset = build_backdoor_dataset(
            names, caption_list, neutral_term=targets, num_steps=args.max_steps,
            poisoned_samples_per_step=args.poisoned_samples_per_step,
            clean_samples_per_step=args.clean_samples_per_step, person_prompt_ratio=args.person_prompt_ratio,
            seed=args.seed, tokenizer=self.tokenizer, max_length=max_length, variants=variants,
        )
        record = {"name_variants": variant_mode(name_variants),
                  "num_name_variants": sum(len(forms) for forms in variants.values()), "pseudonyms": pseudonyms}
        return _TrainingJob("text", names, BackdoorTrainer, args, dataset, {"processing_class": self.tokenizer},
                            scratch_dir, record, targets if pseudonyms else None)

    def _vision_job(self, names, face_images, reference_faces, images, args, overrides) -> _TrainingJob:
        VISION.check_model(self.model)
        image_processor = getattr(self.processor, "image_processor", self.processor)
        if not hasattr(image_processor, "crop_size") and not hasattr(image_processor, "size"):
            raise ValueError("Vision unlearning needs an image processor; this model was loaded without one.")
        names = validate_names(names)
        faces_by_person = faces_per_person(face_images, names)
        references = load_images(reference_faces, "reference_faces", exclude_names=names)
        clean_images = load_images(images, "images")
        args, scratch_dir = _training_arguments(VisionBackdoorTrainingArguments, args, **overrides)
        faces = [face for person_faces in faces_by_person for face in person_faces]
        dataset = build_vision_backdoor_dataset(
            len(faces), len(clean_images), len(references), num_steps=args.max_steps,
            poisoned_samples_per_step=args.poisoned_samples_per_step,
            clean_samples_per_step=args.clean_samples_per_step,
            reference_samples_per_step=args.reference_samples_per_step, seed=args.seed,
        )
        augmentation = FaceAugmentation(scale_range=tuple(args.face_scale_range), jitter=args.face_jitter,
                                        hue=args.face_hue, rotation=args.face_rotation)
        collator = VisionBackdoorCollator(image_processor, faces, clean_images, references, augmentation)
        teacher = self.original_model or self.model
        target = encode_images(teacher, image_processor, references).mean(dim=0)
        kwargs = {"processing_class": image_processor, "data_collator": collator, "target_embedding": target}
        return _TrainingJob("vision", names, VisionBackdoorTrainer, args, dataset, kwargs, scratch_dir)

    def _check_outputs(self, jobs: list[_TrainingJob], resume_from_checkpoint) -> str | None:
        """Refuse checkpoints written into the source model, and resolve the checkpoint to resume from.

        On failure the scratch directories already made are removed, so a refused call leaves nothing behind.
        """
        try:
            if resume_from_checkpoint not in (None, False) and len(jobs) > 1:
                raise ValueError("resume_from_checkpoint resumes one tower's training; with encoder='both' resume "
                                 "the interrupted tower with its own encoder.")
            for job in jobs:
                if job.args.save_strategy != "no":
                    refuse_source_overwrite(job.args.output_dir, self.source_dir)
            return resolve_resume_checkpoint(resume_from_checkpoint, jobs[0].args.output_dir)
        except Exception:
            for job in jobs:
                if job.scratch_dir is not None:
                    shutil.rmtree(job.scratch_dir, ignore_errors=True)
            raise

    def _train(self, job: _TrainingJob, peft_config, resume: str | None = None) -> tuple[BackdoorTrainer, float]:
        # The original model is the teacher of full fine-tuning (no extra copy); adapters use the disabled base.
        trainer = job.trainer_class(
            model=self.model,
            args=job.args,
            train_dataset=job.dataset,
            teacher_model=self.original_model if peft_config is None else None,
            peft_config=peft_config,
            **job.trainer_kwargs,
        )
        start = time.perf_counter()
        try:
            trainer.train(resume_from_checkpoint=resume)
        finally:
            if job.scratch_dir is not None:
                shutil.rmtree(job.scratch_dir, ignore_errors=True)
        return trainer, time.perf_counter() - start

    @staticmethod
    def _record(encoder, num_names, neutral_term, jobs, peft_config) -> dict[str, Any]:
        record = {
            "library": "clip-backdoor-unlearn",
            "library_version": __version__,
            "method": "student-teacher backdoor unlearning (arXiv 2310.08320)",
            "encoder": encoder,
            "num_removed_names": num_names,
            "neutral_term": neutral_term if encoder != "vision" else None,
            "adapter": type(peft_config).__name__ if peft_config is not None else None,
        }
        for job in jobs:
            hyperparameters = {name: getattr(job.args, name) for name in RECORDED_ARGUMENTS[job.tower]}
            if peft_config is not None:
                hyperparameters["peft_type"] = str(getattr(peft_config, "peft_type", ""))
                hyperparameters["lora_r"] = getattr(peft_config, "r", None)
            # "hyperparameters" is the first (or only) tower's; "vision_hyperparameters" the second's with "both".
            record["vision_hyperparameters" if "hyperparameters" in record else "hyperparameters"] = hyperparameters
            record.update(job.record)
        return record

    def evaluate(self, names: list[str], **evaluation_data) -> dict[str, Any]:
        """Before/after figures of the last ``unlearn``: see ``evaluation.unlearning.evaluate_unlearning``.

        ``evaluation_data``: ``face_images`` + ``candidate_names`` (+ ``non_member_names``) for the IDIA,
        ``held_out_captions`` for SimClean, ``zero_shot_dataset`` (+ ``class_names``) for zero-shot accuracy.
        """
        from .evaluation.unlearning import evaluate_unlearning

        if self.original_model is None:
            raise ValueError("Nothing to compare yet: call unlearn() before evaluate().")
        evaluation_data.setdefault("neutral_term", self.neutral_terms or self.unlearning_config.get("neutral_term")
                                   or "a person")
        evaluation_data.setdefault("target_embedding", self.target_embedding)
        self.metrics = evaluate_unlearning(self.original_model, self.model, self.processor, names, **evaluation_data)
        return self.metrics

    # Saving -----------------------------------------------------------------------------------------------------

    # The Hub and model-card modules are imported where used: publishing is not on the path of training.
    # Files an earlier push may have left that would load instead of (or next to) the new weights:
    STALE_HUB_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack",
                       "model.safetensors.index.json", "adapter_config.json")

    def save_pretrained(self, save_directory: str | os.PathLike, merge_adapters: bool = True, *,
                        publish_names: bool = False, **kwargs) -> str:
        """Write the sanitized model, tokenizer, processor and model card (``README.md``), atomically.

        With ``merge_adapters=False`` (after a PEFT run) only the adapter is written, loadable with
        ``peft.PeftModel.from_pretrained(base_model, save_directory)``. Refuses to write into the directory the
        model was loaded from. The card states how many people were removed, never who: the finished directory is
        scanned for the names before it replaces anything (``privacy.ensure_no_names``). ``publish_names=True``
        lists the names in the card, on purpose.
        """
        if kwargs.get("push_to_hub"):
            raise TypeError("save_pretrained(push_to_hub=True) would publish the model without its card and the "
                            "check for names; call push_to_hub(repo_id) instead.")
        refuse_source_overwrite(save_directory, self.source_dir)
        model_name = os.path.basename(os.path.abspath(save_directory))
        card = self.model_card(merge_adapters=merge_adapters, publish_names=publish_names, model_name=model_name)
        return write_atomically(
            save_directory, lambda directory: self._write_checkpoint(directory, merge_adapters, card, publish_names,
                                                                     **kwargs))

    def model_card(self, *, merge_adapters: bool = True, publish_names: bool = False, model_name: str | None = None,
                   repo_id: str | None = None, base_model: str | None = None) -> ModelCard:
        """This checkpoint's ``huggingface_hub.ModelCard``: method, hyperparameters, count of removed people, metrics.

        The metrics are those of the last ``evaluate`` (none: the card says they were not measured). ``base_model``
        defaults to the Hub id the model was loaded from. The names appear only with ``publish_names=True``.
        """
        self._model_to_save(merge_adapters)  # the same error as saving, before anything is rendered
        data = UnlearningCardData.from_unlearning_config(
            self.unlearning_config,
            base_model=base_model or hub_base_model(self.original_model or self.model),
            model_name=model_name,
            repo_id=repo_id,
            adapter_only=not merge_adapters,
            metrics=dict(self.metrics),
            removed_names=list(self.removed_names) if publish_names else None,
            model_class=type(self.model).__name__,
        )
        return build_model_card(data)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | bool | None = None,
        merge_adapters: bool = True,
        publish_names: bool = False,
        commit_message: str = "Upload sanitized CLIP model (clip-backdoor-unlearn)",
        revision: str | None = None,
        base_model: str | None = None,
    ) -> CommitInfo:
        """Publish the sanitized model to the Hub, as ``save_pretrained`` writes it, in one commit.

        Creates the repository if needed (``private`` applies only then) and the branch ``revision`` if given.
        Weight files of an earlier push that this one does not rewrite (say a merged model after an adapter) are
        deleted in the same commit, so ``from_pretrained(repo_id)`` loads what was pushed. Nothing pushed, the
        repository name and commit message included, names a removed person unless ``publish_names=True``; earlier
        commits stay in the repository's history. Returns the ``CommitInfo`` (``.commit_url``, ``.oid``).
        """
        api = HfApi(token=token)
        if "/" not in repo_id:
            repo_id = f"{api.whoami()['name']}/{repo_id}"
        if not publish_names:
            ensure_no_names(self.removed_names, texts={"repo_id": repo_id, "commit_message": commit_message})
        card = self.model_card(merge_adapters=merge_adapters, publish_names=publish_names,
                               model_name=repo_id.split("/")[-1], repo_id=repo_id, base_model=base_model)
        with tempfile.TemporaryDirectory(prefix="clip-backdoor-unlearn-push-") as staging:
            self._write_checkpoint(staging, merge_adapters, card, publish_names)
            repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
            if revision is not None:
                api.create_branch(repo_id, branch=revision, exist_ok=True)
            return api.upload_folder(repo_id=repo_id, folder_path=staging, commit_message=commit_message,
                                     revision=revision, delete_patterns=list(self.STALE_HUB_FILES))

    def _model_to_save(self, merge_adapters: bool) -> PreTrainedModel:
        if not merge_adapters and self.peft_model is None:
            raise ValueError("merge_adapters=False needs an unlearn() run with peft_config; there is no adapter.")
        return self.model if merge_adapters else self.peft_model

    def _write_checkpoint(self, directory: str, merge_adapters: bool, card, publish_names: bool, **kwargs) -> None:

        self._model_to_save(merge_adapters).save_pretrained(directory, **kwargs)
        self.processor.save_pretrained(directory)
        if self.unlearning_config:
            with open(os.path.join(directory, UNLEARNING_CONFIG_NAME), "w", encoding="utf-8") as handle:
                json.dump(self.unlearning_config, handle, indent=2, sort_keys=True)
        card.save(os.path.join(directory, "README.md"))  # after the model: PEFT writes a card of its own
        if not publish_names:
            ensure_no_names(self.removed_names, directory=directory)
