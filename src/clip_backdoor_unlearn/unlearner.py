"""``BackdoorUnlearner``: the one-line API around ``BackdoorTrainer``.

    unlearner = BackdoorUnlearner.from_pretrained("openai/clip-vit-base-patch32")
    unlearner.unlearn(names=["First Last"])
    unlearner.save_pretrained("clip-sanitized")     # CLIPModel.from_pretrained loads it

The text encoder of a text-to-image pipeline (a plain ``CLIPTextModel``) works the same way; its token sequence,
what the pipeline feeds the UNet, is what is compared (``BackdoorTrainingArguments.text_target``, docs/pipelines.md):

    unlearner = BackdoorUnlearner.from_pretrained("some/stable-diffusion", subfolder="text_encoder")
    unlearner.unlearn(names=["First Last"], captions=captions)
    unlearner.save_pretrained("text-encoder-sanitized")  # CLIPTextModel.from_pretrained loads it, with the tokenizer

It owns the things a user should not have to wire up: holding on to the original model (the teacher, and the
"before" of every evaluation), merging adapters, and keeping the removed names in memory only. The work itself is
done by ``training.jobs`` (checking inputs, building data, training), ``evaluation`` and ``hub`` (record, card,
saving, publishing).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasets import Dataset
from huggingface_hub import CommitInfo, ModelCard
from transformers import PreTrainedModel, TrainerCallback

from .data.names import NEUTRAL_TERM
from .data.pseudonyms import use_pseudonyms
from .hub.loading import load_clip
from .hub.model_card import UnlearningCardData, build_model_card, hub_base_model
from .hub.privacy import Scanner, redacting
from .hub.publishing import push_checkpoint, write_checkpoint
from .hub.record import UNLEARNING_CONFIG_NAME, accumulated_record, run_record, tower_record
from .hub.saving import recover, refuse_source_overwrite, write_atomically
from .training.arguments import (
    ADAPTER_DEFAULTS,
    TEXT_ONLY_SETTINGS,
    BackdoorTrainingArguments,
    VisionBackdoorTrainingArguments,
    unset_defaults,
)
from .training.embeddings import processor_parts
from .training.jobs import (
    check_edits,
    check_outputs,
    resolve_image_method,
    resume_setting,
    run_edit,
    run_job,
    scratch_output_dirs,
    text_job,
    vision_job,
    warn_name_rows_beside_fine_tuned_faces,
)
from .training.stopping import NeutralTargetStopCallback
from .training.towers import TEXT, check_clip_model

ENCODERS = ("text", "vision", "both")
logger = logging.getLogger(__name__)


@dataclass
class UnlearningResult:
    """What one ``unlearn`` call did: the training log, timing and (when evaluation data is given) metrics."""

    encoder: str
    num_names: int
    train_seconds: float
    seconds_per_step: float | None  # None when nothing was trained (an edit alone)
    log_history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def final_losses(self) -> dict[str, float]:
        """The last logged value of each loss part."""
        parts = ("loss", "utility_loss", "backdoor_loss", "weight_term")
        logged = [entry for entry in self.log_history if "backdoor_loss" in entry]
        return {part: logged[-1][part] for part in parts if logged and part in logged[-1]}


class BackdoorUnlearner:
    """Remove named people from a CLIP model; see the module docstring.

    Attributes:
        model: the ``CLIPModel`` (or a ``CLIPTextModel``/``CLIPVisionModel``, with or without projection),
            sanitized after ``unlearn``.
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
        # Kept in memory only: the names are what a sanitized checkpoint must not publish. The protected lists
        # grow with every run (and as soon as one starts) and never shrink: every save and push is scanned for them.
        self.removed_names: list[str] = []
        self._protected_names: list[str] = []
        self._protected_variants: list[str] = []
        self._incomplete = False
        self.metrics: dict[str, Any] = {}
        self.target_embedding = None  # the anonymous face embedding of the last image-tower unlearning
        self.neutral_terms: dict[str, str] | None = None  # what each name maps to (pseudonyms are not saved)

    @property
    def tokenizer(self):
        """The tokenizer (``None`` for a standalone vision tower)."""
        tokenizer, _ = processor_parts(self.processor)
        return tokenizer if hasattr(tokenizer, "tokenize") else None

    @property
    def image_processor(self):
        """The image processor (``None`` for a standalone text tower)."""
        _, image_processor = processor_parts(self.processor)
        return image_processor if hasattr(image_processor, "crop_size") or hasattr(image_processor, "size") else None

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, *,
                        previously_removed: Sequence[str] | None = None, **hf_kwargs) -> BackdoorUnlearner:
        """Load a ``CLIPModel`` (or a standalone tower) with its tokenizer and processor (``hub.loading.load_clip``).

        A local checkpoint this package sanitized keeps its record: the next ``unlearn`` adds to it.
        ``previously_removed``: the names removed then, so that every later save and push is scanned for them too.
        ``hf_kwargs`` go to every ``from_pretrained`` call (``revision``, ``token``, ``cache_dir``, ``torch_dtype``,
        ``subfolder``…). ``subfolder="text_encoder"`` takes a diffusers pipeline's text encoder, with the pipeline's
        tokenizer; a text-only checkpoint is loaded as the class it was saved as (no projection is added).
        """
        name_or_path = os.fspath(pretrained_model_name_or_path)
        if os.path.isdir(os.path.dirname(os.path.abspath(name_or_path))) and not os.path.exists(name_or_path):
            recover(name_or_path)  # a save a crash interrupted: put the complete checkpoint back first
        model, processor = load_clip(name_or_path, **hf_kwargs)
        unlearner = cls(model, processor, source_dir=name_or_path if os.path.isdir(name_or_path) else None)
        record = os.path.join(name_or_path, UNLEARNING_CONFIG_NAME)
        if os.path.isfile(record):  # a checkpoint sanitized before: the next run adds to its record
            with open(record, encoding="utf-8") as handle:
                unlearner.unlearning_config = json.load(handle)
        unlearner._protected_names += list(previously_removed or [])
        if unlearner.unlearning_config.get("num_removed_names") and not previously_removed:
            logger.warning("This checkpoint was sanitized before; pass previously_removed=[...] so that what is saved "
                           "or pushed is also scanned for the names removed then.")
        return unlearner

    # Unlearning -----------------------------------------------------------------------------------------------

    def unlearn(
        self,
        names: list[str],
        *,
        encoder: str = "text",
        neutral_term: str | None = None,
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
            neutral_term: what the names are mapped to; ``None``: ``args.neutral_term`` (default "a person", the
                paper's).
            pseudonyms: (text) map each name to an invented name of its own (``pseudonyms.invent_pseudonyms``)
                instead of ``neutral_term``. ``None`` (default): on with ``encoder="both"`` and with more than
                ``pseudonyms.PSEUDONYMS_ABOVE`` (10) names unless ``neutral_term`` is your own, off otherwise. With
                both towers edited, "a person" and the anonymous face are the same point, so the anonymous face would
                retrieve the removed names first (measured: the attack then still finds everyone); with many names at
                one point, a face matches that point and the removed names win as a group (measured: "a person"
                leaves TPR 0.06–0.28 from 16 names on, pseudonyms 0.00–0.03). The pseudonyms are drawn from
                ``args.seed``, kept in memory for ``evaluate`` and never saved or published.
            captions: clean captions (``list[str]`` or a ``Dataset`` with a ``caption``/``text`` column); captions
                mentioning a name are dropped. ``None`` uses the caption set shipped with the package.
            face_images: (vision) each removed person's face images: ``{name: [image, ...]}`` or a ``Dataset`` with
                ``image`` and ``name`` columns. Images are PIL images, file paths or ``datasets`` image dicts.
            reference_faces: (vision) many faces of *other* people: their mean embedding under the original model is
                the anonymous target, and they are held at the teacher's embedding while training. A ``Dataset`` with
                a ``name`` column (whose picture each is; rows of the removed people are dropped) also tells the
                gated edit how a person's pictures vary (``gated_read_prior="within_person"``).
            images: (vision) clean images for the utility loss, and the backgrounds faces are pasted on. By default
                (``image_method="auto"``, a field of the image tower's arguments) a ``CLIPModel`` with its tokenizer
                is not trained: a few neurons per person are added to the tower instead (``"gated_neurons"``,
                ``training.gated_neurons``), fitted on the same three inputs; ``"fine_tune"`` trains it.
            peft_config: a PEFT config (e.g. ``peft.LoraConfig``) to train adapters instead of the whole tower. The
                text tower then takes ``training.arguments.ADAPTER_DEFAULTS`` for every field left at its default.
            args: ``BackdoorTrainingArguments`` for the text tower, or ``VisionBackdoorTrainingArguments`` with
                ``encoder="vision"``. ``vision_args``: the image tower's arguments with ``encoder="both"``.
            name_variants: (text) also remove other spellings of each name. ``"auto"`` (default): case changes, the
                first or last name alone where distinctive, titles, possessive, "Last, First", "F. Last" and a few
                misspellings (``variants.name_variants``); ``None``/``"none"``: the names exactly as given; a dict
                ``{name: [nickname, ...]}`` adds your own variants to the generated ones.
            kept_names: (text) people who must stay findable. Person prompts naming them join the clean captions
                (``kept_prompts_per_name`` each, held at the teacher), and a variant that names one of them, or only
                part of one (a shared surname), is not removed, with a ``VariantConflictWarning`` giving counts and
                indexes.
            resume_from_checkpoint: a ``checkpoint-<step>`` directory of an interrupted run with the same arguments
                (``save_strategy="steps"``), or ``True`` for the latest complete one in ``output_dir``. Training
                continues from it and ends with the same model as an uninterrupted run. Checked before training.
            callbacks: ``transformers.TrainerCallback``s added to each tower's Trainer (e.g.
                ``callbacks.ForgetMonitorCallback``, which stops training once the attack no longer finds the people
                in the faces given). Without faces, the field ``early_stop_similarity=0.95`` stops the text tower
                once the names embed like their targets on held-out prompts (``training.stopping``; off by default).
                An image tower edited with gated neurons (``image_method`` ``"auto"`` on a ``CLIPModel`` with its
                tokenizer, or ``"gated_neurons"``) has no Trainer: the callbacks then watch the text tower alone,
                and with ``encoder="vision"`` they are refused (``image_method="fine_tune"`` trains the tower).
            overrides: any training-argument fields, applied on top of ``args`` (and of ``vision_args``; with
                ``encoder="both"``, the text tower's stop rules and ``trainable_parameters`` stay with it).
        """
        if encoder not in ENCODERS:
            raise ValueError(f"Unknown encoder {encoder!r}; choose one of {ENCODERS}.")
        if encoder == "vision" and pseudonyms:
            raise ValueError("pseudonyms=True maps names in the text tower; encoder='vision' trains no text tower.")
        if encoder == "vision" and isinstance(args, VisionBackdoorTrainingArguments):
            args, vision_args = None, args
        jobs = []
        overrides = dict(overrides)
        image_method = overrides.get("image_method", getattr(vision_args, "image_method", "auto"))
        if encoder != "text":  # "auto" resolved once, so the job, the record and the card hold the method used
            image_method = resolve_image_method(
                image_method, self.model, self.tokenizer,
                overrides.get("face_target", getattr(vision_args, "face_target", "auto")), peft_config)
            overrides["image_method"] = image_method
        check_edits(encoder, image_method, peft_config, callbacks, (
            resume_from_checkpoint, overrides.get("resume_from_checkpoint"),
            getattr(vision_args, "resume_from_checkpoint", None)))
        neutral_term = (neutral_term or overrides.pop("neutral_term", None) or getattr(args, "neutral_term", None)
                        or NEUTRAL_TERM)
        chosen_term = neutral_term != NEUTRAL_TERM  # a target of the caller's own is kept, however long the list
        if encoder in ("text", "both"):
            # With "both", image-only fields (reference_samples_per_step, face_*) go to the image tower alone.
            text_fields = {f.name for f in dataclasses.fields(BackdoorTrainingArguments)}
            text_overrides = overrides if encoder == "text" else {
                key: value for key, value in overrides.items() if key in text_fields}
            if peft_config is not None:
                text_overrides = unset_defaults(args, text_overrides, ADAPTER_DEFAULTS)
            mapped = use_pseudonyms(pseudonyms, len(names), encoder, neutral_term_given=chosen_term)
            jobs.append(text_job(self.model, self.tokenizer, names, neutral_term=neutral_term, captions=captions,
                                 args=args, overrides=text_overrides, name_variants=name_variants,
                                 kept_names=kept_names, pseudonyms=mapped,
                                 previous_names=self._protected_names, previous_variants=self._protected_variants))
        if encoder in ("vision", "both"):
            # With "both", the text tower's own settings (stop rules, token-embedding training) stay with it.
            vision_overrides = overrides if encoder == "vision" else {**overrides, **TEXT_ONLY_SETTINGS}
            jobs.append(vision_job(self.model, self.image_processor, self.original_model or self.model, names,
                                   face_images=face_images, reference_faces=reference_faces, images=images,
                                   args=vision_args, overrides=vision_overrides, tokenizer=self.tokenizer))
        warn_name_rows_beside_fine_tuned_faces(jobs)
        names = jobs[0].names
        variants = [form for job in jobs for form in job.variants]
        for job in jobs:
            job.trainer_kwargs["callbacks"] = list(callbacks or [])
        with scratch_output_dirs(jobs):
            resume = check_outputs(jobs, resume_setting(resume_from_checkpoint, jobs[0].args), self.source_dir)
            if self.original_model is None:
                self.original_model = copy.deepcopy(self.model).eval().requires_grad_(False)
            # From here the model changes: the names are protected at once, and nothing is saved until the run is over.
            self._protected_names += [name for name in names if name not in self._protected_names]
            self._protected_variants += [form for form in variants if form not in self._protected_variants]
            self._incomplete = True

            log_history, seconds, edit_seconds, steps, peft_model = [], 0.0, 0.0, 0, None
            first_run = not self.unlearning_config
            # The teacher is the model as it is at the start of this run (the original in the first), so sequential runs
            # add up. One copy serves every tower: they share no parameter, so training one leaves the other's teacher
            # as it was. Adapters use the disabled base instead.
            teacher = None
            if peft_config is None:
                teacher = self.original_model if first_run else copy.deepcopy(self.model).eval().requires_grad_(False)
            with redacting(self._scanner()):
                for job in jobs:
                    if job.edit is not None:  # image_method="gated_neurons": nothing trained
                        log, job_seconds = run_edit(job, self.model)
                        log_history.append({**log, "tower": job.tower})
                        job.record["trained_steps"] = 0
                        seconds, edit_seconds = seconds + job_seconds, edit_seconds + job_seconds
                        continue
                    trainer, job_seconds = run_job(job, self.model, teacher, copy.deepcopy(peft_config), resume,
                                                   protected_names=self._protected_names)
                    log_history += [{**entry, "tower": job.tower} for entry in trainer.state.log_history]
                    job.record["trained_steps"] = trainer.state.global_step  # fewer than max_steps after an early stop
                    stops = [callback for callback in trainer.callback_handler.callbacks
                             if isinstance(callback, NeutralTargetStopCallback)]
                    if stops:
                        job.record["early_stop"] = stops[0].stop_reason  # "threshold", "retrieval", "plateau" or None
                    seconds, steps = seconds + job_seconds, steps + trainer.state.global_step
                    trained = trainer.accelerator.unwrap_model(trainer.model).eval().requires_grad_(False)
                    if peft_config is not None:
                        peft_model = trained
                        self.model = copy.deepcopy(trained).merge_and_unload().eval()
                    else:
                        self.model = trained
        # An adapter alone stands for one tower of one run; otherwise only the merged model describes the change.
        self.peft_model = peft_model if len(jobs) == 1 and first_run else None
        run = run_record(
            encoder=encoder, num_removed=len(names), neutral_term=neutral_term, peft_config=peft_config,
            towers={job.tower: tower_record(job.args, peft_config, **job.record) for job in jobs})
        self.unlearning_config = accumulated_record(self.unlearning_config, run)
        self.neutral_terms = next((job.neutral_terms for job in jobs if job.tower == "text"), None)
        self.removed_names = list(self._protected_names)
        self.target_embedding = next((job.trainer_kwargs.get("target_embedding") for job in jobs
                                      if job.tower == "vision"), None)
        self._incomplete = False
        return UnlearningResult(
            encoder=encoder,
            num_names=len(names),
            train_seconds=seconds,
            seconds_per_step=(seconds - edit_seconds) / steps if steps else None,
            log_history=log_history,
            config=self.unlearning_config,
        )

    def evaluate(self, names: list[str], **evaluation_data) -> dict[str, Any]:
        """Before/after figures of the last ``unlearn``: see ``evaluation.unlearning.evaluate_unlearning``.

        ``evaluation_data``: ``face_images`` + ``candidate_names`` (+ ``non_member_names``) for the IDIA,
        ``gallery_images`` (many people's other pictures) for the image-to-image attack with ``face_images`` as queries,
        ``held_out_captions`` for SimClean, ``zero_shot_dataset`` (+ ``class_names``) for zero-shot accuracy.
        A pipeline's text encoder (plain ``CLIPTextModel``) is measured on its conditioning instead
        (``evaluation.conditioning.evaluate_pipeline_encoder``: ``kept_names``, ``held_out_captions`` or
        ``clean_prompts``, ``templates``).
        """
        from .evaluation.unlearning import evaluate_unlearning

        if self.original_model is None:
            raise ValueError("Nothing to compare yet: call unlearn() before evaluate().")
        evaluation_data.setdefault("neutral_term", self.neutral_terms or self.unlearning_config.get("neutral_term")
                                   or NEUTRAL_TERM)
        if TEXT.is_plain(self.model):  # a pipeline's text encoder: what the pipeline consumes is measured
            from .evaluation.conditioning import evaluate_pipeline_encoder

            data = dict(evaluation_data)
            if data.get("held_out_captions"):
                data["clean_prompts"] = data.pop("held_out_captions")
            unknown = set(data) - {"neutral_term", "kept_names", "clean_prompts", "templates", "target"}
            if unknown:
                raise TypeError(f"A plain CLIPTextModel is evaluated on its conditioning "
                                f"(evaluation.conditioning.evaluate_pipeline_encoder); it takes no {sorted(unknown)}.")
            self.metrics = {"num_removed": len(names), **evaluate_pipeline_encoder(
                self.original_model, self.model, self.tokenizer, names, **data)}
            return self.metrics
        evaluation_data.setdefault("target_embedding", self.target_embedding)
        self.metrics = evaluate_unlearning(self.original_model, self.model, self.processor, names, **evaluation_data)
        return self.metrics

    # Saving -----------------------------------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike, merge_adapters: bool = True, *,
                        publish_names: bool = False, **kwargs) -> str:
        """Write the sanitized model, tokenizer, processor and model card (``README.md``), atomically.

        With ``merge_adapters=False`` (after one PEFT run) only the adapter is written, loadable with
        ``peft.PeftModel.from_pretrained(base_model, save_directory)``. The folder must be new, empty or an earlier
        save of this tool; anything else (other files, the working or home directory, the source model) is refused
        before anything is written (``hub.saving``). The finished folder is scanned for every form of every removed
        name, for Hub tokens and local paths before it replaces anything (``hub.privacy``); ``publish_names=True``
        lists the names in the card, on purpose.
        """
        if kwargs.get("push_to_hub"):
            raise TypeError("save_pretrained(push_to_hub=True) would publish the model without its card and the "
                            "check for names; call push_to_hub(repo_id) instead.")
        self._check_complete()
        scanner = self._scanner(paths=[self.source_dir])
        with redacting(scanner):
            refuse_source_overwrite(save_directory, self.source_dir)
            card = self.model_card(merge_adapters=merge_adapters, publish_names=publish_names)
            return write_atomically(save_directory, lambda directory: self._write_checkpoint(
                directory, merge_adapters, card, publish_names, scanner, **kwargs), protected=[self.source_dir])

    def model_card(self, *, merge_adapters: bool = True, publish_names: bool = False, model_name: str | None = None,
                   repo_id: str | None = None, base_model: str | None = None) -> ModelCard:
        """This checkpoint's ``huggingface_hub.ModelCard``: method, hyperparameters, count of removed people, metrics.

        The metrics are those of the last ``evaluate`` (none: the card says they were not measured). ``base_model``
        defaults to the Hub id the model was loaded from. The names appear only with ``publish_names=True``.
        """
        self._model_to_save(merge_adapters)  # the same error as saving, before anything is rendered
        data = UnlearningCardData.from_record(
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
        private: bool = True,
        token: str | bool | None = None,
        merge_adapters: bool = True,
        publish_names: bool = False,
        commit_message: str = "Upload sanitized CLIP model (clip-backdoor-unlearn)",
        revision: str | None = None,
        base_model: str | None = None,
    ) -> CommitInfo:
        """Publish the sanitized model to the Hub, as ``save_pretrained`` writes it, in one commit.

        The repository is created private unless ``private=False`` (an existing public one is refused while
        ``private=True``); the branch ``revision`` is created if needed. Root-level weight files of an earlier push
        that this one does not rewrite are deleted in the same commit, so ``from_pretrained(repo_id)`` loads what
        was pushed. Every file and every string of the request (repository id, branch, commit message) is scanned
        first (``hub.publishing.push_folder``); earlier commits stay in the repository's history. Returns the
        ``CommitInfo`` (``.commit_url``, ``.oid``).
        """
        self._check_complete()
        scanner = self._scanner(token=token, paths=[self.source_dir])
        with redacting(scanner):
            card = self.model_card(merge_adapters=merge_adapters, publish_names=publish_names,
                                   model_name=repo_id.split("/")[-1], repo_id=repo_id, base_model=base_model)
            return push_checkpoint(
                repo_id, lambda staging: self._write_checkpoint(staging, merge_adapters, card, publish_names, scanner),
                scanner=scanner, publish_names=publish_names, private=private, token=token,
                commit_message=commit_message, revision=revision)

    def _scanner(self, *, token=None, paths=()) -> Scanner:
        """What nothing written or pushed may hold: every protected name and variant, Hub tokens, local paths."""
        return Scanner.for_publishing(self._protected_names, variants=self._protected_variants, token=token,
                                      paths=paths)

    def _check_complete(self) -> None:
        if self._incomplete:
            raise RuntimeError("The last unlearn() did not finish: the model is partly trained and its record is "
                               "missing, so it is not saved or pushed. Run unlearn() again (it can resume from a "
                               "checkpoint).")

    def _model_to_save(self, merge_adapters: bool) -> PreTrainedModel:
        if not merge_adapters and self.unlearning_config.get("num_runs", 1) > 1:
            raise ValueError("merge_adapters=False is refused after more than one unlearn() run: the last adapter "
                             "sits on the model earlier runs changed, so on the original base it would undo them. "
                             "Save the merged model.")
        if not merge_adapters and self.peft_model is None:
            raise ValueError("merge_adapters=False needs an unlearn() run with peft_config; there is no adapter.")
        return self.model if merge_adapters else self.peft_model

    def _write_checkpoint(self, directory: str, merge_adapters: bool, card, publish_names: bool, scanner: Scanner,
                          **kwargs) -> None:
        write_checkpoint(directory, self._model_to_save(merge_adapters), self.processor, self.unlearning_config,
                         card, scanner, publish_names, **kwargs)
