"""``NeutralTargetStopCallback``: stop unlearning once every removed name embeds like its target; no faces needed.

    trainer = BackdoorTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    trainer.add_callback(NeutralTargetStopCallback(trainer, names, "a person", threshold=0.95))
    trainer.train()                     # stops at the first check where every name passes
    # or: BackdoorUnlearner.unlearn(names, early_stop_similarity=0.95)

``ForgetMonitorCallback`` stops on the identity inference attack, which needs pictures of the people. This rule
needs only the names: every ``every_n_steps`` optimisation steps (and after the last) it embeds, with the student
text tower, held-out person prompts filled with each removed name, and compares each with the teacher's embedding
of the same prompt filled with that name's target (the neutral term, or the name's pseudonym). The prompts are
``STOP_TEMPLATES``, wordings that neither training (``data.prompts.PERSON_TEMPLATES``) nor the attack
(``evaluation.templates.IDIA_TEMPLATES``) uses: a rule checked on the training wordings would pass on what was
fitted, and one checked on the attack's would tune the stop to the evaluation. A name's score is its *lowest*
cosine similarity over the wordings (``reduction="min"``): the attack finds a person through any one wording that
still works (τ = 1). Training stops once every name's score is at least ``threshold``, or, with ``patience``, once
the lowest score has not risen by more than ``min_delta`` over its best for ``patience`` checks in a row (a plateau:
like transformers' ``EarlyStoppingCallback``, but on the forgetting score). A threshold's scale moves with the
model; a plateau does not need one.

With ``max_retrieved`` the same pass of the student also runs a text-only attack: the teacher's embedding of a
removed name's wording stands where that person's faces would (the text tower was trained to meet the faces
there), and the name is *found* if, under any wording, its own student embedding ranks first among the student's
embeddings of every removed name and the teacher's of the ``pool`` (kept names, then invented names up to
``pool_size``, as the attack's default pool). Training stops once at most ``max_retrieved`` of the names are
found: a share of names, the attack's own scale, whatever the names are mapped to. With ``min_kept`` it also attacks
a fixed sample of the kept names with the student and stops only while at least that share of them is still found:
a fast run moves the people it must keep in its first steps and repairs them later (benchmarks/RESULTS.md).
With ``clean_texts`` and ``min_clean_similarity`` every stop, whatever its reason, also needs the student's
embeddings of those clean captions (held out of training) to be, on average, at least that close to the teacher's:
the first steps move everything else too, zero-shot accuracy with it, and the later ones repair it.

The teacher's embeddings of the target prompts are computed once, when training begins (one per distinct prompt:
``len(templates)`` when every name maps to one neutral term), and kept; a check embeds ``len(names) ×
len(templates)`` prompts with the student, and its cost is kept off the training clock as in
``ForgetMonitorCallback`` (``train_seconds`` = wall seconds since training began minus checking seconds; the
targets and the check before the first step count as checking). Both sides come from the trainer
(``BackdoorTrainer.embed_texts``): with full fine-tuning the teacher is the frozen model the trainer holds, with
PEFT adapters the same model with its adapters disabled.

Nothing recorded or logged holds a name, only counts and rates: each check is appended to ``state.log_history`` as
``forget_proxy_min_similarity``, ``forget_proxy_mean_similarity``, ``forget_proxy_names_below``,
``forget_proxy_retrieved`` and ``forget_proxy_kept_retrieved`` (with ``max_retrieved``, ``min_kept``),
``forget_proxy_clean_similarity`` (with ``clean_texts``) and ``forget_proxy_check_seconds`` (with the step). With
several processes each one computes the figures on the same synchronised weights, and the main process's figures
are broadcast to all, so every process takes the same decision even where rounding differs between devices.

How well this rule agrees with the attack is measured by ``benchmarks/stop_rule_agreement.py`` (figures in
benchmarks/RESULTS.md, issue 17): the score's scale moves with the world, so a threshold safe on one demo world
stopped too early on another; ``BackdoorTrainingArguments.early_stop_similarity`` is off by default. The default
rule is the text-only attack with both gates and a floor (``early_stop_retrieved=0``, ``early_stop_kept``,
``early_stop_clean_similarity``, ``early_stop_from``); where it holds and where it does not: docs/method.md.
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from accelerate.utils import broadcast
from transformers import TrainerControl, TrainerState, TrainingArguments

from ..data.prompts import neutral_terms
from ..evaluation.protocol import DEFAULT_POOL_SIZE, default_candidate_pool
from ..evaluation.templates import validate_templates
from ..hub.privacy import fold
from .callbacks import CheckClock
from .towers import TEXT

# Held-out person prompts: none is a training wording (PERSON_TEMPLATES) or an attack wording (IDIA_TEMPLATES);
# tests/training/test_stopping.py checks it. The name sits at the start, in the middle and at the end.
STOP_TEMPLATES: tuple[str, ...] = (
    "a photograph showing {}",
    "{} looking into the lens",
    "a studio portrait of {}",
    "{} standing in front of a building",
    "this is a picture of {}",
    "{} sitting at a desk",
    "an old photograph of {}",
    "a recent photo of {}",
)
REDUCTIONS = ("min", "mean")
KEPT_SAMPLE = 128  # kept names attacked at each check (with min_kept): their prompts are embedded by the student
MAX_NAMES = 256  # removed names checked: a fixed sample of a longer list (1,000 names: 3,328 texts a check, not 9,280)


class NeutralTargetStopCallback(CheckClock):
    """Every ``every_n_steps`` steps, score each removed name against its target; stop once all reach ``threshold``.

    Args:
        trainer: the ``BackdoorTrainer`` training the text tower; the student and the teacher are read through it.
        names: the people being removed.
        targets: what the names are mapped to: one neutral term for all, or ``{name: target}`` (pseudonyms).
        threshold: training counts as done once every name's score (a cosine similarity) is at least this; above 1
            it never is.
        max_retrieved: training also counts as done once the text-only attack finds at most this share of the names
            (``None``: not measured; below 0: measured and recorded, never a reason to stop).
        pool: other names a removed name competes with in that attack (``unlearn``'s ``kept_names``); removed names
            given here are left out.
        pool_size: the attack's candidates (removed names and pool) are filled with invented names up to this.
        min_kept: with ``max_retrieved``, a stop also needs at least this share of the ``pool`` (a fixed sample of
            ``kept_sample`` names, embedded by the student at each check) still found by the same attack: the first
            steps of a fast run move the kept names too and the later ones repair them, and a rule that read only
            the removed names would stop before the repair. ``None``: not measured. Without a pool it cannot be
            measured and does not hold a stop back.
        kept_sample: how many of the pool's names the ``min_kept`` side attacks.
        max_names: a longer list is checked on a fixed sample of this many of its names (every rule then reads the
            sample: "every name" is every sampled name, shares are the sample's).
        min_step: no check (so no stop) before this optimisation step, and no check before the first step either
            (``unlearn`` passes three quarters of the budget, the default schedule's last learning-rate milestone:
            before it the text-side figures read a slow run's names gone before its faces are, and zero-shot
            accuracy still moves by a point or more between checks; benchmarks/RESULTS.md).
        clean_texts: clean captions training does not see (``unlearn`` holds them out of the caption set).
        min_clean_similarity: every stop also needs the student's embeddings of ``clean_texts`` to have a mean
            cosine similarity of at least this to the teacher's (``None``: not measured). With no ``clean_texts`` it
            cannot be measured and holds every stop back.
        patience: also stop once the lowest score has not improved on its best by more than ``min_delta`` for this
            many checks in a row (``None``: never on a plateau). The check before the first step does not count.
        min_delta: the least rise of the lowest score that counts as progress.
        every_n_steps: check after every this many optimisation steps (and after the last step).
        templates: the held-out wordings, each with one ``{}`` (default ``STOP_TEMPLATES``).
        reduction: a name's score over the wordings: ``"min"`` (the worst wording, the default) or ``"mean"``.
        stop_training: set ``control.should_training_stop`` when done; ``False`` only records.
        batch_size: prompts per forward pass.
        log: append each check to ``state.log_history``.

    Attributes:
        history: one dict per check: ``step``, ``min_similarity`` and ``mean_similarity`` (over names),
            ``names_below`` (names under ``threshold``), ``retrieved`` and ``kept_retrieved`` (the shares of the
            removed and of the sampled kept names found, or ``None``), ``clean_similarity`` (or ``None``),
            ``train_seconds``, ``check_seconds``. The
            first entry is the check before the first step, which never stops training.
        forgotten_step, forgotten_train_seconds: the first check that ended training, by the threshold or a plateau
            (``None`` before that); ``stop_reason`` says which (``"threshold"``, ``"retrieval"`` or ``"plateau"``).
        check_seconds: total seconds spent checking, the teacher's targets included.
        train_seconds: the training clock when training ended (checks excluded).
    """

    def __init__(
        self,
        trainer,
        names: Sequence[str],
        targets: str | Mapping[str, str],
        *,
        threshold: float = float("inf"),
        max_retrieved: float | None = None,
        pool: Sequence[str] = (),
        pool_size: int = DEFAULT_POOL_SIZE,
        min_kept: float | None = None,
        kept_sample: int = KEPT_SAMPLE,
        max_names: int = MAX_NAMES,
        min_step: int = 0,
        clean_texts: Sequence[str] = (),
        min_clean_similarity: float | None = None,
        patience: int | None = None,
        min_delta: float = 0.0,
        every_n_steps: int = 20,
        templates: Sequence[str] | None = None,
        reduction: Literal["min", "mean"] = "min",
        stop_training: bool = True,
        batch_size: int = 256,
        log: bool = True,
    ):
        if getattr(trainer, "tower", None) is not TEXT or not hasattr(trainer, "embed_texts"):
            raise TypeError("NeutralTargetStopCallback reads the text tower: give it the BackdoorTrainer that trains "
                            "one (for the image tower use ForgetMonitorCallback).")
        if isinstance(names, str):
            raise TypeError("names must be a sequence of names, not a single string.")
        names = list(dict.fromkeys(names))
        if not names:
            raise ValueError("names is empty: give the people being removed.")
        if isinstance(every_n_steps, bool) or not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps must be a positive integer, got {every_n_steps!r}.")
        if patience is not None and (isinstance(patience, bool) or not isinstance(patience, int) or patience < 1):
            raise ValueError(f"patience must be a positive integer or None, got {patience!r}.")
        if min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {min_delta!r}.")
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}.")
        if min_kept is not None and not 0.0 <= min_kept <= 1.0:
            raise ValueError(f"min_kept is a share of the kept names in [0, 1], got {min_kept!r}.")
        if min_clean_similarity is not None and not -1.0 <= min_clean_similarity <= 1.0:
            raise ValueError(f"min_clean_similarity is a cosine similarity in [-1, 1], got {min_clean_similarity!r}.")
        if isinstance(clean_texts, str):
            raise TypeError("clean_texts must be a sequence of captions, not a single string.")
        if max_retrieved is not None and not max_retrieved < 1.0:
            raise ValueError(f"max_retrieved is a share of the names below 1 (below 0: record only), got "
                             f"{max_retrieved!r}.")
        if isinstance(min_step, bool) or not isinstance(min_step, int) or min_step < 0:
            raise ValueError(f"min_step must be a non-negative integer, got {min_step!r}.")
        if isinstance(max_names, bool) or not isinstance(max_names, int) or max_names < 1:
            raise ValueError(f"max_names must be a positive integer, got {max_names!r}.")
        self.trainer = trainer
        self.targets = neutral_terms(names, targets)
        # A long list is checked on a fixed sample of its names: a check's cost stops growing with the list.
        checked = set(random.Random(0).sample(range(len(names)), min(max_names, len(names))))
        self.names = [name for index, name in enumerate(names) if index in checked]
        self.templates = validate_templates(STOP_TEMPLATES if templates is None else templates)
        self.threshold = float(threshold)
        self.max_retrieved = max_retrieved
        removed = {fold(name) for name in names}
        others = [name for name in dict.fromkeys(pool) if fold(name) not in removed]
        self.min_kept = min_kept
        self.min_clean_similarity = min_clean_similarity
        self.min_step = min_step
        self.clean_texts = list(clean_texts) if min_clean_similarity is not None else []
        # The people who must stay findable, a fixed sample of them: they are attacked too, by the student.
        chosen = set(random.Random(0).sample(range(len(others)), min(kept_sample, len(others))))
        self.kept = [name for index, name in enumerate(others) if index in chosen] if min_kept is not None else []
        # The other candidates a removed name competes with, as in the attack: the pool, then invented names.
        pool = default_candidate_pool([*names, *others], pool_size, reserved=list(self.targets.values()))[len(names):]
        sampled = set(self.kept)
        self.pool = [name for name in pool if name not in sampled]
        self.patience = patience
        self.min_delta = float(min_delta)
        self.every_n_steps = every_n_steps
        self.reduction = reduction
        self.stop_training = stop_training
        self.batch_size = batch_size
        self.log = log
        self._reset()

    def _reset(self) -> None:
        self._reset_clock()
        self._teacher: torch.Tensor | None = None  # one row per distinct target prompt
        self._rows: torch.Tensor | None = None  # for each (name, template), its row of ``_teacher``
        self._queries: torch.Tensor | None = None  # the teacher's embedding of each (name, template) prompt
        self._others: torch.Tensor | None = None  # the teacher's embedding of each (pool name, template) prompt
        self._kept_queries: torch.Tensor | None = None  # the teacher's embedding of each (kept name, template) prompt
        self._clean: torch.Tensor | None = None  # the teacher's unit-length embedding of each clean caption
        self.stop_reason: str | None = None
        self._best = float("-inf")  # the best lowest score since training began
        self._stale = 0  # checks in a row without progress on it

    # The measurement --------------------------------------------------------------------------------------------

    def _prompts(self, names: Sequence[str]) -> list[str]:
        return [template.format(name) for name in names for template in self.templates]

    def _embed_targets(self) -> None:
        """The teacher's embeddings, once: each distinct target prompt and, for the retrieval measure, each removed
        name's own prompts (where the faces are) and the pool's."""
        prompts = [template.format(self.targets[name]) for name in self.names for template in self.templates]
        distinct = {prompt: row for row, prompt in enumerate(dict.fromkeys(prompts))}
        self._teacher = self.trainer.embed_texts(list(distinct), teacher=True, batch_size=self.batch_size)
        self._rows = torch.tensor([distinct[prompt] for prompt in prompts], device=self._teacher.device)
        if self.max_retrieved is not None:
            self._queries = self._teacher_prompts(self.names)
            self._others = self._teacher_prompts(self.pool)
            self._kept_queries = self._teacher_prompts(self.kept)
        if self.clean_texts:
            self._clean = F.normalize(
                self.trainer.embed_texts(self.clean_texts, teacher=True, batch_size=self.batch_size), dim=-1)

    def _teacher_prompts(self, names: Sequence[str]) -> torch.Tensor:
        """The teacher's unit-length embeddings of ``names`` in every wording, ``(names, templates, dim)``."""
        dim = self._teacher.shape[-1]
        if not names:
            return self._teacher.new_zeros((0, len(self.templates), dim))
        embedded = self.trainer.embed_texts(self._prompts(names), teacher=True, batch_size=self.batch_size)
        return F.normalize(embedded, dim=-1).reshape(len(names), len(self.templates), dim)

    def _student(self, kept: bool = False, clean: bool = False) -> torch.Tensor:
        """The student's embedding of each removed name's held-out prompts, ``(names × templates, dim)``, followed
        with ``kept`` by the sampled kept names' and with ``clean`` by the clean captions'."""
        if self._teacher is None:
            self._embed_targets()
        names = [*self.names, *self.kept] if kept else self.names
        texts = self._prompts(names) + (self.clean_texts if clean else [])
        return self.trainer.embed_texts(texts, batch_size=self.batch_size)

    def _similarity_scores(self, student: torch.Tensor) -> torch.Tensor:
        similarity = F.cosine_similarity(student, self._teacher[self._rows], dim=-1)
        similarity = similarity.reshape(len(self.names), len(self.templates))
        return similarity.min(dim=1).values if self.reduction == "min" else similarity.mean(dim=1)

    def _retrieved(self, student: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For each removed name, and each sampled kept name, whether the text-only attack still finds it (1.0).

        The teacher's embedding of a name's prompt stands where the person's face stands in the identity inference
        attack (the text tower was trained to meet the faces there): under each wording it is compared with the
        student's embeddings of every removed and sampled kept name and the teacher's of the rest of the pool, and
        the name is found if its own prompt ranks first under any one wording (τ = 1).
        """
        student = F.normalize(student, dim=-1).reshape(-1, len(self.templates), student.shape[-1])
        candidates = torch.cat([student, self._others], dim=0)  # (candidates, templates, dim)
        queries = torch.cat([self._queries, self._kept_queries], dim=0)
        similarity = torch.einsum("ntd,ctd->tnc", queries, candidates)  # (templates, names, candidates)
        own = torch.arange(len(queries), device=similarity.device)
        found = (similarity.argmax(dim=-1) == own).any(dim=0).float()
        return found[: len(self.names)], found[len(self.names):]

    @torch.no_grad()
    def scores(self) -> torch.Tensor:
        """Each name's score now: its cosine similarity to its target over the wordings (``reduction``), as the main
        process computed it."""
        return broadcast(self._similarity_scores(self._student()).contiguous(), from_process=0)

    @torch.no_grad()
    def measure(self) -> tuple[torch.Tensor, float | None, float | None, float | None]:
        """``scores()``; with ``max_retrieved`` set, the shares of the removed names and of the sampled kept names
        the text-only attack still finds; with ``clean_texts``, the clean captions' mean cosine similarity to the
        teacher (``None`` where not measured). One pass of the student, the main process's figures."""
        retrieval, clean = self.max_retrieved is not None, bool(self.clean_texts)
        student = self._student(kept=retrieval, clean=clean)
        if clean:
            student, captions = student[: -len(self.clean_texts)], student[-len(self.clean_texts):]
        figures = self._similarity_scores(student[: len(self.names) * len(self.templates)])
        extra = []  # every process has the same kept sample and captions, so the same figures in the same order
        if retrieval:
            removed, kept = self._retrieved(student)
            extra += [removed.mean(), *([kept.mean()] if self.kept else [])]
        if clean:
            extra.append((F.normalize(captions, dim=-1) * self._clean.to(captions.device)).sum(dim=-1).mean())
        if extra:
            figures = torch.cat([figures, torch.stack(extra).to(figures.dtype)])
        figures = broadcast(figures.contiguous(), from_process=0)
        count = len(self.names)
        tail = iter(figures[count:].tolist())
        retrieved = next(tail) if retrieval else None
        kept_share = next(tail) if retrieval and self.kept else None
        clean_similarity = next(tail) if clean else None
        return figures[:count], retrieved, kept_share, clean_similarity

    def _check(self, state: TrainerState, decide: bool) -> None:
        start = time.perf_counter()
        train_seconds = self._train_clock(start)
        scores, retrieved, kept, clean = self.measure()
        seconds = time.perf_counter() - start
        self.check_seconds += seconds
        below = int((scores < self.threshold).sum())
        entry = {"step": state.global_step, "min_similarity": scores.min().item(),
                 "mean_similarity": scores.mean().item(), "names_below": below, "retrieved": retrieved,
                 "kept_retrieved": kept, "clean_similarity": clean, "train_seconds": train_seconds,
                 "check_seconds": seconds}
        self.history.append(entry)
        if self.log:
            logged = {"step": entry["step"], "forget_proxy_min_similarity": entry["min_similarity"],
                      "forget_proxy_mean_similarity": entry["mean_similarity"], "forget_proxy_names_below": below,
                      "forget_proxy_check_seconds": seconds}
            if retrieved is not None:
                logged["forget_proxy_retrieved"] = retrieved
            if kept is not None:
                logged["forget_proxy_kept_retrieved"] = kept
            if clean is not None:
                logged["forget_proxy_clean_similarity"] = clean
            state.log_history.append(logged)
        if not decide or self.forgotten_step is not None:
            return
        lowest = entry["min_similarity"]
        if lowest > self._best + self.min_delta:
            self._best, self._stale = lowest, 0
        else:
            self._stale += 1
        if self.min_clean_similarity is not None and (clean is None or clean < self.min_clean_similarity):
            return  # everything else has not come back yet: no reason stops the run
        if below == 0:
            self.stop_reason = "threshold"
        elif retrieved is not None and retrieved <= self.max_retrieved and (kept is None or kept >= self.min_kept):
            self.stop_reason = "retrieval"
        elif self.patience is not None and self._stale >= self.patience:
            self.stop_reason = "plateau"
        if self.stop_reason is not None:
            self.forgotten_step, self.forgotten_train_seconds = state.global_step, train_seconds

    # Trainer hooks ------------------------------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self._reset()
        self._start = time.perf_counter()
        if self.min_step > 0:
            return control  # nothing is measured before min_step: no figure there could stop the run
        self._embed_targets()
        self.check_seconds = time.perf_counter() - self._start
        self._check(state, decide=False)  # where the names start: recorded, never a reason to stop
        return control

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if not self._due(state) or state.global_step < self.min_step:
            return control
        self._check(state, decide=True)
        if self.forgotten_step == state.global_step and self.stop_training:
            control.should_training_stop = True
        return control

    @property
    def last_min_similarity(self) -> float | None:
        """The lowest name score of the last check (``None`` before the first)."""
        return self.history[-1]["min_similarity"] if self.history else None
