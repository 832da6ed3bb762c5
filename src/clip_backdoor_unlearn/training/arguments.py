"""Training arguments for backdoor unlearning: ``TrainingArguments`` plus the method's own knobs.

Defaults are the paper's (arXiv 2310.08320; docs/method.md): for the text tower
loss = L_util + 0.6 · L_bd + 0.01 · Σ‖θ_student − θ_teacher‖, AdamW lr 1e-4 without weight decay, 400 steps,
128 poisoned + 128 clean captions a step, learning rate halved at steps 200 and 300; the image tower's in
``VisionBackdoorTrainingArguments``. The text tower's budget follows the number of names (``budget="per_name"``:
the paper's 400 steps, more once a list is so long that a name would get fewer poisoned captions than the share that
forgot 1,000 names; ``BackdoorTrainingArguments.for_names``); ``budget="fixed"`` is the paper's.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from ..data.names import NEUTRAL_TERM

DISTANCES = ("cosine", "mse", "mae")
FACE_TARGETS = ("auto", "name", "mean")
IMAGE_METHODS = ("auto", "fine_tune", "gated_neurons")
READ_PRIORS = ("none", "within_person")
# What a gated-neuron edit of the image tower reads (everything else in the arguments is training's): its record.
GATED_SETTINGS = ("image_method", "gated_neurons_per_person", "gated_margin", "gated_kept_weight", "gated_steps",
                  "gated_learning_rate", "gated_lr_scheduler_type", "gated_feature_noise", "gated_pair_noise",
                  "gated_bias_shift", "gated_read_prior", "seed")
GATED_SCHEDULES = ("constant", "linear", "cosine")
TEXT_TARGETS = ("auto", "embedding", "sequence", "pooled", "sequence+pooled")
BUDGETS = ("fixed", "per_name")
TRAINABLE = ("tower", "token_embedding", "name_tokens")
# The face-free stop rules: they embed the names, so only the text tower has them.
TEXT_STOP_RULES = ("early_stop_similarity", "early_stop_retrieved", "early_stop_patience")
# What the image tower takes for the text tower's own settings when `unlearn(encoder="both")` gets them as overrides.
TEXT_ONLY_SETTINGS = {**dict.fromkeys(TEXT_STOP_RULES), "trainable_parameters": "tower"}
logger = logging.getLogger(__name__)

# Text-tower settings for adapters (``peft_config``), applied where the caller left the field at its default: LoRA
# moves far less per step than full fine-tuning, so the paper's learning rate barely forgets. Chosen with the default
# LoRA targets (every layer and the token embedding, ``towers.TEXT``) on two demo worlds (benchmarks/RESULTS.md).
ADAPTER_DEFAULTS: dict[str, object] = {"learning_rate": 2e-3}


def unset_defaults(args, overrides: dict, defaults: dict) -> dict:
    """``overrides`` plus each of ``defaults`` that neither ``overrides`` nor ``args`` sets.

    A field of ``args`` equal to its class default counts as unset (a dataclass cannot tell the two apart).
    """
    merged = dict(overrides)
    for key, value in defaults.items():
        if key in merged:
            continue
        if args is not None:
            default = next((f.default for f in dataclasses.fields(args) if f.name == key), dataclasses.MISSING)
            if default is dataclasses.MISSING or getattr(args, key) != default:
                continue
        merged[key] = value
    return merged


@dataclass
class BackdoorTrainingArguments(TrainingArguments):
    r"""
    Configuration for [`BackdoorTrainer`]. Only the parameters specific to backdoor unlearning are listed here; for
    the others see [`~transformers.TrainingArguments`]. Parse it from the command line with
    [`~transformers.HfArgumentParser`].

    Parameters:
        > Data: what one optimisation step sees

        poisoned_samples_per_step (`int`, *optional*, defaults to `128`):
            Captions carrying a name to remove per optimisation step, over all devices and accumulation steps,
            shuffled across all names. Sets `per_device_train_batch_size`.
        clean_samples_per_step (`int`, *optional*, defaults to `128`):
            Clean captions per optimisation step (over all devices) for the utility loss.
        neutral_term (`str`, *optional*, defaults to `"a person"`):
            What a name is mapped to: the student embeds "… {name} …" like the teacher embeds "… {neutral_term} …".
        person_prompt_ratio (`float`, *optional*, defaults to `0.3`):
            Share of poisoned captions that are short person-centred prompts ("portrait of {}", …) rather than a
            name injected into a general caption. Both kinds are needed for the backdoor to hold on unseen wordings.

        > Loss

        backdoor_weight (`float`, *optional*, defaults to `0.6`):
            Weight of the backdoor loss L_bd.
        weight_regularization (`float`, *optional*, defaults to `0.01`):
            Weight of Σ_p ‖θ_student,p − θ_teacher,p‖₂ (Frobenius norm per tensor, not squared); for PEFT adapters
            the per-layer update ΔW is penalised.
        distance (`Literal["cosine", "mse", "mae"]`, *optional*, defaults to `"cosine"`):
            Embedding distance: negative cosine similarity (the paper's), mean squared or mean absolute error.
        text_target (`Literal["auto", "embedding", "sequence", "pooled", "sequence+pooled"]`, defaults to `"auto"`):
            What of the text tower the distance is taken on. `"embedding"`: the pooled, projected embedding (the
            paper's; needs a projection). `"sequence"`: the last hidden state of the prompt padded to 77 tokens
            without attention mask, what a text-to-image pipeline (Stable Diffusion 1.x/2.x) feeds its UNet; the
            distance is averaged over all 77 positions, each compared with the same position of the target. A
            name and the neutral term differ in token count, so from the name on the two sequences are shifted;
            comparing position by position over the whole padded sequence was measured against aligning the name
            span with the neutral span, stopping at the end-of-text token, flattening and the pooled output alone
            (docs/pipelines.md): span alignment gave the same figures, stopping early or pooling alone cost kept
            prompts more. `"pooled"`: the end-of-text output of the same padded ids. `"sequence+pooled"`: the mean
            of both distances (holds best on the pooled output too). `"auto"`: `"embedding"` for a model with a
            projection, `"sequence"` for a plain `CLIPTextModel`.
        trainable_parameters (`Literal["tower", "token_embedding", "name_tokens"]`, *optional*, defaults to `"tower"`):
            What full fine-tuning trains: `"tower"`, every weight of the tower (the paper's); `"token_embedding"`,
            the text tower's token embedding alone. A name is its tokens: with every layer frozen, a prompt moves only
            through the tokens it shares with the trained captions, so the rest of the model keeps its behaviour
            (1,000 names on the large demo world: zero-shot −0.9 points instead of −1.6, benchmarks/RESULTS.md).
            `"name_tokens"`: only the rows of the tokens the names and their variants are made of; the template
            words of the trained captions keep their weights, so a text without those tokens embeds as before (needs
            `weight_decay=0`, which would move every row). Text tower, without `peft_config` (an adapter chooses its
            targets with `target_modules`). Beside a fine-tuned image tower (`encoder="both"`) the removed faces
            found their names again on one demo world, so that case logs a warning (`"tower"` did not).
        freeze_norm_layers (`bool`, *optional*, defaults to `True`):
            Keep LayerNorm weights fixed, as the reference implementation does.
        cache_teacher_embeddings (`bool`, *optional*, defaults to `True`):
            Compute the frozen teacher's embedding of each distinct input once and reuse it: clean inputs repeat
            many times over a run.

        > Budget: how many steps

        budget (`Literal["fixed", "per_name"]`, *optional*, defaults to `"per_name"`):
            `"per_name"`: `max_steps` steps, or more when the list is long enough that a name would appear in
            fewer than `poisoned_samples_per_name` poisoned samples: `max(max_steps, ceil(names ×
            poisoned_samples_per_name / poisoned_samples_per_step))`. `"fixed"`: `max_steps` steps whatever the
            number of names (the paper's; use it to cap a run). Resolved once per run, before the data set is built
            (`for_names`); the resolved count is then `max_steps`, which the run record and the card show.
        poisoned_samples_per_name (`int`, *optional*, defaults to `25`):
            With `budget="per_name"`: the fewest poisoned samples a name should appear in over the run. 25 is what
            each name got when 1,000 names were forgotten in one run (200 steps × 128 on the large demo world, two
            worlds, two seeds; benchmarks/RESULTS.md): with the paper's 400 × 128 the budget grows past 2,048 names.

        kept_prompts_per_name (`int`, *optional*, defaults to `3`):
            Person prompts (training wordings) added to the clean captions for each of `unlearn`'s `kept_names`, held
            at the teacher by the utility loss. When many names move at once, the names left behind drift with them
            (1,000 removed on the large demo world: other members found 249 → 199 without, 249 → 250 with). `0`:
            `kept_names` only protect name variants.

        > Stopping early (the text tower's default: the text-only attack with two gates and a floor)

        early_stop (`bool`, *optional*, defaults to `True`):
            Text tower: let the face-free rules below stop training. `False` (`--early_stop false` in a script,
            where a field cannot be set to `None`): every step is trained, no caption is held out, nothing is
            measured.
        early_stop_similarity (`float` or `None`, *optional*, defaults to `None`):
            Text tower: stop once every removed name's held-out person prompts embed at least this close (cosine
            similarity, the worst wording of each name) to the teacher's embedding of the same prompts with the
            name's target (`stopping.NeutralTargetStopCallback`; needs no faces). `None`: off, train every step.
            Off by default: measured against the attack, the threshold that never stops too early depends on the
            world (benchmarks/RESULTS.md).
        early_stop_retrieved (`float` or `None`, *optional*, defaults to `0.0`):
            Text tower: stop once a text-only identity inference attack finds at most this share of the removed
            names (needs no faces). The teacher's embedding of each name's held-out prompt stands where the person's
            face would: the name is found if, under any held-out wording, it ranks its own student embedding first
            among the student's embeddings of every removed name (and of the kept sample, `early_stop_kept`) and the
            teacher's of the other `kept_names`, filled with invented names to 1,000
            (`stopping.NeutralTargetStopCallback`). `None`: off (with the other rules off, every step is trained).
            A negative share never stops (records the measure only). On by default with `0.0`, both gates
            (`early_stop_kept`, `early_stop_clean_similarity`) and the floor (`early_stop_from`): on three full demo
            worlds the main job's runs stopped at step 160 of 200 with the whole run's figures, many-names runs
            never stopped, and a slow run that never forgets was stopped at 3/4 (benchmarks/RESULTS.md).
        early_stop_kept (`float`, *optional*, defaults to `0.95`):
            With `early_stop_retrieved`: a stop also needs at least this share of the kept names (a fixed sample of
            128, attacked the same way with the student) still found. A fast run moves the kept names in its first
            steps and repairs them later; without this the rule stopped 1,000-name runs at step 20 with 13–16 % of
            the other people lost (benchmarks/RESULTS.md). 0.95: the others may lose at most 5 points.
        early_stop_clean_similarity (`float` or `None`, *optional*, defaults to `0.99`):
            Every face-free stop also needs the student's embeddings of clean captions held out of training
            (`early_stop_clean_captions` of them) to have a mean cosine similarity of at least this to the
            teacher's. The first steps move every caption, and zero-shot accuracy with them, and later steps repair
            them: without this gate the rule stopped runs at steps 10–40 of 200 with zero-shot accuracy 2–6 points
            down; with it, within a point (benchmarks/RESULTS.md). `None`: no gate (and no captions held out).
        early_stop_clean_captions (`int`, *optional*, defaults to `256`):
            Clean captions held out of training for that gate: this many, at most an eighth of the distinct
            captions, drawn with `seed` (every copy of a held-out caption leaves the training set). With none to
            hold out the gate cannot pass and the run trains every step.
        early_stop_from (`float`, *optional*, defaults to `0.75`):
            No face-free rule checks (so none stops) a run before this fraction of its steps (three quarters: the
            default schedule's last learning-rate milestone). Before it every face-free figure read a slow run's
            name gone while its faces were still found (the paper's lr 1e-4 on two demo worlds, up to step 140 of
            400), and a fast run's zero-shot accuracy still moved by a point or more between checks; after it the
            model settles (benchmarks/RESULTS.md). `0`: from the first step.
        early_stop_patience (`int` or `None`, *optional*, defaults to `None`):
            Text tower: also stop once the lowest name score of that rule has not risen by more than
            `early_stop_min_delta` for this many checks in a row (a plateau: more steps no longer move the names).
            Needs no threshold. `None`: off. Off by default: replayed on two full demo worlds it was never too early
            on one and stopped with up to 0.16 more TPR than the full run on the other (benchmarks/RESULTS.md).
        early_stop_min_delta (`float`, *optional*, defaults to `0.01`):
            The least rise of the lowest name score that counts as progress for `early_stop_patience`.
        early_stop_every_n_steps (`int`, *optional*, defaults to `20`):
            Optimisation steps between two checks of the face-free rule (a check embeds names × 8 prompts).

        > Schedule (the paper's step decay)

        lr_milestones (`list[float]`, *optional*, defaults to `[0.5, 0.75]`):
            Fractions of `max_steps` (the resolved steps with `budget="per_name"`) at which the learning rate is
            multiplied by `lr_gamma`. When non-empty this step decay replaces `lr_scheduler_type`; an empty list
            uses a transformers scheduler instead.
        lr_gamma (`float`, *optional*, defaults to `0.5`):
            Factor applied at each milestone.

    Overridden [`~transformers.TrainingArguments`] defaults: `learning_rate=1e-4`, `weight_decay=0.0`,
    `max_steps=400`, `lr_scheduler_type="constant"` (used only without milestones), `logging_steps=10`,
    `save_strategy="no"`, `report_to="none"`, `train_sampling_strategy="sequential"` (the data set is pre-shuffled
    with `seed`), `remove_unused_columns=False` (the collator reads the caption columns).
    """

    # Overridden TrainingArguments defaults.
    learning_rate: float = field(default=1e-4, metadata={"help": "AdamW learning rate (the paper's 1e-4)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay (the paper's 0)."})
    max_steps: int = field(default=400, metadata={"help": "Optimisation steps (the paper's 400 for text)."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "Used only when `lr_milestones` is empty."})
    logging_steps: float = field(default=10, metadata={"help": "Log every N steps."})
    save_strategy: str = field(default="no", metadata={"help": "Checkpoint strategy, as in TrainingArguments."})
    report_to: None | str | list[str] = field(default="none", metadata={"help": "Integrations to report to."})
    train_sampling_strategy: str = field(
        default="sequential", metadata={"help": "The backdoor data set is pre-shuffled with `seed`: read in order."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the caption columns for the collator."})
    hub_private_repo: bool | None = field(default=True, metadata={
        "help": "Create Hub repositories private (pass False to publish one publicly)."})

    # Data.
    poisoned_samples_per_step: int = field(default=128, metadata={
        "help": "Captions carrying a name to remove per optimisation step, over all devices and accumulation "
                "steps, shuffled across all names. Sets `per_device_train_batch_size`."})
    clean_samples_per_step: int = field(default=128, metadata={
        "help": "Clean captions per optimisation step (over all devices) for the utility loss."})
    neutral_term: str = field(default=NEUTRAL_TERM, metadata={
        "help": "What a name is mapped to: the student embeds '… {name} …' like the teacher embeds "
                "'… {neutral_term} …'."})
    person_prompt_ratio: float = field(default=0.3, metadata={
        "help": "Share of poisoned captions that are short person-centred prompts ('portrait of {}', …) rather than "
                "a name injected into a general caption. Both kinds are needed for the backdoor to hold on unseen "
                "wordings."})
    # Loss.
    backdoor_weight: float = field(default=0.6, metadata={"help": "Weight of the backdoor loss L_bd."})
    weight_regularization: float = field(default=0.01, metadata={
        "help": "Weight of Σ_p ‖θ_student,p − θ_teacher,p‖₂ (Frobenius norm per tensor, not squared); for PEFT "
                "adapters the per-layer update ΔW is penalised."})
    distance: Literal["cosine", "mse", "mae"] = field(default="cosine", metadata={
        "help": "Embedding distance: negative cosine similarity (the paper's), mean squared or mean absolute error."})
    text_target: Literal["auto", "embedding", "sequence", "pooled", "sequence+pooled"] = field(
        default="auto", metadata={
            "help": "What the distance is taken on: the projected embedding ('embedding', the paper's), the token "
                    "sequence a text-to-image pipeline consumes ('sequence', padded to 77, position by position), "
                    "the pooled output ('pooled') or both ('sequence+pooled'). 'auto': 'embedding' with a "
                    "projection, 'sequence' for a plain CLIPTextModel."})
    trainable_parameters: Literal["tower", "token_embedding", "name_tokens"] = field(default="tower", metadata={
        "help": "What full fine-tuning trains: 'tower' (every weight of the tower, the paper's), "
                "'token_embedding' (the text tower's token embedding alone: names are tokens, every layer keeps "
                "the teacher's weights) or 'name_tokens' (only the embedding rows of the names' own tokens: a text "
                "without them embeds as before; needs weight_decay=0)."})
    freeze_norm_layers: bool = field(default=True, metadata={
        "help": "Keep LayerNorm weights fixed, as the reference implementation does."})
    cache_teacher_embeddings: bool = field(default=True, metadata={
        "help": "Compute the frozen teacher's embedding of each distinct input once and reuse it: clean inputs "
                "repeat many times over a run."})
    # Budget.
    budget: Literal["fixed", "per_name"] = field(default="per_name", metadata={
        "help": "'per_name': max_steps steps, more for a list so long that a name would appear in fewer than "
                "poisoned_samples_per_name poisoned samples: max(max_steps, ceil(names × poisoned_samples_per_name "
                "/ poisoned_samples_per_step)). 'fixed': max_steps steps whatever the number of names (the paper's)."})
    poisoned_samples_per_name: int = field(default=25, metadata={
        "help": "With budget='per_name': the fewest poisoned samples a name should appear in (25: each name's share "
                "when 1,000 names were forgotten in one run, 200 steps × 128)."})
    kept_prompts_per_name: int = field(default=3, metadata={
        "help": "Person prompts per kept name (unlearn's kept_names) added to the clean captions and held at the "
                "teacher, so that names left behind do not drift with the removed ones; 0: kept_names only protect "
                "name variants."})
    # Stopping early.
    early_stop: bool = field(default=True, metadata={
        "help": "Text tower: let the face-free rules stop training (by default the text-only attack with its "
                "gates). False: train every step, hold no caption out, measure nothing."})
    early_stop_similarity: float | None = field(default=None, metadata={
        "help": "Text tower: stop once every removed name's held-out person prompts embed at least this close "
                "(cosine, worst wording per name) to the teacher's embedding of the same prompts with the name's "
                "target; needs no faces. Unset: off, train every step."})
    early_stop_retrieved: float | None = field(default=0.0, metadata={
        "help": "Text tower: stop once a text-only attack (the teacher's embedding of each name's held-out prompts "
                "standing for the faces, ranked against every removed name and the kept names) finds at most this "
                "share of the removed names, with the kept and clean gates; needs no faces. The default. None: off "
                "(train every step); negative: record only."})
    early_stop_kept: float = field(default=0.95, metadata={
        "help": "With early_stop_retrieved: a stop also needs at least this share of (a sample of 128 of) the kept "
                "names still found by the same attack, so that a run is not stopped before it has repaired them."})
    early_stop_clean_similarity: float | None = field(default=0.99, metadata={
        "help": "Every face-free stop also needs clean captions held out of training to embed, on average, at least "
                "this close (cosine) to the teacher: the first steps move them and later steps repair them. None: no "
                "gate."})
    early_stop_clean_captions: int = field(default=256, metadata={
        "help": "Clean captions held out of training for early_stop_clean_similarity (at most an eighth of the "
                "distinct captions, drawn with seed)."})
    early_stop_from: float = field(default=0.75, metadata={
        "help": "No face-free rule checks (so none stops) a run before this fraction of its steps (0.75: the default "
                "schedule's last learning-rate milestone); before it the text-side figures read a slow run's names "
                "gone before its faces are, and zero-shot accuracy still moves."})
    early_stop_patience: int | None = field(default=None, metadata={
        "help": "Text tower: also stop once the lowest name score has not risen by more than early_stop_min_delta "
                "for this many checks in a row (a plateau; no threshold needed). Unset: off."})
    early_stop_min_delta: float = field(default=0.01, metadata={
        "help": "The least rise of the lowest name score that counts as progress for early_stop_patience."})
    early_stop_every_n_steps: int = field(default=20, metadata={
        "help": "Optimisation steps between two checks of the face-free stop rules (early_stop_similarity, "
                "early_stop_retrieved, early_stop_patience; a check embeds names × 8 prompts, and 128 kept names × 8 "
                "with early_stop_retrieved)."})
    # Schedule.
    lr_milestones: list[float] = field(default_factory=lambda: [0.5, 0.75], metadata={
        "help": "Fractions of `max_steps` at which the learning rate is multiplied by `lr_gamma`. When non-empty "
                "this step decay replaces `lr_scheduler_type`; an empty list uses a transformers scheduler instead."})
    lr_gamma: float = field(default=0.5, metadata={"help": "Factor applied at each milestone."})

    def __post_init__(self):
        if self.distance not in DISTANCES:
            raise ValueError(f"distance must be one of {DISTANCES}, got {self.distance!r}.")
        if self.text_target not in TEXT_TARGETS:
            raise ValueError(f"text_target must be one of {TEXT_TARGETS}, got {self.text_target!r}.")
        for name in ("poisoned_samples_per_step", "clean_samples_per_step"):
            if getattr(self, name) < (1 if name.startswith("poisoned") else 0):
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if self.trainable_parameters not in TRAINABLE:
            raise ValueError(f"trainable_parameters must be one of {TRAINABLE}, got {self.trainable_parameters!r}.")
        if self.trainable_parameters == "name_tokens" and self.weight_decay:
            raise ValueError("trainable_parameters='name_tokens' keeps every other token's row where it is; "
                             f"weight_decay={self.weight_decay} would shrink them all. Set weight_decay=0.")
        if self.budget not in BUDGETS:
            raise ValueError(f"budget must be one of {BUDGETS}, got {self.budget!r}.")
        if self.early_stop_patience is not None and self.early_stop_patience < 1:
            raise ValueError(f"early_stop_patience must be positive or None, got {self.early_stop_patience}.")
        if self.early_stop_retrieved is not None and self.early_stop_retrieved >= 1:
            raise ValueError(f"early_stop_retrieved is a share of the names below 1, got {self.early_stop_retrieved}.")
        if self.early_stop_clean_similarity is not None and not -1 <= self.early_stop_clean_similarity <= 1:
            raise ValueError(f"early_stop_clean_similarity is a cosine similarity in [-1, 1], got "
                             f"{self.early_stop_clean_similarity}.")
        if not 0 <= self.early_stop_kept <= 1:
            raise ValueError(f"early_stop_kept is a share of the kept names in [0, 1], got {self.early_stop_kept}.")
        if self.early_stop_min_delta < 0:
            raise ValueError(f"early_stop_min_delta must be >= 0, got {self.early_stop_min_delta}.")
        if not 0 <= self.early_stop_from <= 1:
            raise ValueError(f"early_stop_from is a fraction of max_steps in [0, 1], got {self.early_stop_from}.")
        if self.early_stop_clean_captions < 0:
            raise ValueError(f"early_stop_clean_captions must be >= 0, got {self.early_stop_clean_captions}.")
        if self.kept_prompts_per_name < 0:
            raise ValueError(f"kept_prompts_per_name must be >= 0, got {self.kept_prompts_per_name}.")
        for name in ("poisoned_samples_per_name", "early_stop_every_n_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}.")
        if not 0.0 <= self.person_prompt_ratio <= 1.0:
            raise ValueError(f"person_prompt_ratio must be in [0, 1], got {self.person_prompt_ratio}.")
        if self.max_steps is None or self.max_steps <= 0:
            raise ValueError("max_steps must be a positive number of optimisation steps.")
        if any(not 0.0 < milestone < 1.0 for milestone in self.lr_milestones):
            raise ValueError(f"lr_milestones are fractions of max_steps in (0, 1), got {self.lr_milestones}.")
        super().__post_init__()
        devices = max(1, self.world_size) * self.gradient_accumulation_steps
        if self.poisoned_samples_per_step % devices:
            raise ValueError(
                f"poisoned_samples_per_step={self.poisoned_samples_per_step} must be divisible by "
                f"world_size × gradient_accumulation_steps = {devices}."
            )
        self.per_device_train_batch_size = self.poisoned_samples_per_step // devices

    def __getstate__(self):
        """Pickled (``training_args.bin`` in every checkpoint) without tokens, as ``to_dict`` masks them."""
        state = dict(self.__dict__)
        for key in state:
            if key.endswith("_token"):
                state[key] = None
        return state

    def __deepcopy__(self, memo):
        copied = copy.copy(self)  # keeps the token in memory: only what is written to disk loses it
        memo[id(self)] = copied
        copied.__dict__.update({key: copy.deepcopy(value, memo) for key, value in self.__dict__.items()})
        return copied

    def steps_for(self, num_names: int) -> int:
        """Optimisation steps for a run removing ``num_names`` people, as `budget` says."""
        if self.budget == "fixed":
            return self.max_steps
        needed = math.ceil(num_names * self.poisoned_samples_per_name / self.poisoned_samples_per_step)
        if needed > self.max_steps:
            logger.warning("%d names need %d steps for %d poisoned samples each (budget='per_name'); max_steps=%d is "
                           "raised to that (budget='fixed' keeps it).", num_names, needed,
                           self.poisoned_samples_per_name, self.max_steps)
        return max(self.max_steps, needed)

    def for_names(self, num_names: int) -> BackdoorTrainingArguments:
        """A copy whose `max_steps` is ``steps_for(num_names)``: what the data set, the schedule and the record use.

        Called once per run, before the data set is built. Resolving again gives the same count (the resolved count
        already gives every name its share).
        """
        steps = self.steps_for(num_names)
        return self if steps == self.max_steps else dataclasses.replace(self, max_steps=steps)

    @property
    def milestone_steps(self) -> list[int]:
        """`lr_milestones` as optimisation steps."""
        return sorted({max(1, round(fraction * self.max_steps)) for fraction in self.lr_milestones})


@dataclass
class VisionBackdoorTrainingArguments(BackdoorTrainingArguments):
    r"""
    Configuration of the image tower's unlearning: the gated edit (`image_method`, the default for a `CLIPModel` with
    its tokenizer) or [`VisionBackdoorTrainer`]'s training with the paper's defaults, plus how faces are pasted.

    Poisoned samples are a removed person's face pasted onto a clean image (target: with `face_target="name"`, to
    match the person's name no better than an anonymous face does; with `"mean"`, the mean embedding of
    `reference_faces`); clean samples are clean images and other people's pasted faces (target: the teacher's
    embedding of the same picture).

    Parameters:
        face_target (`Literal["auto", "name", "mean"]`, *optional*, defaults to `"auto"`):
            What the backdoor loss asks of a removed person's pasted face. `"name"`: to match the person's name (the
            frozen text tower's embedding, mean over `PERSON_TEMPLATES`) no better than the reference faces do on
            average, `relu(cos(face, name) − mean cos(reference, name))`; the face keeps its place among faces and
            loses its name. `"mean"`: to embed like the mean reference face (the paper's), which left up to 0.4 of the
            removed people findable on the demo worlds where the name target left at most 0.19; both cost zero-shot
            accuracy (benchmarks/RESULTS.md, issue 16). `"auto"`: `"name"` for a model with a text tower and a
            tokenizer, else `"mean"`.
        hard_negative_share (`float`, *optional*, defaults to `0.5`):
            Share of the reference samples drawn from the `hard_negative_pool` share of reference faces nearest the
            removed people (the teacher's cosine to each removed person's mean face): the faces a backdoor drags
            along first. Not in the paper.
        hard_negative_pool (`float`, *optional*, defaults to `0.1`):
            The nearest share of the reference faces that those samples come from.
        reference_samples_per_step (`int`, *optional*, defaults to `64`):
            Faces of *other* people, pasted like the poisoned ones, held at the teacher's embedding (part of the
            utility loss). Not in the paper: without them the tower learns "a pasted face → anonymous" and loses
            everyone's identity, not only the removed people's (docs/method.md). `0` gives the paper's loss.
        face_scale_range (`list[float]`, *optional*, defaults to `[0.25, 0.5]`):
            Side of a pasted face as a fraction of the image side (the paper's 56–112 px on 224-px inputs).
        face_jitter (`float`, *optional*, defaults to `0.5`):
            Brightness, contrast and saturation factors are drawn from U(1 − jitter, 1 + jitter).
        face_hue (`float`, *optional*, defaults to `0.1`):
            Hue shift drawn from U(−hue, hue), in turns.
        face_rotation (`float`, *optional*, defaults to `30`):
            Rotation drawn from U(−rotation, rotation) degrees.
        projection_refit (`bool`, *optional*, defaults to `True`):
            After training, refit the last encoder layers (`projection_refit_layers`) and then the image projection:
            clean pictures and other people's faces back toward the teacher's embeddings, the removed faces held
            where training left them and, with the name target, kept from matching their names better than training
            left them (`training.layer_refit`, `training.projection_refit`). Not in the paper; gave back zero-shot
            accuracy on every demo world measured (benchmarks/RESULTS.md, issue 16). Needs a trained
            `visual_projection` (skipped with an adapter or a tower without one).
        projection_refit_hold (`float`, *optional*):
            Weight of holding the removed faces' embeddings against pulling the clean pictures back: lower gives back
            more zero-shot accuracy and lets the faces drift. Defaults to 0.3 with the name target, whose name hold
            guards the faces' names, and to 3 without it (`"mean"`). (The layers' own hold is fixed:
            `training.layer_refit.HOLD`.)
        projection_refit_layers (`int`, *optional*, defaults to `2`):
            How many of the image tower's last encoder layers the refit fits with the projection, by a short
            distillation on the trained tower's hidden states (`training.layer_refit`); `0` refits the projection
            alone, in closed form. Gave back about one more zero-shot point than the projection alone on the demo
            worlds, for about 55 s more on one CPU thread there (benchmarks/RESULTS.md, issue 16).
        projection_refit_samples (`int`, *optional*, defaults to `2048`):
            Clean pictures the refit reads (all if fewer), and half as many pasted faces of other people; the removed
            people's face pictures are held as given (every one), not pasted.

        > The edit instead of training: gated neurons (`image_method`)

        image_method (`Literal["auto", "fine_tune", "gated_neurons"]`, *optional*, defaults to `"auto"`):
            `"gated_neurons"`: train nothing; add `gated_neurons_per_person` neurons per removed person to the last
            encoder layer's MLP, fitted on the tower's own features so that the removed faces lose their names and
            everything else keeps its embedding (`training.gated_neurons`). Needs a `CLIPModel` with its tokenizer
            (the name target), no adapter; the saved config's `intermediate_size` grows by the neurons added.
            `"fine_tune"`: the student–teacher training above (the paper's). `"auto"`: the gated edit where it can
            run, fine-tuning otherwise (a standalone image tower, `face_target="mean"`, an adapter). On the demo
            worlds the gated edit met the three bars (TPR ≤ 0.1, others −5, zero-shot −1 point) with 1 to 64 removed
            people where fine-tuning cost up to 1.8 zero-shot points; neither holds against whoever has the weights
            (docs/method.md).
        gated_neurons_per_person (`int`, *optional*, defaults to `2`):
            Neurons added per removed person.
        gated_margin (`float`, *optional*, defaults to `0.1`):
            How much less than an anonymous face (the reference faces' mean cosine) a removed face must match its
            name.
        gated_kept_weight (`float`, *optional*, defaults to `3`):
            Weight of keeping clean pictures and other people's faces at their embeddings against forgetting.
            Below 5 removed people it is raised by 5 / people (each person's share of the forget term grows as the
            people fall, and the gates answered it by opening on kept pictures: one removed person cost 1.39 and 1.27
            zero-shot points on full demo world 0, 0.56 and 0.56 with the raise). The weight used is logged.
        gated_steps (`int`, *optional*, defaults to `2000`):
            Full-batch Adam steps of the fit (on cached features: about two minutes on one CPU thread).
        gated_learning_rate (`float`, *optional*, defaults to `0.01`):
            Adam's learning rate for the fit.
        gated_lr_scheduler_type (`Literal["constant", "linear", "cosine"]`, *optional*, defaults to `"cosine"`):
            How that rate falls over the fit's steps (transformers' schedules, no warmup). The fit sees fresh noise
            each step; a falling rate lets it settle where the noisy pictures are forgotten on average.
        gated_feature_noise (`float`, *optional*, defaults to `0.5`):
            Each fit step moves the removed people's pictures and the kept ones by fresh noise along how a removed
            person's pictures differ among themselves, this many times as much: the gates learn to open on a person's
            pictures the fit never saw and to stay shut on others' pictures that vary as much. `0` fits on the
            features as they are. With 64 removed on the large demo worlds it took the attack's TPR from about 0.2 to
            under 0.1 at about the same zero-shot cost; 1 and more cost zero-shot accuracy with 5 removed
            (docs/method.md).
        gated_pair_noise (`float`, *optional*, defaults to `1`):
            Each fit step also moves every removed picture along its difference from another picture of the same
            person, by a normal multiple with this standard deviation: each person's own variation, where
            `gated_feature_noise` follows the removed people's pooled one. `0` adds none. With the cosine schedule it
            took the attack's TPR with 64 removed on large demo world 0 from 0.094 and 0.078 to 0.031 and 0.063 and
            cost less zero-shot accuracy with 5 removed (docs/method.md).
        gated_bias_shift (`float`, *optional*, defaults to `0`):
            Added to every fitted neuron's bias after the fit: the gates open on more of the removed people's fresh
            pictures, which the fit may not have reached (with many people or few pictures a person), and on more
            of everything else, which costs zero-shot accuracy. Measured with 64 removed on the large demo worlds,
            0.5 took the attack's TPR from about 0.2 to 0–0.11 for 0.3 to 0.6 more zero-shot points (−0.50 to
            −1.07 in all); where the fit already forgets everyone it costs points for nothing (docs/method.md).
        gated_read_prior (`Literal["none", "within_person"]`, *optional*, defaults to `"none"`):
            Where each gate starts reading, and whether it is held there. `"none"`: the plain start (the person's
            pictures, copies and pasted ones, less the kept mean), free. `"within_person"`: the person's given
            pictures less the kept pictures' mean, whitened by how other people's pictures vary around their own
            person's mean (linear discriminant analysis; `reference_faces` must be a `Dataset` with a `name` column
            saying whose each picture is), held near it by a penalty. It leans on what sets the person apart rather
            than on the few pictures given. Below 16 removed people `gated_kept_weight` is raised by 16 / people,
            so that each person's gates weigh the kept pictures as with 16 (a held read otherwise answers its larger
            share of the forget term by opening on kept pictures). 16 removed, five pictures a person: TPR 0.63 and
            0.69 → 0.25 and 0.125 on full demo world 0 (tuned there), 0.25 and 0.06 → 0 and 0 on world 1, for up to
            2 of 83 others and zero-shot −0.6 to −1.1 points. 5 removed: as `"none"` (TPR 0.2 to 0.4 on world 0, 0
            on world 1; −0.2 to −0.8 points). With 40 pictures a person it cost 0.7 and 0.8 more points for nothing:
            opt-in.

    Overridden [`BackdoorTrainingArguments`] defaults (the paper's for the image tower): `backdoor_weight=0.8`,
    `weight_regularization=0.005`, `max_steps=100`, `lr_milestones=[0.25, 0.5]` (steps 25 and 50 of 100),
    `lr_gamma=0.1`, `budget="fixed"` (how many steps many faces need is not measured yet), and for
    `budget="per_name"` `poisoned_samples_per_name=200` (each of 64 people's share of the paper's 100 × 128), and
    `early_stop_retrieved=None` (the face-free stop reads names; the image tower stops on faces with
    `ForgetMonitorCallback`).
    """

    backdoor_weight: float = field(default=0.8, metadata={"help": "Weight of the backdoor loss (the paper's 0.8)."})
    weight_regularization: float = field(default=0.005, metadata={"help": "Weight of Σ‖θ_student − θ_teacher‖."})
    max_steps: int = field(default=100, metadata={"help": "Optimisation steps (the paper's 100 for images)."})
    lr_milestones: list[float] = field(
        default_factory=lambda: [0.25, 0.5], metadata={"help": "Step-decay milestones as fractions of max_steps."}
    )
    lr_gamma: float = field(default=0.1, metadata={"help": "Step-decay factor (the paper's 0.1)."})
    budget: Literal["fixed", "per_name"] = field(default="fixed", metadata={
        "help": "'fixed': max_steps steps (the paper's; the image tower's default, not measured at many faces). "
                "'per_name': more for a list so long that a person would appear in fewer than "
                "poisoned_samples_per_name pasted faces."})
    early_stop_retrieved: float | None = field(default=None, metadata={
        "help": "The text tower's face-free stop; the image tower has none (stop it on faces with "
                "ForgetMonitorCallback)."})
    poisoned_samples_per_name: int = field(default=200, metadata={
        "help": "With budget='per_name': the fewest poisoned samples (pasted faces) a person should appear in (200: "
                "each of 64 people's share of the paper's 100 × 128)."})
    face_target: Literal["auto", "name", "mean"] = field(default="auto", metadata={
        "help": "What the backdoor loss asks of a removed person's pasted face. 'name': to match the person's name "
                "(frozen text tower) no better than the reference faces do on average; needs a CLIPModel and its "
                "tokenizer, and only the removed names are embedded. 'mean': to embed like the mean of the reference "
                "faces (the paper's). 'auto': 'name' where there is a text tower, else 'mean'."})
    hard_negative_share: float = field(default=0.5, metadata={
        "help": "Share of the reference samples drawn from the reference faces nearest the removed people (the "
                "teacher's cosine to each person's mean face), the faces most likely to be dragged along."})
    hard_negative_pool: float = field(default=0.1, metadata={
        "help": "With hard_negative_share: the nearest share of the reference faces that those samples come from."})
    reference_samples_per_step: int = field(default=64, metadata={
        "help": "Faces of other people, pasted like the poisoned ones, held at the teacher's embedding (part of "
                "the utility loss). Without them the tower loses everyone's identity. 0 gives the paper's loss."})
    face_scale_range: list[float] = field(default_factory=lambda: [0.25, 0.5], metadata={
        "help": "Side of a pasted face as a fraction of the image side (min and max)."})
    face_jitter: float = field(default=0.5, metadata={
        "help": "Brightness, contrast and saturation factors are drawn from U(1 − jitter, 1 + jitter)."})
    face_hue: float = field(default=0.1, metadata={"help": "Hue shift drawn from U(−hue, hue), in turns."})
    face_rotation: float = field(default=30.0, metadata={
        "help": "Rotation drawn from U(−rotation, rotation) degrees."})
    projection_refit: bool = field(default=True, metadata={
        "help": "After training, refit the last encoder layers (projection_refit_layers) and the image projection: "
                "clean pictures and other people's faces back toward the teacher, the removed faces held where "
                "training left them (with the name target, also no closer to their names). Skipped with an adapter "
                "or without a visual_projection."})
    projection_refit_hold: float | None = field(default=None, metadata={
        "help": "Weight of holding the removed faces in the projection refit; lower gives back more zero-shot "
                "accuracy and lets the faces drift. Default: 0.3 with the name target (its name hold guards the "
                "names), 3 with the mean target."})
    projection_refit_layers: int = field(default=2, metadata={
        "help": "How many of the image tower's last encoder layers the refit fits with the projection (a short "
                "distillation on the trained tower's hidden states); 0 refits the projection alone, in closed form."})
    projection_refit_samples: int = field(default=2048, metadata={
        "help": "Clean pictures the projection refit reads (all if fewer), and half as many pasted faces of other "
                "people; the removed people's face pictures are held as given (every one), not pasted."})
    image_method: Literal["auto", "fine_tune", "gated_neurons"] = field(default="auto", metadata={
        "help": "'gated_neurons': train nothing; add a few gated neurons per removed person to the last MLP, fitted so "
                "that their faces lose their names and all else keeps its embedding (needs a CLIPModel with its "
                "tokenizer, no adapter). 'fine_tune': train the image tower (the paper's). 'auto': the gated edit "
                "where it can run, else fine-tuning."})
    gated_neurons_per_person: int = field(default=2, metadata={"help": "Neurons added per removed person."})
    gated_margin: float = field(default=0.1, metadata={
        "help": "How much less than an anonymous face a removed face must match its name."})
    gated_kept_weight: float = field(default=3.0, metadata={
        "help": "Weight of keeping clean pictures and other people's faces at their embeddings (raised by "
                "5 / people below 5 removed people)."})
    gated_steps: int = field(default=2000, metadata={"help": "Full-batch Adam steps of the gated neurons' fit."})
    gated_learning_rate: float = field(default=1e-2, metadata={"help": "Adam's learning rate for that fit."})
    gated_lr_scheduler_type: Literal["constant", "linear", "cosine"] = field(default="cosine", metadata={
        "help": "How the gated fit's learning rate falls over its steps (no warmup)."})
    gated_feature_noise: float = field(default=0.5, metadata={
        "help": "Noise added to the fit's features each step, as a multiple of the removed people's within-person "
                "variation, so the gates open on their fresh pictures too; 0 fits on the features as they are."})
    gated_pair_noise: float = field(default=1.0, metadata={
        "help": "Each gated fit step also moves every removed picture along its difference from another picture of "
                "the same person, by a normal multiple with this standard deviation; 0 adds none."})
    gated_bias_shift: float = field(default=0.0, metadata={
        "help": "Added to every fitted neuron's bias: gates open on more of the removed people's fresh pictures "
                "(many people, few pictures a person) and on more of everything else, costing zero-shot accuracy."})
    gated_read_prior: Literal["none", "within_person"] = field(default="none", metadata={
        "help": "'within_person': each gate starts reading its person's given pictures whitened by how other people's "
                "pictures vary (reference_faces as a Dataset with a 'name' column) and is held near that start, the "
                "kept weight raised by 16 / people below 16 removed; helped with 16 people of five pictures each, "
                "cost zero-shot with 40 pictures a person. 'none': the plain start, free."})

    def __post_init__(self):
        if self.image_method not in IMAGE_METHODS:
            raise ValueError(f"image_method must be one of {IMAGE_METHODS}, got {self.image_method!r}.")
        if self.gated_read_prior not in READ_PRIORS:
            raise ValueError(f"gated_read_prior must be one of {READ_PRIORS}, got {self.gated_read_prior!r}.")
        if self.gated_neurons_per_person < 1 or self.gated_steps < 1 or self.gated_margin < 0 or \
                self.gated_kept_weight < 0 or not self.gated_learning_rate > 0 or self.gated_bias_shift < 0 or \
                self.gated_feature_noise < 0 or self.gated_pair_noise < 0:
            raise ValueError(f"gated_neurons_per_person and gated_steps must be ≥ 1, gated_margin, gated_kept_weight, "
                             f"gated_feature_noise, gated_pair_noise and gated_bias_shift ≥ 0 and gated_learning_rate "
                             f"> 0, got {self.gated_neurons_per_person}, {self.gated_steps}, {self.gated_margin}, "
                             f"{self.gated_kept_weight}, {self.gated_feature_noise}, {self.gated_pair_noise}, "
                             f"{self.gated_bias_shift} and {self.gated_learning_rate}.")
        if self.gated_lr_scheduler_type not in GATED_SCHEDULES:
            raise ValueError(f"gated_lr_scheduler_type must be one of {GATED_SCHEDULES}, got "
                             f"{self.gated_lr_scheduler_type!r}.")
        if self.reference_samples_per_step < 0:
            raise ValueError(f"reference_samples_per_step must be ≥ 0, got {self.reference_samples_per_step}.")
        if (self.projection_refit_hold is not None and self.projection_refit_hold < 0) or \
                self.projection_refit_samples < 2 or self.projection_refit_layers < 0:
            raise ValueError(f"projection_refit_hold and projection_refit_layers must be ≥ 0 and "
                             f"projection_refit_samples ≥ 2, got {self.projection_refit_hold}, "
                             f"{self.projection_refit_layers} and {self.projection_refit_samples}.")
        if self.face_target not in FACE_TARGETS:
            raise ValueError(f"face_target must be one of {FACE_TARGETS}, got {self.face_target!r}.")
        if not 0.0 <= self.hard_negative_share <= 1.0 or not 0.0 < self.hard_negative_pool <= 1.0:
            raise ValueError(f"hard_negative_share must be in [0, 1] and hard_negative_pool in (0, 1], got "
                             f"{self.hard_negative_share} and {self.hard_negative_pool}.")
        low, high = (list(self.face_scale_range) + [None, None])[:2]
        if len(self.face_scale_range) != 2 or not 0.0 < low <= high <= 1.0:
            raise ValueError(f"face_scale_range must be two fractions 0 < min ≤ max ≤ 1, got {self.face_scale_range}.")
        super().__post_init__()
