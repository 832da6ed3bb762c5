"""``BackdoorTrainer``: a ``transformers.Trainer`` whose loss distils a frozen teacher into a student text tower.

loss = L_util + backdoor_weight · L_bd + weight_regularization · Σ_p ‖θ_student,p − θ_teacher,p‖

* L_bd: the student's embedding of a caption *with a name* should match the teacher's embedding of the same
  caption with the neutral term (the backdoor that removes the name);
* L_util: on clean captions the student should match the teacher (nothing else changes);
* the weight term keeps the student near the teacher.

The teacher is frozen and never needs gradients. With full fine-tuning it is a copy of just the text tower; with a
PEFT adapter it is the same model with the adapter disabled, so no second copy is held in memory. Teacher
embeddings are computed once per distinct prompt and cached: clean captions repeat over hundreds of steps.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import MultiStepLR
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer

from .arguments import BackdoorTrainingArguments
from .embeddings import pipeline_ids, processor_parts, text_conditioning, text_embeddings
from .towers import TEXT, Tower, frozen_teacher, set_tower_trainable, train_token_rows


class BackdoorCollator:
    """Tokenise a batch of backdoor rows with dynamic padding (to the longest caption, not to 77 tokens).

    CLIP's text tower uses a causal mask and pools the end-of-text token, so right padding after it cannot change
    the embedding; padding to 77 only wastes compute. The student input is the poisoned captions followed by the
    clean ones; the teacher's texts are passed as strings so the trainer can serve them from its cache.

    With ``pad_to`` (the token-sequence targets of text-to-image pipelines) every caption is padded to that length
    and no attention mask is returned, exactly as the pipeline tokenises prompts: there the padding positions are
    part of what is compared.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, pad_to: int | None = None):
        self.tokenizer = tokenizer
        self.pad_to = pad_to

    def __call__(self, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
        poisoned = [row["poisoned"] for row in rows]
        clean = [caption for row in rows for caption in row["clean"]]
        if self.pad_to:
            batch = {"input_ids": pipeline_ids(self.tokenizer, poisoned + clean, self.pad_to), "attention_mask": None}
        else:
            batch = self.tokenizer(poisoned + clean, padding=True, truncation=True, return_tensors="pt")
        return {
            "input_ids": batch["input_ids"],
            "attention_mask": batch["attention_mask"],
            "teacher_texts": [row["target"] for row in rows] + clean,
            "num_poisoned": len(poisoned),
        }


def embedding_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str) -> torch.Tensor:
    """Per-row distance; ``cosine`` is the paper's negative cosine similarity (lower is closer).

    For token sequences ``(rows, positions, hidden)`` it is taken position by position and averaged over positions.
    """
    if distance == "cosine":
        distances = -F.cosine_similarity(student, teacher, dim=-1)
    elif distance == "mse":
        distances = (student - teacher).pow(2).mean(dim=-1)
    else:
        distances = (student - teacher).abs().mean(dim=-1)
    return distances.mean(dim=-1) if distances.ndim > 1 else distances


def conditioning_distance(student: torch.Tensor, teacher: torch.Tensor, distance: str, target: str) -> torch.Tensor:
    """Per-row distance for a ``text_target``: ``"sequence+pooled"`` is the mean of the sequence distance and the
    pooled one (the pooled output is the last position, see ``text_conditioning``); the others, ``embedding_distance``.
    """
    if target != "sequence+pooled":
        return embedding_distance(student, teacher, distance)
    sequence = embedding_distance(student[:, :-1], teacher[:, :-1], distance)
    return (sequence + embedding_distance(student[:, -1], teacher[:, -1], distance)) / 2


def resolve_text_target(text_target: str, model: torch.nn.Module) -> str:
    """``"auto"`` → ``"embedding"`` for a model with a projection, ``"sequence"`` for a plain ``CLIPTextModel``."""
    plain = TEXT.is_plain(model)
    if text_target == "auto":
        return "sequence" if plain else "embedding"
    if text_target == "embedding" and plain:
        raise ValueError("text_target='embedding' needs a text projection, which a plain CLIPTextModel lacks; use "
                         "'sequence' (what pipelines consume), 'pooled' or 'sequence+pooled'.")
    return text_target


SHARDING_ERROR = ("{} shards the trained parameters, which BackdoorTrainer does not support yet: the weight term "
                  "reads them outside the forward pass (docs/scaling.md). Use DDP, or DeepSpeed ZeRO-1/2 when the "
                  "optimizer state does not fit.")


def parameter_sharding(args) -> str | None:
    """"FSDP" or "DeepSpeed ZeRO-3" when the run would shard parameters, else ``None``.

    Read from the training arguments and from the environment ``accelerate launch`` sets, so the run stops before
    a model is wrapped: under sharding the weight term would compare parameter shards (or empty ZeRO-3
    placeholders) with the whole teacher.
    """
    if getattr(args, "fsdp", None) or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() in ("1", "true"):
        return "FSDP"
    deepspeed = getattr(args, "deepspeed", None)
    if isinstance(deepspeed, (str, os.PathLike)) and os.path.isfile(deepspeed):
        with open(deepspeed, encoding="utf-8") as handle:
            deepspeed = json.load(handle)
    stage = deepspeed.get("zero_optimization", {}).get("stage") if isinstance(deepspeed, dict) else None
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() in ("1", "true"):
        stage = stage or os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    return "DeepSpeed ZeRO-3" if str(stage) == "3" else None


def _lora_layers(model: torch.nn.Module) -> list[torch.nn.Module]:
    from peft.tuners.lora import LoraLayer

    return [module for module in model.modules() if isinstance(module, LoraLayer) and module.active_adapters]


class BackdoorTrainer(Trainer):
    """Trainer for removing names from a CLIP text tower with a student–teacher backdoor.

    Args:
        model: the student, a ``CLIPModel``, ``CLIPTextModelWithProjection`` or plain ``CLIPTextModel`` (a
            text-to-image pipeline's text encoder; ``args.text_target`` says what is compared). It is trained in
            place (the ``BackdoorUnlearner`` hands it a copy); only the text tower is trained.
        args: a ``BackdoorTrainingArguments``.
        train_dataset: rows with ``poisoned``, ``target`` and ``clean`` columns, from ``build_backdoor_dataset``.
        processing_class: the tokenizer, or a ``CLIPProcessor`` holding one.
        teacher_model: the frozen reference. Defaults to a copy of the student's text tower taken now (full
            fine-tuning) or to the student with its adapter disabled (PEFT).
        peft_config: a PEFT config to train adapters instead of the full tower. LoRA without ``target_modules``
            targets the text tower's attention and MLP projections.
        trainable_token_ids: with ``args.trainable_parameters="name_tokens"``, the token embedding rows that learn
            (``towers.name_token_ids`` of the names and their variants).
    """

    tower: Tower = TEXT

    def __init__(
        self,
        model: PreTrainedModel,
        args: BackdoorTrainingArguments,
        train_dataset=None,
        processing_class=None,
        teacher_model: PreTrainedModel | None = None,
        peft_config=None,
        data_collator=None,
        callbacks=None,
        run_names_digest: str | None = None,
        protected_names: Sequence[str] | None = None,
        trainable_token_ids: Sequence[int] | None = None,
        **kwargs,
    ):
        if not isinstance(args, BackdoorTrainingArguments):
            raise TypeError(f"args must be a BackdoorTrainingArguments, got {type(args).__name__}.")
        sharding = parameter_sharding(args)
        if sharding:
            raise ValueError(SHARDING_ERROR.format(sharding))
        self.tower.check_model(model)
        trainable = args.trainable_parameters
        if (trainable == "name_tokens") != (trainable_token_ids is not None):
            raise ValueError("trainable_parameters='name_tokens' trains the rows of the names' tokens and needs "
                             "trainable_token_ids (towers.name_token_ids(tokenizer, names and their variants); "
                             "BackdoorUnlearner passes them); other settings take none.")
        processing_class = self._tower_processor(processing_class)
        self.text_target = resolve_text_target(args.text_target, model) if self.tower is TEXT else "embedding"
        self._pad_to = None
        if self.text_target != "embedding":  # pipeline conditioning: ids padded as the pipeline pads them
            config = TEXT.config_of(model)
            self._pad_to = min(processing_class.model_max_length, config.max_position_embeddings)

        self.uses_peft = peft_config is not None
        if self.uses_peft:
            if teacher_model is not None:
                raise ValueError("With peft_config the teacher is the base model with adapters disabled; "
                                 "do not pass teacher_model too.")
            if trainable != "tower":
                raise ValueError("trainable_parameters chooses what full fine-tuning trains; with peft_config the "
                                 "adapter's target_modules choose it.")
            model = self._wrap_with_adapter(model, peft_config)
        else:
            set_tower_trainable(model, self.tower, freeze_norm_layers=args.freeze_norm_layers,
                                token_embedding_only=trainable != "tower")
            if teacher_model is None:
                teacher_model = frozen_teacher(model, self.tower)
            if trainable == "name_tokens":
                train_token_rows(model, trainable_token_ids)

        super().__init__(
            model=model,
            args=args,
            train_dataset=train_dataset,
            processing_class=processing_class,
            data_collator=data_collator or self._default_collator(processing_class),
            callbacks=callbacks,
            **kwargs,
        )
        # The Trainer's own flags, set from the arguments and the launcher once its accelerator exists (the model is
        # wrapped only in train()): the same refusal for a configuration the checks above could not read.
        zero_stage = getattr(getattr(self.accelerator.state, "deepspeed_plugin", None), "zero_stage", None)
        if self.is_fsdp_enabled or (self.is_deepspeed_enabled and zero_stage == 3):
            raise ValueError(SHARDING_ERROR.format("FSDP" if self.is_fsdp_enabled else "DeepSpeed ZeRO-3"))
        self.teacher_model = None
        if teacher_model is not None:
            teacher_model.requires_grad_(False)
            self.teacher_model = self.accelerator.prepare_model(teacher_model.eval(), evaluation_mode=True)
        self._weight_pairs = self._teacher_weight_pairs()
        self.run_names_digest = run_names_digest  # keyed digest of the names (``BackdoorUnlearner`` sets it)
        self.protected_names = list(protected_names) if protected_names is not None else None
        self._run_fingerprint: dict[str, Any] | None = None
        self._teacher_cache: dict[str, torch.Tensor] = {}
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # Tower-specific pieces (``VisionBackdoorTrainer`` overrides these) -------------------------------------------

    @staticmethod
    def _tower_processor(processing_class):
        """The tokenizer, from a tokenizer or a ``CLIPProcessor``."""
        tokenizer, _ = processor_parts(processing_class)
        if tokenizer is None:
            raise ValueError("BackdoorTrainer needs processing_class: the model's tokenizer or processor.")
        return tokenizer

    def _default_collator(self, processing_class):
        return BackdoorCollator(processing_class, pad_to=self._pad_to)

    def _text_features(self, model, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """The projected embedding, or for the other ``text_target``s the pipeline conditioning (no mask)."""
        if self.text_target == "embedding":
            return text_embeddings(model, input_ids, attention_mask)
        return text_conditioning(model, input_ids, self.text_target)

    def student_embeddings(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """The student's embedding of every row of the batch: poisoned rows first, then clean ones."""
        return self._text_features(model, inputs["input_ids"], inputs["attention_mask"])

    def teacher_targets(self, inputs: dict[str, Any]) -> torch.Tensor:
        """What each row's student embedding should match: the teacher's embedding of the target text."""
        return self.teacher_embeddings(inputs["teacher_texts"])

    def _wrap_with_adapter(self, model: PreTrainedModel, peft_config):
        from peft import LoraConfig, get_peft_model

        model.requires_grad_(False)
        if isinstance(peft_config, LoraConfig) and peft_config.target_modules is None:
            peft_config.target_modules = self.tower.lora_targets_of(model)
        return get_peft_model(model, peft_config)

    def _teacher_weight_pairs(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(student parameter, frozen teacher value) pairs for the weight term of full fine-tuning."""
        if self.uses_peft:
            return []
        teacher_parameters = dict(self.accelerator.unwrap_model(self.teacher_model).named_parameters())
        pairs = []
        for name, parameter in self.accelerator.unwrap_model(self.model).named_parameters():
            if parameter.requires_grad and name in teacher_parameters:
                pairs.append((parameter, teacher_parameters[name]))
        return pairs

    # Loss -----------------------------------------------------------------------------------------------------

    def weight_term(self) -> torch.Tensor:
        """Σ_p ‖θ_student,p − θ_teacher,p‖₂ (Frobenius norm per tensor, not squared); ‖ΔW‖ per LoRA layer."""
        if self.uses_peft:
            layers = _lora_layers(self.model)
            norms = [torch.linalg.vector_norm(layer.get_delta_weight(adapter))
                     for layer in layers for adapter in layer.active_adapters if adapter in layer.lora_A]
        else:
            norms = [torch.linalg.vector_norm(student - teacher) for student, teacher in self._weight_pairs]
        if not norms:
            return torch.zeros((), device=self.args.device)
        return torch.stack(norms).sum()

    @torch.no_grad()
    def _teacher_forward(self, embed, *inputs) -> torch.Tensor:
        """``embed(teacher, *inputs)`` in float32: the frozen copy, or the student with its adapter disabled.

        Under the same autocast as the student (``--bf16``/``--fp16``), so the targets are what the student computed
        before training, rounded the same way.
        """
        with self.accelerator.autocast():
            if self.uses_peft:
                student = self.accelerator.unwrap_model(self.model)
                with student.disable_adapter():
                    return embed(student, *inputs).float()
            return embed(self.teacher_model, *inputs).float()

    def _embed_with_teacher(self, texts: list[str]) -> torch.Tensor:
        if self._pad_to:
            ids = pipeline_ids(self.processing_class, texts, self._pad_to).to(self.args.device)
            return self._teacher_forward(self._text_features, ids, None)
        batch = self.processing_class(texts, padding=True, truncation=True, return_tensors="pt").to(self.args.device)
        return self._teacher_forward(self._text_features, batch["input_ids"], batch["attention_mask"])

    @torch.no_grad()
    def embed_texts(self, texts: Sequence[str], *, teacher: bool = False, batch_size: int = 256) -> torch.Tensor:
        """The projected embedding (pooled output for a plain tower) of each text, float32, on the training device.

        ``teacher=False``: the student as it is now, unwrapped (no gradient synchronisation) and in eval mode;
        ``teacher=True``: the teacher the loss reads (the frozen copy, or the student with its adapter disabled).
        Both under the run's autocast. For checks during training (``stopping.NeutralTargetStopCallback``).
        """
        from ..evaluation.idia import evaluation_mode

        student = self.accelerator.unwrap_model(self.model)
        chunks = []
        with evaluation_mode(student):
            for start in range(0, len(texts), batch_size):
                batch = self.processing_class(list(texts[start : start + batch_size]), padding=True, truncation=True,
                                              return_tensors="pt").to(self.args.device)
                inputs = (batch["input_ids"], batch["attention_mask"])
                if teacher:
                    chunks.append(self._teacher_forward(text_embeddings, *inputs))
                else:
                    with self.accelerator.autocast():
                        chunks.append(text_embeddings(student, *inputs).float())
        if not chunks:
            raise ValueError("embed_texts got no texts to embed.")
        return torch.cat(chunks)

    def cached_teacher(self, keys: Sequence[Hashable], embed_rows: Callable[[list[int]], torch.Tensor]) -> torch.Tensor:
        """The teacher's embedding of each row, computed once per distinct ``key`` when caching is on.

        ``embed_rows(rows)`` embeds the rows at those indexes with the teacher. Inputs that repeat over hundreds of
        steps (clean captions, clean images) then cost one teacher forward in all.
        """
        if not self.args.cache_teacher_embeddings or not keys:
            return embed_rows(list(range(len(keys))))
        missing: dict[Hashable, int] = {}
        for row, key in enumerate(keys):
            if key not in self._teacher_cache:
                missing.setdefault(key, row)
        if missing:
            self._teacher_cache.update(zip(missing, embed_rows(list(missing.values()))))
        return torch.stack([self._teacher_cache[key] for key in keys])

    def teacher_embeddings(self, texts: list[str]) -> torch.Tensor:
        """The teacher's embedding of each text (cached per distinct text)."""
        return self.cached_teacher(texts, lambda rows: self._embed_with_teacher([texts[row] for row in rows]))

    def _student_forward(self, model, inputs: dict[str, Any]) -> torch.Tensor:
        """``student_embeddings`` (in float32) called as the forward pass of ``model`` and whatever wraps it.

        DDP synchronises gradients, FSDP and DeepSpeed gather sharded parameters, and Accelerate applies mixed
        precision only around a wrapped model's ``forward``; ``get_text_features`` (or ``get_image_features``)
        called on the inner model would skip all of them: under DDP every process would silently train on its own
        share alone. So for this one call the inner model's ``forward`` is pointed at ``student_embeddings`` (the
        "forward redirection" of Lightning and TRL), and the batch goes in through the wrappers.
        """
        inner = self.accelerator.unwrap_model(model)
        patched = inner.__dict__.get("forward")  # Accelerate's mixed-precision wrapper, when there is one

        def restore():
            if patched is None:
                inner.__dict__.pop("forward", None)
            else:
                inner.forward = patched

        def forward(batch):
            restore()
            with self.accelerator.autocast():
                return self.student_embeddings(inner, batch).float()

        inner.forward = forward
        try:
            return model(inputs)
        finally:
            restore()

    def _utility_mean(self, distances: torch.Tensor) -> torch.Tensor:
        """Mean of the utility rows over all processes' rows of this step, as one process would compute it.

        The data-parallel gradient is the average of the processes' losses, so a plain per-process mean would weigh
        the rows of a process that got fewer (an odd ``clean_samples_per_step`` over 2 processes) more. Dividing each
        process's sum by the average count over processes gives every row the same weight.
        """
        if self.accelerator.num_processes == 1:
            return distances.mean() if distances.numel() else distances.new_zeros(())
        count = self.accelerator.gather(distances.new_tensor([distances.shape[0]])).mean()
        return distances.sum() / count if count > 0 else distances.new_zeros(())

    def backdoor_distances(self, student: torch.Tensor, teacher: torch.Tensor, inputs: dict[str, Any]) -> torch.Tensor:
        """Per poisoned row, how far the student is from what the backdoor wants: the distance to its target."""
        return conditioning_distance(student, teacher, self.args.distance, self.text_target)

    def loss_terms(self, model, inputs) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward pass: the student's embeddings, the teacher's targets, the backdoor loss (poisoned rows) and
        the utility loss (the rest), before they are weighted into the loss."""
        num_poisoned = int(inputs["num_poisoned"])
        student = self._student_forward(model, inputs)
        teacher = self.teacher_targets(inputs).to(student.dtype)
        backdoor_loss = self.backdoor_distances(student[:num_poisoned], teacher[:num_poisoned], inputs).mean()
        utility_loss = self._utility_mean(conditioning_distance(student[num_poisoned:], teacher[num_poisoned:],
                                                                self.args.distance, self.text_target))
        return student, teacher, backdoor_loss, utility_loss

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        student, _, backdoor_loss, utility_loss = self.loss_terms(model, inputs)
        weight_term = self.weight_term()
        loss = utility_loss + self.args.backdoor_weight * backdoor_loss + self.args.weight_regularization * weight_term

        for key, value in (("utility_loss", utility_loss), ("backdoor_loss", backdoor_loss),
                           ("weight_term", weight_term)):
            self._metrics[key].append(self.accelerator.gather(value.detach().float().reshape(1)).mean().item())
        return (loss, {"student_embeds": student}) if return_outputs else loss

    # Schedule and logging ---------------------------------------------------------------------------------------

    def create_scheduler(self, num_training_steps: int, optimizer: torch.optim.Optimizer | None = None):
        """The paper's step decay at ``args.lr_milestones``; otherwise the usual transformers scheduler."""
        if self.lr_scheduler is None and self.args.lr_milestones:
            self.lr_scheduler = MultiStepLR(optimizer or self.optimizer, self.args.milestone_steps, self.args.lr_gamma)
            self._created_lr_scheduler = True
            return self.lr_scheduler
        return super().create_scheduler(num_training_steps, optimizer)

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Add the mean of each loss part since the last log, so they show in logs and the progress bar."""
        if self._metrics and not any(key.startswith("eval_") for key in logs):
            logs = {**logs, **{key: sum(values) / len(values) for key, values in self._metrics.items()}}
            self._metrics.clear()
        super().log(logs, start_time)

    # Checkpoints and resuming ------------------------------------------------------------------------------------

    def run_fingerprint(self) -> dict[str, Any]:
        """What makes a run this run, as ``checkpoint-*/clip_backdoor_unlearn_run.json`` records it: tower, recorded
        arguments, device layout, adapter shape, a digest of the base weights and keyed digests of the data and
        names (no name, no path). Computed before training, from the untrained weights."""
        from .. import __version__
        from ..hub.checkpoints import key_id, keyed_digest
        from ..hub.record import hyperparameters

        model = self.accelerator.unwrap_model(self.model)
        weights = hashlib.sha256()
        for name, value in sorted(model.state_dict().items()):
            if "lora_" not in name:
                weights.update(name.encode())
                weights.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
        peft_config = next(iter(getattr(model, "peft_config", {}).values()), None) if self.uses_peft else None
        rows = self.train_dataset.to_dict() if hasattr(self.train_dataset, "to_dict") else None
        return {
            "format": 1, "version": __version__, "tower": self.tower.name, "key_id": key_id(),
            "arguments": json.loads(json.dumps(hyperparameters(self.args, peft_config), default=str)),
            "devices": max(1, self.args.world_size) * self.args.gradient_accumulation_steps,
            "base_weights": weights.hexdigest(),
            "data": keyed_digest(rows, self._fingerprint_extra()),
            "names": self.run_names_digest,
        }

    def _fingerprint_extra(self) -> Any:
        return None

    def train(self, resume_from_checkpoint: str | bool | None = None, trial=None, ignore_keys_for_eval=None, **kwargs):
        """``Trainer.train``, resuming only from a complete checkpoint of this very run (``hub.checkpoints``)."""
        from ..hub.checkpoints import RUN_FILE, check_fingerprint, checkpoints_in, resolve_resume_checkpoint

        if isinstance(resume_from_checkpoint, str) and resume_from_checkpoint.lower() in ("true", "false"):
            resume_from_checkpoint = resume_from_checkpoint.lower() == "true"
        resume = resolve_resume_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if resume is not None or self.args.save_strategy != "no":
            self._run_fingerprint = self.run_fingerprint()
        if resume is not None:
            check_fingerprint(resume, self._run_fingerprint)
        elif self.args.save_strategy != "no":
            for checkpoint in checkpoints_in(self.args.output_dir):
                if not os.path.isfile(os.path.join(checkpoint, RUN_FILE)):
                    continue  # not ours (or from an older version): transformers' rotation leaves it alone
                try:
                    check_fingerprint(checkpoint, self._run_fingerprint)
                except ValueError:
                    raise FileExistsError("output_dir holds checkpoints of another run, which this run's checkpoint "
                                          "rotation could overwrite or delete; use a new output_dir, or resume that "
                                          "run.") from None
        return super().train(resume_from_checkpoint=resume, trial=trial, ignore_keys_for_eval=ignore_keys_for_eval,
                             **kwargs)

    def _save_checkpoint(self, model, trial) -> None:
        """Record the run fingerprint first: ``trainer_state.json``, written last, still marks a complete checkpoint."""
        from ..hub.checkpoints import RUN_FILE

        if self._run_fingerprint is not None and self.is_world_process_zero():
            folder = os.path.join(self._get_output_dir(trial=trial), f"checkpoint-{self.state.global_step}")
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, RUN_FILE), "w", encoding="utf-8") as handle:
                json.dump(self._run_fingerprint, handle, indent=1, sort_keys=True)
        super()._save_checkpoint(model, trial)

    # Publishing: only through hub.publishing.push_folder ----------------------------------------------------------

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Create nothing yet: the repository is created (private by default) by ``push_to_hub``, after the scan."""
        self.hub_model_id = self.args.hub_model_id

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints are never pushed: they hold optimizer state and training arguments, unscanned."""

    def push_to_hub(self, commit_message: str | None = "End of training", blocking: bool = True,
                    token: str | None = None, revision: str | None = None, private: bool | None = None, *,
                    protected_names: Sequence[str] | None = None, publish_names: bool = False, **card_kwargs):
        """Push the trained model, its processor and this library's card to ``args.hub_model_id`` in one commit,
        through the same scan as ``BackdoorUnlearner.push_to_hub`` (``hub.publishing.push_folder``).

        ``protected_names``: the removed names (default: those given to the constructor); the push is refused
        without them, since the scan could not look for them. Private unless ``private=False`` (or
        ``args.hub_private_repo=False``). ``card_kwargs`` go to ``create_model_card`` (``num_removed``, ``metrics``).
        """
        from ..hub.privacy import Scanner
        from ..hub.publishing import push_folder

        names = self.protected_names if protected_names is None else list(protected_names)
        if names is None:
            raise ValueError("BackdoorTrainer.push_to_hub needs protected_names=[...] (the removed names) so that what "
                             "is pushed can be scanned for them; BackdoorUnlearner.push_to_hub passes them for you.")
        if not self.args.hub_model_id:
            raise ValueError("Set args.hub_model_id to the repository to push to.")
        token = token or self.args.hub_token
        private = self.args.hub_private_repo if private is None else private
        if not self.is_world_process_zero():
            return None
        with tempfile.TemporaryDirectory(prefix="clip-backdoor-unlearn-push-") as staging:
            self.save_model(staging, _internal_call=True)
            for name in ("training_args.bin", "trainer_state.json"):  # arguments hold local paths: not for the Hub
                if os.path.exists(os.path.join(staging, name)):
                    os.remove(os.path.join(staging, name))
            self.create_model_card(**card_kwargs, _directory=staging)
            places = [self.args.output_dir, getattr(self.args, "logging_dir", None)]
            scanner = Scanner.for_publishing(names, token=token, paths=places)
            return push_folder(staging, self.args.hub_model_id, scanner=scanner, token=token,
                               private=private is not False, revision=revision,
                               commit_message=commit_message or "End of training",
                               names_allowed_in=("README.md",) if publish_names else ())

    # Model card -------------------------------------------------------------------------------------------------

    def create_model_card(
        self,
        language: str | None = None,
        license: str | None = None,
        tags: str | list[str] | None = None,
        model_name: str | None = None,
        finetuned_from: str | None = None,
        tasks: str | list[str] | None = None,
        dataset_tags: str | list[str] | None = None,
        dataset: str | list[str] | None = None,
        dataset_args: str | list[str] | None = None,
        *,
        num_removed: int | None = None,
        metrics: dict[str, Any] | None = None,
        _directory: str | None = None,
    ) -> None:
        """Write clip-backdoor-unlearn's card to ``output_dir/README.md`` instead of the Trainer's generic one.

        ``Trainer.push_to_hub`` calls this and forwards its extra keyword arguments, so
        ``trainer.push_to_hub(num_removed=3, metrics=unlearner.metrics)`` fills in the count and the figures. The
        generic card would describe the training data, which is made of the names; this one records the method,
        the hyperparameters, the count and the given metrics, never a name. ``tasks`` and the ``dataset*``
        arguments are accepted for compatibility and ignored for that reason.
        """
        if not self.is_world_process_zero():
            return
        from ..hub.model_card import build_model_card, trainer_card_data

        data = trainer_card_data(self, model_name=model_name, base_model=finetuned_from, num_removed=num_removed,
                                 metrics=metrics, tags=tags, license=license, language=language)
        directory = _directory or self.args.output_dir
        os.makedirs(directory, exist_ok=True)
        build_model_card(data).save(os.path.join(directory, "README.md"))
