"""Turning one ``unlearn`` call into fully prepared training jobs, one per tower, before anything is trained.

A job holds the tower's arguments, its backdoor data set and its Trainer's keyword arguments. Building every job
first means every input of a ``both`` run (names, captions, faces, arguments, output folders) is checked before
the first step of the first tower.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from datasets import Dataset
from transformers import PreTrainedModel

from ..data.captions import default_captions
from ..data.images import (
    FaceAugmentation,
    VisionBackdoorCollator,
    build_vision_backdoor_dataset,
    faces_per_person,
    kept_rows,
    load_images,
    reference_people,
)
from ..data.names import validate_names
from ..data.prompts import PERSON_TEMPLATES, build_backdoor_dataset, kept_name_prompts
from ..data.pseudonyms import anchor_captions, invent_pseudonyms
from ..data.variants import expand_variants, variant_mode
from ..evaluation.zero_shot import zero_shot_classifier
from ..hub.checkpoints import keyed_digest, resolve_resume_checkpoint
from ..hub.privacy import Scanner, fold
from ..hub.saving import refuse_source_overwrite
from .arguments import TEXT_STOP_RULES, BackdoorTrainingArguments, VisionBackdoorTrainingArguments
from .embeddings import encode_images
from .gated_neurons import gate_faces
from .stopping import NeutralTargetStopCallback
from .towers import TEXT, VISION, name_token_ids
from .trainer import BackdoorTrainer, resolve_text_target
from .vision_trainer import VisionBackdoorTrainer

logger = logging.getLogger(__name__)


@dataclass
class TrainingJob:
    """One tower's training, fully prepared (and so fully validated) before any tower is trained."""

    tower: str
    names: list[str]
    trainer_class: type | None  # None for an edit (``edit``)
    args: BackdoorTrainingArguments
    dataset: Dataset | None
    trainer_kwargs: dict[str, Any]
    scratch: bool = False  # no output_dir was given: the run makes a temporary one (scratch_output_dirs)
    # Extra entries for the run record (counts and modes only, never names).
    record: dict[str, Any] = field(default_factory=dict)
    # Text tower: what each name is mapped to (the neutral term, or a pseudonym each). Never recorded or saved.
    neutral_terms: dict[str, str] | None = None
    # Every spelling trained on (the names' variants): kept out of everything written, never recorded.
    variants: list[str] = field(default_factory=list)
    # Text tower: the people who must stay findable (the face-free retrieval measure ranks names against them).
    kept_names: list[str] = field(default_factory=list)
    # Text tower: clean captions held out of training, for the stop rule's gate (early_stop_clean_similarity).
    held_out_captions: list[str] = field(default_factory=list)
    # An edit that trains nothing (image_method="gated_neurons"): changes the model in place, returns what to log.
    edit: Callable[[PreTrainedModel], dict[str, float]] | None = None


def training_arguments(args_class, args, **overrides):
    """``args`` (or the class defaults) with ``overrides``, and whether the job needs a scratch ``output_dir``: one is
    made for the run by ``scratch_output_dirs`` when neither ``args`` nor ``overrides`` name one."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(args_class)})
    if unknown:
        raise TypeError(f"Unknown training argument(s) {unknown}; see {args_class.__name__}.")
    if overrides.get("push_to_hub") or getattr(args, "push_to_hub", False):
        raise TypeError("push_to_hub=True in the training arguments would publish checkpoints unscanned (with the "
                        "training arguments); train, then call BackdoorUnlearner.push_to_hub(repo_id).")
    if args is None:
        overrides.setdefault("disable_tqdm", False)
        return args_class(**overrides), "output_dir" not in overrides
    if not isinstance(args, args_class):
        raise TypeError(f"Expected {args_class.__name__}, got {type(args).__name__}.")
    return dataclasses.replace(args, **overrides), False


@contextmanager
def scratch_output_dirs(jobs: Sequence[TrainingJob]):
    """For the length of a run, a temporary ``output_dir`` for each job that needs one (``TrainingJob.scratch``),
    removed on leaving, whether the run ended or failed: a refused or interrupted call leaves nothing behind."""
    made: list[str] = []
    try:
        for job in jobs:
            if job.scratch:
                made.append(tempfile.mkdtemp(prefix="clip-backdoor-unlearn-"))
                job.args = dataclasses.replace(job.args, output_dir=made[-1])
        yield jobs
    finally:
        for directory in made:
            shutil.rmtree(directory, ignore_errors=True)


def caption_list(captions: list[str] | Dataset | None) -> list[str]:
    """Clean captions as a list: the package's set for ``None``, the ``caption``/``text`` column of a ``Dataset``."""
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


def text_job(model: PreTrainedModel, tokenizer, names: Sequence[str], *, neutral_term: str, captions, args,
             overrides: dict[str, Any], name_variants="auto", kept_names: Sequence[str] = (),
             pseudonyms: bool = False, previous_names: Sequence[str] = (),
             previous_variants: Sequence[str] = ()) -> TrainingJob:
    """The text tower's job: names (and their variants) → ``neutral_term`` or a pseudonym each."""
    TEXT.check_model(model)
    if tokenizer is None:
        raise ValueError("Text unlearning needs a tokenizer; this model was loaded without one.")
    max_length = tokenizer.model_max_length
    max_length = min(max_length, getattr(TEXT.config_of(model), "max_position_embeddings", max_length))
    names = validate_names(names, neutral_term=neutral_term, tokenizer=tokenizer, max_length=max_length)
    variants = expand_variants(names, name_variants, kept_names=kept_names, neutral_term=neutral_term,
                               tokenizer=tokenizer, max_length=max_length)
    captions = caption_list(captions)
    args, scratch = training_arguments(BackdoorTrainingArguments, args, neutral_term=neutral_term, **overrides)
    if previous_names:
        # Captions naming someone removed earlier are dropped (they are not clean), and person prompts naming each of
        # them are held at the teacher, which is the model after the earlier runs: that keeps them forgotten.
        earlier = Scanner(previous_names, variants=previous_variants)
        captions = [caption for caption in captions if not earlier.name_in(caption)]
    captions, held_out = hold_out_captions(captions, args)
    if previous_names:
        captions += [template.format(name) for name in previous_names for template in PERSON_TEMPLATES]
    # The budget is resolved once, here: the data set, the schedule, the Trainer and the record all read max_steps.
    args = args.for_names(len(names))
    if kept_names and args.kept_prompts_per_name:
        captions = captions + kept_name_prompts(kept_names, per_name=args.kept_prompts_per_name, seed=args.seed)
    targets = dict.fromkeys(names, neutral_term)
    if pseudonyms:
        # The pseudonyms avoid every word the model is trained on here and every name that must stay findable;
        # other invented people, held at the teacher, keep unknown names where they were (anchor_captions).
        reserved = [*captions, *kept_names, neutral_term]
        targets = invent_pseudonyms(names, seed=args.seed, reserved=reserved)
        captions = captions + anchor_captions(targets, seed=args.seed, reserved=reserved)
    dataset = build_backdoor_dataset(
        names, captions, neutral_term=targets, num_steps=args.max_steps,
        poisoned_samples_per_step=args.poisoned_samples_per_step,
        clean_samples_per_step=args.clean_samples_per_step, person_prompt_ratio=args.person_prompt_ratio,
        seed=args.seed, tokenizer=tokenizer, max_length=max_length, variants=variants,
    )
    record = {"name_variants": variant_mode(name_variants),
              "num_name_variants": sum(len(forms) for forms in variants.values()), "pseudonyms": pseudonyms,
              "text_target": resolve_text_target(args.text_target, model)}
    if stop_rule_on(args):
        record["early_stop_held_out_captions"] = len(held_out)
    forms = [form for forms in variants.values() for form in forms]
    trainer_kwargs = {"processing_class": tokenizer}
    if args.trainable_parameters == "name_tokens":
        trainer_kwargs["trainable_token_ids"] = name_token_ids(tokenizer, [*names, *forms])
    return TrainingJob(TEXT.name, names, BackdoorTrainer, args, dataset, trainer_kwargs, scratch, record,
                       targets if pseudonyms else None, forms, list(kept_names), held_out)


def stop_rule_on(args: BackdoorTrainingArguments) -> bool:
    """Whether any face-free stop rule watches the text tower's training."""
    return getattr(args, "early_stop", True) and any(getattr(args, rule) is not None for rule in TEXT_STOP_RULES)


def hold_out_captions(captions: list[str], args: BackdoorTrainingArguments) -> tuple[list[str], list[str]]:
    """``(training captions, held-out captions)``: the stop rule's clean-caption gate reads captions training never
    sees (every copy of a held-out caption leaves the training set), ``early_stop_clean_captions`` of them at most,
    an eighth of the distinct captions at most, drawn with ``seed``. Nothing is held out when no rule or no gate is
    on."""
    if not stop_rule_on(args) or args.early_stop_clean_similarity is None:
        return captions, []
    distinct = list(dict.fromkeys(captions))
    count = min(args.early_stop_clean_captions, len(distinct) // 8)
    chosen = set(random.Random(args.seed).sample(range(len(distinct)), count))
    held_out = [caption for index, caption in enumerate(distinct) if index in chosen]
    excluded = set(held_out)
    return [caption for caption in captions if caption not in excluded], held_out


FEW_FACE_IMAGES = 20
"""Fewer face images of a removed person than this and fresh pictures of them are often still identified: on the
demo worlds 40 a person (20 on the large world) met the bars; 5 a person left 2 to 8 of 16 findable after
fine-tuning, 1 to 11 after the gated edit (0 to 4 with ``gated_read_prior="within_person"``)."""


def warn_few_face_images(faces_by_person: Sequence[Sequence]) -> int:
    """Warn, by index, about removed people with fewer than ``FEW_FACE_IMAGES`` pictures; the fewest a person."""
    counts = [len(person) for person in faces_by_person]
    few = [index for index, count in enumerate(counts) if count < FEW_FACE_IMAGES]
    if few:
        shown = ", ".join(f"names[{index}]" for index in few[:10]) + (", ..." if len(few) > 10 else "")
        logger.warning(f"{len(few)} of the {len(counts)} removed people have fewer than {FEW_FACE_IMAGES} face images "
                       f"({shown}; the fewest: {min(counts)}). With 5 a person, up to half of 16 people stayed "
                       "identifiable from pictures not given on the demo worlds: give every picture you have, and run "
                       "evaluate() on pictures held out of training.")
    return min(counts)


def vision_job(model: PreTrainedModel, image_processor, teacher: PreTrainedModel, names: Sequence[str], *,
               face_images, reference_faces, images, args, overrides: dict[str, Any], tokenizer=None) -> TrainingJob:
    """The image tower's job: the removed people's pasted faces lose their names (``face_target="name"``, read with
    ``tokenizer`` and the teacher's text tower) or move to the mean embedding of ``reference_faces`` (``"mean"``)."""
    VISION.check_model(model)
    for rule in TEXT_STOP_RULES:
        if overrides.get(rule, getattr(args, rule, None)) is not None:
            raise ValueError(f"{rule} is the text tower's stop rule (it embeds the names); for the image tower pass "
                             "callbacks=[ForgetMonitorCallback(...)], which attacks with faces.")
    if overrides.get("trainable_parameters", getattr(args, "trainable_parameters", "tower")) != "tower":
        raise ValueError("trainable_parameters='token_embedding' and 'name_tokens' train the text tower's token "
                         "embedding; the image tower trains every weight ('tower').")
    if not hasattr(image_processor, "crop_size") and not hasattr(image_processor, "size"):
        raise ValueError("Vision unlearning needs an image processor; this model was loaded without one.")
    names = validate_names(names)
    faces_by_person = faces_per_person(face_images, names)
    fewest = warn_few_face_images(faces_by_person)
    if isinstance(reference_faces, Dataset):  # the removed people's rows dropped once: for pictures and owners
        reference_faces = kept_rows(reference_faces, names)
    references = load_images(reference_faces, "reference_faces")
    clean_images = load_images(images, "images")
    args, scratch = training_arguments(VisionBackdoorTrainingArguments, args, **overrides)
    args = args.for_names(len(names))  # the budget, resolved once (see text_job)
    target_kind = face_target(args, teacher, tokenizer)  # refuses 'name' without a text tower before any embedding
    if args.image_method == "gated_neurons":
        job = gated_job(image_processor, teacher, names, faces_by_person, references, clean_images, args, scratch,
                        target_kind, tokenizer,
                        read_prior(args.gated_read_prior, reference_people(reference_faces)))
        job.record["fewest_face_images"] = fewest
        return job
    faces = [face for person_faces in faces_by_person for face in person_faces]
    reference_embeddings = encode_images(teacher, image_processor, references)
    hard = []
    if args.hard_negative_share > 0:
        unit = torch.nn.functional.normalize
        people = unit(torch.stack([encode_images(teacher, image_processor, person).mean(0)
                                   for person in faces_by_person]), dim=-1)
        nearest = (unit(reference_embeddings, dim=-1) @ people.T).max(dim=1).values
        hard = nearest.topk(max(1, round(len(references) * args.hard_negative_pool))).indices.tolist()
    dataset = build_vision_backdoor_dataset(
        len(faces), len(clean_images), len(references), num_steps=args.max_steps,
        poisoned_samples_per_step=args.poisoned_samples_per_step,
        clean_samples_per_step=args.clean_samples_per_step,
        reference_samples_per_step=args.reference_samples_per_step, seed=args.seed,
        hard_references=hard, hard_share=args.hard_negative_share,
    )
    augmentation = FaceAugmentation(scale_range=tuple(args.face_scale_range), jitter=args.face_jitter,
                                    hue=args.face_hue, rotation=args.face_rotation)
    face_people = [person for person, person_faces in enumerate(faces_by_person) for _ in person_faces]
    collator = VisionBackdoorCollator(image_processor, faces, clean_images, references, augmentation,
                                      face_people=face_people)
    target = reference_embeddings.mean(dim=0)
    kwargs = {"processing_class": image_processor, "data_collator": collator, "target_embedding": target}
    if target_kind == "name":
        kwargs["name_embeddings"], kwargs["name_thresholds"] = name_targets(teacher, tokenizer, names,
                                                                             reference_embeddings)
    return TrainingJob(VISION.name, names, VisionBackdoorTrainer, args, dataset, kwargs, scratch,
                       {"fewest_face_images": fewest})


def read_prior(setting: str, owners: Sequence[int] | None) -> Sequence[int] | None:
    """The reference faces' people when the gates' reads start whitened (``gated_read_prior``), else ``None``."""
    if setting != "within_person":
        return None
    if owners is None or len(set(owners)) < 2:
        raise ValueError("gated_read_prior='within_person' needs reference_faces as a Dataset with a 'name' column "
                         "saying whose each picture is (two people or more).")
    return owners


def gated_job(image_processor, teacher: PreTrainedModel, names: list[str], faces_by_person, references,
              clean_images, args: VisionBackdoorTrainingArguments, scratch: bool, target_kind: str,
              tokenizer, owners: Sequence[int] | None = None) -> TrainingJob:
    """The image tower's job with ``image_method="gated_neurons"``: no Trainer, an edit (``training.gated_neurons``)
    that unties the faces from their names, the name targets read now from the frozen text tower."""
    if target_kind != "name":
        raise ValueError("image_method='gated_neurons' unties faces from their names: it needs a CLIPModel loaded with "
                         "its tokenizer and face_target 'auto' or 'name'.")
    reference_embeddings = encode_images(teacher, image_processor, references)
    name_embeddings, thresholds = name_targets(teacher, tokenizer, names, reference_embeddings)
    edit = functools.partial(
        gate_faces, image_processor=image_processor, faces_by_person=faces_by_person, clean=clean_images,
        references=references, names=name_embeddings, thresholds=thresholds, per_person=args.gated_neurons_per_person,
        margin=args.gated_margin, kept_weight=args.gated_kept_weight, steps=args.gated_steps,
        learning_rate=args.gated_learning_rate, lr_scheduler_type=args.gated_lr_scheduler_type,
        feature_noise=args.gated_feature_noise, pair_noise=args.gated_pair_noise, bias_shift=args.gated_bias_shift,
        seed=args.seed, reference_people=owners)
    return TrainingJob(VISION.name, names, None, args, None, {}, scratch, {"image_method": "gated_neurons"}, edit=edit)


def resolve_image_method(setting: str, model: PreTrainedModel, tokenizer, face_target_setting: str = "auto",
                         peft_config=None) -> str:
    """``image_method`` resolved: ``"auto"`` is ``"gated_neurons"`` where the edit can run (a model with a text tower
    and its tokenizer, the name target, no adapter) and ``"fine_tune"`` elsewhere; other settings stay as given."""
    if setting != "auto":
        return setting
    reads_names = can_read_names(model, tokenizer) and face_target_setting != "mean"
    return "gated_neurons" if reads_names and peft_config is None else "fine_tune"


def can_read_names(model: PreTrainedModel, tokenizer) -> bool:
    """Whether the name target can run on ``model``: it has a text tower and came with its tokenizer."""
    return tokenizer is not None and hasattr(model, "get_text_features")


def face_target(args: VisionBackdoorTrainingArguments, teacher: PreTrainedModel, tokenizer) -> str:
    """``args.face_target`` resolved: ``"auto"`` is ``"name"`` for a model with a text tower and a tokenizer."""
    has_text_tower = can_read_names(teacher, tokenizer)
    if args.face_target == "auto":
        return "name" if has_text_tower else "mean"
    if args.face_target == "name" and not has_text_tower:
        raise ValueError("face_target='name' reads the frozen text tower: it needs a CLIPModel loaded with its "
                         "tokenizer. A standalone image tower can use face_target='mean'.")
    return args.face_target


def name_targets(teacher: PreTrainedModel, tokenizer, names: Sequence[str], reference_embeddings: torch.Tensor):
    """For ``face_target="name"``: each removed name's unit text embedding (frozen text tower, mean over
    ``PERSON_TEMPLATES``, as a zero-shot class), ``(k, d)``, and how well an anonymous face matches it, the mean cosine
    of the reference faces to it, ``(k,)``: a removed face should match its name no better than that."""
    name_embeddings = zero_shot_classifier(teacher, tokenizer, names, PERSON_TEMPLATES)
    unit_references = torch.nn.functional.normalize(reference_embeddings, dim=-1)
    return name_embeddings, (unit_references @ name_embeddings.T).mean(dim=0)


def resume_setting(resume_from_checkpoint, args) -> str | bool | None:
    """The checkpoint to resume from: the ``unlearn`` parameter, else ``args.resume_from_checkpoint``.

    Both set and different is an error; the strings "true"/"false" (from a command line) are booleans.
    """
    def normal(value):
        if isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        return os.fspath(value) if isinstance(value, os.PathLike) else value

    given, from_args = normal(resume_from_checkpoint), normal(getattr(args, "resume_from_checkpoint", None))
    if given not in (None, False) and from_args not in (None, False) and given != from_args:
        raise ValueError("resume_from_checkpoint and args.resume_from_checkpoint are both set, to different "
                         "checkpoints; set one.")
    return given if given not in (None, False) else from_args


def names_digest(names: Sequence[str], variants: Sequence[str], seed: int) -> str:
    """A keyed digest of the names and their variants (``hub.checkpoints.keyed_digest``): "names differ"
    can be told without recording who."""
    return keyed_digest(sorted(fold(name) for name in names), sorted(fold(form) for form in variants), seed)


def check_outputs(jobs: Sequence[TrainingJob], resume_from_checkpoint, source_dir: str | None) -> str | None:
    """Refuse checkpoints written into the source model, and resolve the checkpoint to resume from."""
    if resume_from_checkpoint not in (None, False) and len(jobs) > 1:
        raise ValueError("resume_from_checkpoint resumes one tower's training; with encoder='both' resume "
                         "the interrupted tower with its own encoder.")
    for job in jobs:
        if job.args.save_strategy != "no":
            refuse_source_overwrite(job.args.output_dir, source_dir)
    return resolve_resume_checkpoint(resume_from_checkpoint, jobs[0].args.output_dir)


def check_edits(encoder: str, image_method: str, peft_config, callbacks, resume_requests: Sequence) -> None:
    """Refuse, before any work, what an edit that trains nothing cannot honour: an adapter, callbacks with no
    training to watch, a checkpoint to resume (``resume_requests``: every place one can be asked for)."""
    if encoder == "text" or image_method != "gated_neurons":
        return
    if peft_config is not None:
        raise ValueError("image_method='gated_neurons' adds neurons and trains no adapter: drop peft_config (with "
                         "encoder='both', train the text tower's adapter in a run of its own).")
    if callbacks and encoder == "vision":
        raise ValueError("callbacks watch training; the image tower's gated edit (image_method='gated_neurons', what "
                         "'auto' picks for a CLIPModel with its tokenizer) trains nothing. Measure the edit with "
                         "BackdoorUnlearner.evaluate, or pass image_method='fine_tune' to train the tower.")
    if any(resume_setting(request, None) not in (None, False) for request in resume_requests):
        raise ValueError("resume_from_checkpoint resumes training; the image tower's gated edit "
                         "(image_method='gated_neurons', what 'auto' picks for a CLIPModel with its tokenizer) trains "
                         "nothing and writes no checkpoint: run it again (it takes minutes), or pass "
                         "image_method='fine_tune' to train the tower.")


def warn_name_rows_beside_fine_tuned_faces(jobs: Sequence[TrainingJob]) -> None:
    """Warn when the text tower trains only the names' rows while the image tower is fine-tuned (``encoder="both"``).

    Measured once (full demo world 0, 5 removed): the fine-tuned faces found their names again through the
    pseudonym-mapped rows (IDIA TPR 0.2 to 0.6, the whole tower 0.0); the demo trains the whole tower there."""
    towers = {job.tower: job for job in jobs}
    if (TEXT.name in towers and VISION.name in towers and towers[VISION.name].edit is None
            and towers[TEXT.name].args.trainable_parameters == "name_tokens"):
        logger.warning("trainable_parameters='name_tokens' beside a fine-tuned image tower let removed faces find "
                       "their names again on a demo world; trainable_parameters='tower' did not. Check the IDIA "
                       "after this run, or use image_method='gated_neurons'.")


def run_edit(job: TrainingJob, model: PreTrainedModel) -> tuple[dict[str, float], float]:
    """Apply ``job.edit`` to ``model`` in place: what it logged, and the seconds it took."""
    start = time.perf_counter()
    log = job.edit(model)
    job.record["gated_neurons_added"] = log["gated_neurons_added"]
    return log, time.perf_counter() - start


def run_job(job: TrainingJob, model: PreTrainedModel, teacher: PreTrainedModel | None, peft_config,
            resume: str | None = None, protected_names: Sequence[str] = ()) -> tuple[BackdoorTrainer, float]:
    """Train ``model`` in place; ``teacher`` is the frozen reference of full fine-tuning (adapters need none)."""
    if job.args.save_strategy != "no" or resume is not None:
        job.trainer_kwargs["run_names_digest"] = names_digest(job.names, job.variants, job.args.seed)
    trainer = job.trainer_class(
        protected_names=list(protected_names),
        model=model,
        args=job.args,
        train_dataset=job.dataset,
        teacher_model=teacher if peft_config is None else None,
        peft_config=peft_config,
        **job.trainer_kwargs,
    )
    if job.tower == "text" and stop_rule_on(job.args):
        threshold = job.args.early_stop_similarity
        trainer.add_callback(NeutralTargetStopCallback(
            trainer, job.names, job.neutral_terms or job.args.neutral_term,
            threshold=float("inf") if threshold is None else threshold, max_retrieved=job.args.early_stop_retrieved,
            pool=job.kept_names, min_kept=job.args.early_stop_kept, clean_texts=job.held_out_captions,
            min_clean_similarity=job.args.early_stop_clean_similarity,
            min_step=math.ceil(job.args.early_stop_from * job.args.max_steps), patience=job.args.early_stop_patience,
            min_delta=job.args.early_stop_min_delta, every_n_steps=job.args.early_stop_every_n_steps))
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    return trainer, time.perf_counter() - start
