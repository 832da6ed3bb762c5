"""``ForgetMonitorCallback``: run the identity inference attack while unlearning; stop once the people are forgotten.

    from clip_backdoor_unlearn.callbacks import ForgetMonitorCallback

    monitor = ForgetMonitorCallback(processor, face_images, names=removed, candidate_names=pool, every_n_steps=10)
    trainer = BackdoorTrainer(..., callbacks=[monitor])     # or any transformers.Trainer on a CLIPModel
    trainer.train()                                         # stops at a check with TPR <= 0.1 (see stop_from)
    monitor.forgotten_step, monitor.forgotten_train_seconds, monitor.history

Every ``every_n_steps`` optimisation steps (and after the last one) the callback attacks the removed people's face
pictures, which should be pictures training never used, and records their IDIA true-positive rate. When it is at
most ``max_tpr`` and ``stop_from`` of the steps are done it sets ``control.should_training_stop``; the model is then
the one that passed the check. Before ``stop_from`` a pass is recorded but does not stop: the people are often
forgotten while the large middle steps still move everyone else, and the later, smaller steps repair that (a stop at
the first pass kept the damage, on either tower; the image tower's last quarter still repairs a point: docs/method.md).

The attack is the one of ``evaluation.identity_inference_attack`` (same prompts, voting and threshold; a check gives
the TPR that function would give on the model at that step), with the side that cannot change embedded only once:

* The tower that is not being trained does not change, so its side is embedded once, when training begins: the
  face pictures while the text tower trains, the prompts while the image tower trains. Which towers train is read
  from ``requires_grad`` (full fine-tuning or PEFT adapters).
* While the text tower trains, every candidate's prompts move (the kept names' too, if less), so a check embeds
  the whole pool again: ``len(templates) × len(candidate_names)`` texts, the bulk of a check's cost.
* ``reuse_kept_prompts=True`` (opt-in) makes most checks cheaper: a *screening* check re-embeds only the removed
  names' prompts and reuses the other candidates' from the last full embedding; only when it finds the TPR at most
  ``max_tpr`` is the whole pool embedded again, and only that exact figure can stop training. A stop is still an
  exact attack's verdict, but screening can delay it, because the removed names are then scored against stale
  embeddings of the others: on the demo CI world (text tower, lr 1e-3, checks every 10 steps) screening stopped at
  step 40 and 70 where exact checks stopped at 10 and 20 (4 and 16 people removed). Use it for pools too large to
  embed often, not to measure when forgetting happens.

Time spent in the checks is kept off the training clock: ``history[i]["train_seconds"]`` and
``forgotten_train_seconds`` are wall seconds since training began minus the seconds spent checking (the first
embedding included). Nothing the callback records or logs contains a name, only counts and rates: the entries are
appended to ``state.log_history`` as ``forget_idia_tpr`` (with the step), so they also reach
``UnlearningResult.log_history`` and checkpoints safely.

With several processes (``accelerate launch``) every process runs the same checks on the same synchronised weights
and so takes the same decision.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from ..evaluation.idia import (
    embed_people,
    embed_prompts,
    evaluation_mode,
    images_by_person,
    person_verdict,
    predict_candidates,
)
from ..evaluation.templates import IDIA_TEMPLATES, validate_templates
from .embeddings import model_device, processor_parts

_TEXT_PARTS = ("text_model.", "text_projection.")
_VISION_PARTS = ("vision_model.", "visual_projection.")


def _trained_towers(model: torch.nn.Module) -> tuple[bool, bool]:
    """(text tower trains, image tower trains), from ``requires_grad``; names may carry a PEFT prefix."""
    text = vision = False
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            dotted = f".{name}"
            text = text or any(f".{part}" in dotted for part in _TEXT_PARTS)
            vision = vision or any(f".{part}" in dotted for part in _VISION_PARTS)
    return text, vision


class CheckClock(TrainerCallback):
    """What the stopping monitors share: a check every ``every_n_steps`` steps and after the last, the first step
    that passed, and a training clock that leaves out the seconds spent checking."""

    every_n_steps: int

    def _reset_clock(self) -> None:
        self.history: list[dict[str, Any]] = []
        self.forgotten_step: int | None = None
        self.forgotten_train_seconds: float | None = None
        self.check_seconds = 0.0
        self.train_seconds: float | None = None
        self._start: float | None = None

    def _due(self, state: TrainerState) -> bool:
        return not state.global_step % self.every_n_steps or state.global_step >= state.max_steps

    def _train_clock(self, now: float | None = None) -> float:
        """Wall seconds since training began, minus the seconds spent checking."""
        return (time.perf_counter() if now is None else now) - self._start - self.check_seconds

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self._start is not None:
            self.train_seconds = self._train_clock()
        return control


class ForgetMonitorCallback(CheckClock):
    """Measure the removed people's IDIA TPR every ``every_n_steps`` steps; stop training when it is ``<= max_tpr``.

    Args:
        processor: the model's ``CLIPProcessor`` (tokenizer and image processor).
        face_images: pictures of (at least) the removed people: ``{name: [PIL.Image, ...]}`` or a ``datasets.Dataset``
            with ``image`` and ``name`` columns (other people's pictures in it are ignored). Use pictures that
            training never sees, as the attack does.
        names: the people being removed.
        candidate_names: the attack's pool of names; must contain every removed name, once.
        every_n_steps: check after every this many optimisation steps (and after the last step).
        max_tpr: training counts as done once the TPR on ``names`` is at most this (0.1: at most one in ten found).
        stop_training: set ``control.should_training_stop`` when done; ``False`` only records (``forgotten_step``
            is still the first step that passed).
        stop_from: no stop before this fraction of ``max_steps``; the first check from there that passes stops.
            ``None`` (default): 0.75 while only the text tower trains (as the face-free rule's ``early_stop_from``),
            1.0 while the image tower trains (its last steps still repair a point of zero-shot accuracy, so it
            trains them all). ``0``: the first check that passes.
        templates: the attack's prompt templates (default ``IDIA_TEMPLATES``, the 21 prompts of the paper).
        min_correct_prompts: τ, prompts that must vote for a person for them to count as detected.
        reuse_kept_prompts: screen with fresh embeddings of the removed names' prompts only, and confirm with a full
            re-embedding before stopping (cheaper, may stop later; see the module docstring). Only matters while
            the text tower trains.
        batch_size: texts or images per forward pass.
        log: append each check to ``state.log_history`` (``forget_idia_tpr``, ``forget_check_seconds``).

    Attributes:
        history: one dict per check: ``step``, ``tpr``, ``exact`` (whether the whole pool was re-embedded),
            ``screened_tpr`` (the screening figure that led to an exact check, else ``None``), ``train_seconds``
            (training clock at the check, checks excluded), ``check_seconds`` (this check's cost).
        forgotten_step, forgotten_train_seconds: the first check whose exact TPR was ``<= max_tpr`` (``None``
            before that).
        check_seconds: total seconds spent checking, the initial embedding included.
        train_seconds: the training clock when training ended (checks excluded).
    """

    def __init__(
        self,
        processor,
        face_images: Mapping[str, Sequence[Any]] | Any,
        names: Sequence[str],
        candidate_names: Sequence[str],
        *,
        every_n_steps: int = 10,
        max_tpr: float = 0.1,
        stop_training: bool = True,
        stop_from: float | None = None,
        templates: Sequence[str] | None = None,
        min_correct_prompts: int = 1,
        reuse_kept_prompts: bool = False,
        batch_size: int = 256,
        log: bool = True,
    ):
        if isinstance(names, str) or isinstance(candidate_names, str):
            raise TypeError("names and candidate_names must be sequences of names, not single strings.")
        names, candidate_names = list(dict.fromkeys(names)), list(candidate_names)
        if not names:
            raise ValueError("names is empty: give the people being removed.")
        if len(set(candidate_names)) != len(candidate_names):
            raise ValueError("candidate_names has duplicates; each candidate must appear once.")
        index = {name: i for i, name in enumerate(candidate_names)}
        absent = [i for i, name in enumerate(names) if name not in index]
        if absent:
            raise ValueError(f"{len(absent)} of the names are not in candidate_names (indexes {absent}).")
        people = images_by_person(face_images)
        missing = [i for i, name in enumerate(names) if not people.get(name)]
        if missing:
            raise ValueError(f"{len(missing)} of the names have no face images (indexes {missing}).")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}.")
        if stop_from is not None and not 0 <= stop_from <= 1:
            raise ValueError(f"stop_from is a fraction of the steps, between 0 and 1; got {stop_from!r}.")
        self.templates = validate_templates(IDIA_TEMPLATES if templates is None else templates)
        if not 1 <= min_correct_prompts <= len(self.templates):
            raise ValueError(f"min_correct_prompts must be between 1 and {len(self.templates)}.")

        self.tokenizer, self.image_processor = processor_parts(processor)
        self.names = names
        self.candidate_names = candidate_names
        self.people = {name: list(people[name]) for name in names}
        self.targets = torch.tensor([index[name] for name in names])
        self.every_n_steps = every_n_steps
        self.max_tpr = max_tpr
        self.stop_training = stop_training
        self.stop_from = stop_from
        self.min_correct_prompts = min_correct_prompts
        self.reuse_kept_prompts = reuse_kept_prompts
        self.batch_size = batch_size
        self.log = log
        self._reset()

    def _reset(self) -> None:
        self._reset_clock()
        self._prompts: torch.Tensor | None = None
        self._images: list[torch.Tensor] | None = None
        self._towers = (True, True)

    # The attack ------------------------------------------------------------------------------------------------

    def _embed_prompts(self, model, names: Sequence[str]) -> torch.Tensor:
        return embed_prompts(model, self.tokenizer, names, self.templates, batch_size=self.batch_size)

    def _embed_images(self, model) -> list[torch.Tensor]:
        return embed_people(model, self.image_processor, self.people, batch_size=self.batch_size)

    def _tpr(self, prompts: torch.Tensor, images: list[torch.Tensor]) -> float:
        device = prompts.device
        predictions = predict_candidates(torch.cat(images).to(device), prompts)
        detected = 0
        for target, person_predictions in zip(self.targets.tolist(), predictions.split([len(x) for x in images]),
                                              strict=True):
            detected += person_verdict(person_predictions, target, len(self.candidate_names),
                                       self.min_correct_prompts)[2]
        return detected / len(self.names)

    @torch.no_grad()
    def measure(self, model: torch.nn.Module, exact: bool = True) -> float:
        """The removed people's IDIA TPR under ``model`` now (``exact=False``: the screening figure).

        While the text tower trains, an exact measurement embeds every candidate's prompts (and refreshes the ones
        a screening reuses); a screening one only the removed names' prompts. The face pictures are embedded again
        only while the image tower trains. Outside training (no ``on_train_begin`` yet) both towers count as
        trained.
        """
        text_trains, vision_trains = self._towers
        with evaluation_mode(model):
            if self._images is None or vision_trains:
                self._images = self._embed_images(model)
            device = model_device(model)
            if self._prompts is None or (text_trains and exact):
                self._prompts = self._embed_prompts(model, self.candidate_names).to(device)
                prompts = self._prompts
            elif text_trains:
                prompts = self._prompts.clone()
                prompts[:, self.targets.to(device)] = self._embed_prompts(model, self.names).to(device)
            else:
                prompts = self._prompts
        return self._tpr(prompts, self._images)

    @torch.no_grad()
    def _embed_fixed_side(self, model: torch.nn.Module) -> None:
        """Embed what checks reuse: the side of the tower that does not train, and the prompts to screen with."""
        text_trains, vision_trains = self._towers
        with evaluation_mode(model):
            if not vision_trains:
                self._images = self._embed_images(model)
            if not text_trains or self.reuse_kept_prompts:
                self._prompts = self._embed_prompts(model, self.candidate_names).to(model_device(model))

    # Trainer hooks ---------------------------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None,
                       **kwargs):
        self._reset()
        self._start = time.perf_counter()
        if model is not None:
            self._towers = _trained_towers(model)
            # The side that does not train is embedded once, here (its cost counts as checking, not training).
            self._embed_fixed_side(model)
            self.check_seconds = time.perf_counter() - self._start

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, model=None,
                    **kwargs):
        step = state.global_step
        if model is None or not self._due(state):
            return control
        start = time.perf_counter()
        train_seconds = self._train_clock(start)
        text_trains = self._towers[0]
        screening = self.reuse_kept_prompts and text_trains
        screened_tpr = None
        tpr = self.measure(model, exact=not screening)
        if screening and tpr <= self.max_tpr:
            screened_tpr, tpr = tpr, self.measure(model, exact=True)
        seconds = time.perf_counter() - start
        self.check_seconds += seconds
        entry = {"step": step, "tpr": tpr, "exact": screened_tpr is not None or not screening,
                 "screened_tpr": screened_tpr, "train_seconds": train_seconds, "check_seconds": seconds}
        self.history.append(entry)
        if self.log:
            state.log_history.append({"step": step, "forget_idia_tpr": tpr, "forget_check_seconds": seconds})
        if entry["exact"] and tpr <= self.max_tpr:
            if self.forgotten_step is None:
                self.forgotten_step, self.forgotten_train_seconds = step, train_seconds
            if self.stop_training and step >= self.resolved_stop_from * state.max_steps:
                control.should_training_stop = True
        return control

    @property
    def resolved_stop_from(self) -> float:
        """``stop_from``, or its default for the towers that train (known once training has begun)."""
        if self.stop_from is not None:
            return self.stop_from
        return 1.0 if self._towers[1] else 0.75

    @property
    def last_tpr(self) -> float | None:
        """The TPR of the last check (``None`` before the first)."""
        return self.history[-1]["tpr"] if self.history else None
