"""NeutralTargetStopCallback: a face-free stop rule on held-out wordings, teacher targets embedded once, no names."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clip_backdoor_unlearn import BackdoorTrainer, BackdoorTrainingArguments, BackdoorUnlearner, build_backdoor_dataset
from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
from clip_backdoor_unlearn.evaluation.templates import IDIA_TEMPLATES
from clip_backdoor_unlearn.training import jobs, stopping
from clip_backdoor_unlearn.training.embeddings import encode_texts
from clip_backdoor_unlearn.training.stopping import STOP_TEMPLATES, NeutralTargetStopCallback

from ..conftest import NAMES

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS, EVERY = 24, 3
NAME_PARTS = [part for name in NAMES for part in name.split()]


@pytest.fixture(scope="module")
def tiny(captions):
    from clip_backdoor_unlearn.demo.tiny import tiny_clip

    return tiny_clip(corpus=captions[:300], seed=0)


def make_trainer(model, processor, captions, peft_config=None, steps: int = STEPS) -> BackdoorTrainer:
    args = BackdoorTrainingArguments(output_dir="unused", max_steps=steps, learning_rate=3e-3,
                                     poisoned_samples_per_step=8, clean_samples_per_step=8, logging_steps=100,
                                     disable_tqdm=True, seed=0, report_to="none")
    dataset = build_backdoor_dataset(NAMES, captions[:300], num_steps=steps, poisoned_samples_per_step=8,
                                     clean_samples_per_step=8, seed=0, tokenizer=processor.tokenizer)
    return BackdoorTrainer(model=copy.deepcopy(model), args=args, train_dataset=dataset, processing_class=processor,
                           peft_config=peft_config)


def train(tiny, captions, threshold: float = float("inf"),
          **kwargs) -> tuple[BackdoorTrainer, NeutralTargetStopCallback]:
    trainer = make_trainer(*tiny, captions, peft_config=kwargs.pop("peft_config", None))
    callback = NeutralTargetStopCallback(trainer, NAMES, "a person", threshold=threshold, every_n_steps=EVERY,
                                         **kwargs)
    trainer.add_callback(callback)
    trainer.train()
    return trainer, callback


def similarities(student, teacher, tokenizer, targets: dict[str, str]) -> torch.Tensor:
    """cos(student(wording with the name), teacher(wording with its target)), names × wordings, from scratch."""
    with_names = encode_texts(student, tokenizer, [t.format(n) for n in NAMES for t in STOP_TEMPLATES])
    with_targets = encode_texts(teacher, tokenizer, [t.format(targets[n]) for n in NAMES for t in STOP_TEMPLATES])
    return F.cosine_similarity(with_names, with_targets).reshape(len(NAMES), len(STOP_TEMPLATES))


def test_held_out_wordings_are_neither_training_nor_attack_wordings():
    def fold(template: str) -> str:
        return " ".join(template.casefold().replace(",", " ").split())

    held_out = {fold(template) for template in STOP_TEMPLATES}
    assert len(held_out) == len(STOP_TEMPLATES) and all(t.count("{}") == 1 for t in STOP_TEMPLATES)
    assert not held_out & {fold(template) for template in PERSON_TEMPLATES}
    assert not held_out & {fold(template) for template in IDIA_TEMPLATES}


def test_an_unreachable_threshold_never_stops_and_a_reached_one_stops_at_its_first_check(tiny, captions):
    trainer, never = train(tiny, captions, threshold=1.01)
    assert trainer.state.global_step == STEPS and never.forgotten_step is None
    assert [entry["step"] for entry in never.history] == list(range(0, STEPS + 1, EVERY))
    figures = [entry["min_similarity"] for entry in never.history]
    assert figures[-1] > figures[0]  # training moves the names towards their target on unseen wordings
    assert all(entry["names_below"] == len(NAMES) for entry in never.history)

    # A threshold the run reaches before its end: the best figure of the checks between the first and the last.
    threshold = max(figures[1:-1]) - 1e-5
    expected = next(entry["step"] for entry in never.history[1:] if entry["min_similarity"] >= threshold)
    trainer, stopped = train(tiny, captions, threshold=threshold)
    assert trainer.state.global_step == stopped.forgotten_step == expected < STEPS
    assert stopped.history[-1]["names_below"] == 0 and stopped.forgotten_train_seconds > 0
    assert [entry["min_similarity"] for entry in stopped.history] == pytest.approx(
        figures[: len(stopped.history)], abs=1e-6)  # the same run, cut at its first passing check
    assert all(entry["names_below"] > 0 for entry in stopped.history[:-1])


def test_a_plateau_stops_after_patience_checks_without_progress(tiny, captions):
    _, never = train(tiny, captions, threshold=1.01)
    figures = [entry["min_similarity"] for entry in never.history]
    # A min_delta larger than any rise between checks: the first check sets the best, the next `patience` stall.
    trainer, stopped = train(tiny, captions, patience=2, min_delta=2.0)
    assert trainer.state.global_step == stopped.forgotten_step == 3 * EVERY and stopped.stop_reason == "plateau"
    # With min_delta 0 the rule replays the same series: it stops at the first check that ends `patience` checks
    # without a new best, or never.
    best, stale, expected = float("-inf"), 0, None
    for entry, figure in zip(never.history[1:], figures[1:]):
        best, stale = (figure, 0) if figure > best else (best, stale + 1)
        if stale >= 2:
            expected = entry["step"]
            break
    trainer, replay = train(tiny, captions, patience=2)
    assert replay.forgotten_step == expected and trainer.state.global_step == (expected or STEPS)
    assert replay.stop_reason == ("plateau" if expected else None)
    _, reached = train(tiny, captions, threshold=-1.0, patience=1, min_delta=2.0)
    assert reached.stop_reason == "threshold"  # both true at the first check: the threshold is the reason given


def test_a_check_before_the_first_step_never_stops_training(tiny, captions):
    trainer, callback = train(tiny, captions, threshold=-1.0)  # every name passes from the start
    assert callback.history[0]["step"] == 0 and callback.history[0]["names_below"] == 0
    assert trainer.state.global_step == callback.forgotten_step == EVERY
    # Nor does anything before min_step: nothing is measured there, and the first check at or after it stops.
    trainer, floored = train(tiny, captions, threshold=-1.0, min_step=2 * EVERY + 1)
    assert trainer.state.global_step == floored.forgotten_step == 3 * EVERY
    assert [entry["step"] for entry in floored.history] == [3 * EVERY]
    with pytest.raises(ValueError, match="min_step"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", min_step=-1)
    with pytest.raises(ValueError, match="early_stop_from"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_from=1.5)


def test_scores_are_the_similarity_to_the_original_model_s_targets(tiny, captions):
    model, processor = tiny
    trainer, callback = train(tiny, captions, threshold=1.01)
    matrix = similarities(trainer.model, model, processor.tokenizer, dict.fromkeys(NAMES, "a person"))
    assert callback.scores().tolist() == pytest.approx(matrix.min(dim=1).values.tolist(), abs=1e-5)
    assert callback.history[-1]["min_similarity"] == pytest.approx(matrix.min().item(), abs=1e-5)
    mean = NeutralTargetStopCallback(trainer, NAMES, "a person", threshold=0.5, reduction="mean")
    assert mean.scores().tolist() == pytest.approx(matrix.mean(dim=1).tolist(), abs=1e-5)
    # Embedded again now that the student has moved, the targets are still the frozen teacher's.
    targets = encode_texts(model, processor.tokenizer, [t.format("a person") for t in STOP_TEMPLATES])
    callback._embed_targets()
    assert torch.allclose(callback._teacher.cpu(), targets, atol=1e-5)


KEPT = ["Kept Person", "Other Keeper"]


def retrieved_from_scratch(student, teacher, tokenizer, pool: list[str]) -> list[bool]:
    """The text-only attack by hand: under each wording, the teacher's prompt of a name against the student's prompts
    of every removed name and the teacher's of the pool; found if its own ranks first under any wording."""
    found = [False] * len(NAMES)
    for template in STOP_TEMPLATES:
        queries = F.normalize(encode_texts(teacher, tokenizer, [template.format(n) for n in NAMES]), dim=-1)
        candidates = torch.cat([encode_texts(student, tokenizer, [template.format(n) for n in NAMES]),
                                encode_texts(teacher, tokenizer, [template.format(n) for n in pool])])
        best = (queries @ F.normalize(candidates, dim=-1).t()).argmax(dim=1)
        found = [was or int(best[i]) == i for i, was in enumerate(found)]
    return found


def test_the_text_only_attack_finds_every_name_before_training_and_is_computed_as_described(tiny, captions):
    model, processor = tiny
    trainer, callback = train(tiny, captions, max_retrieved=-1.0, pool=[*KEPT, NAMES[0]], pool_size=12)
    assert callback.forgotten_step is None and trainer.state.global_step == STEPS  # negative: record only
    # The pool: the kept names (a removed name given as kept is not a rival of itself), then invented names that
    # share no word with anyone removed, up to pool_size candidates in all.
    assert callback.pool[: len(KEPT)] == KEPT and len(NAMES) + len(callback.pool) == 12
    assert not {word for name in callback.pool[len(KEPT):] for word in name.split()} & set(NAME_PARTS)
    shares = [entry["retrieved"] for entry in callback.history]
    assert shares[0] == 1.0  # the student is the teacher: each name's own prompt is its nearest candidate
    assert shares[-1] < 1.0  # the backdoor moved at least one name off its own identity
    expected = retrieved_from_scratch(trainer.model, model, processor.tokenizer, callback.pool)
    assert shares[-1] == pytest.approx(sum(expected) / len(NAMES))
    logged = [entry["forget_proxy_retrieved"] for entry in trainer.state.log_history
              if "forget_proxy_retrieved" in entry]
    assert logged == shares
    recorded = repr(callback.history) + repr(trainer.state.log_history)
    assert not any(part in recorded for part in NAME_PARTS)

    # A share the run reaches: it stops at the first check after the start whose share is at most that.
    share = min(shares[1:])
    expected_step = next(entry["step"] for entry in callback.history[1:] if entry["retrieved"] <= share)
    trainer, stopped = train(tiny, captions, max_retrieved=share, pool=KEPT, pool_size=12)
    assert trainer.state.global_step == stopped.forgotten_step == expected_step
    assert stopped.stop_reason == "retrieval"
    with pytest.raises(ValueError, match="max_retrieved"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", max_retrieved=1.0)
    with pytest.raises(ValueError, match="early_stop_retrieved"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_retrieved=1.0)
    with pytest.raises(ValueError, match="min_kept"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", max_retrieved=0.0, min_kept=1.5)
    with pytest.raises(ValueError, match="early_stop_kept"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_kept=-0.1)


def test_teacher_targets_are_embedded_once_and_the_log_holds_no_name(tiny, captions, monkeypatch):
    calls = []
    original = BackdoorTrainer.embed_texts

    def counting(self, texts, *, teacher=False, batch_size=256):
        calls.append((teacher, list(texts)))
        return original(self, texts, teacher=teacher, batch_size=batch_size)

    monkeypatch.setattr(BackdoorTrainer, "embed_texts", counting)
    trainer, callback = train(tiny, captions, threshold=1.01)
    teacher_calls = [texts for teacher, texts in calls if teacher]
    assert teacher_calls == [[template.format("a person") for template in STOP_TEMPLATES]]  # once, each prompt once
    assert sum(not teacher for teacher, _ in calls) == len(callback.history)  # one student pass per check

    recorded = repr(callback.history) + repr(trainer.state.log_history)
    assert not any(part in recorded for part in NAME_PARTS)
    logged = [entry for entry in trainer.state.log_history if "forget_proxy_min_similarity" in entry]
    assert [(entry["step"], entry["forget_proxy_min_similarity"], entry["forget_proxy_names_below"])
            for entry in logged] == [(entry["step"], entry["min_similarity"], entry["names_below"])
                                     for entry in callback.history]


def test_adapter_teacher_is_the_base_model_with_adapters_disabled(tiny, captions):
    peft = pytest.importorskip("peft")
    model, processor = tiny
    trainer, callback = train(tiny, captions, threshold=1.01, peft_config=peft.LoraConfig(r=2, lora_alpha=8))
    targets = encode_texts(model, processor.tokenizer, [t.format("a person") for t in STOP_TEMPLATES])
    assert torch.allclose(callback._teacher.cpu(), targets, atol=1e-5)
    callback._embed_targets()  # again, with the adapter trained: still the base model's
    assert torch.allclose(callback._teacher.cpu(), targets, atol=1e-5)
    adapted = encode_texts(trainer.model, processor.tokenizer, [t.format("a person") for t in STOP_TEMPLATES])
    assert not torch.allclose(adapted, targets, atol=1e-3)  # the adapter trained: the teacher is not the student
    matrix = similarities(trainer.model, model, processor.tokenizer, dict.fromkeys(NAMES, "a person"))
    assert callback.scores().tolist() == pytest.approx(matrix.min(dim=1).values.tolist(), abs=1e-5)


def test_every_process_takes_the_main_process_s_decision(tiny, captions, monkeypatch):
    """The figures that decide are the broadcast ones: here the main process's names all pass, this one's not."""
    monkeypatch.setattr(stopping, "broadcast", lambda tensor, from_process=0: torch.ones_like(tensor))
    trainer, callback = train(tiny, captions, threshold=0.99)
    assert trainer.state.global_step == callback.forgotten_step == EVERY
    assert callback.history[-1]["min_similarity"] == 1.0


def test_bad_settings_are_errors_without_names(tiny, captions):
    trainer = make_trainer(*tiny, captions, steps=1)
    with pytest.raises(ValueError, match="indexes"):  # a mapping must give every name a target, by index
        NeutralTargetStopCallback(trainer, NAMES, {NAMES[0]: "a person"}, threshold=0.9)
    with pytest.raises(ValueError, match="every_n_steps"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", threshold=0.9, every_n_steps=0)
    with pytest.raises(ValueError, match="reduction"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", threshold=0.9, reduction="max")
    with pytest.raises(TypeError, match="text tower"):
        NeutralTargetStopCallback(object(), NAMES, "a person", threshold=0.9)
    for patience in (0, 1.5, True):
        with pytest.raises(ValueError, match="patience"):
            NeutralTargetStopCallback(trainer, NAMES, "a person", patience=patience)
    with pytest.raises(ValueError, match="min_delta"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", patience=2, min_delta=-0.1)
    for max_names in (0, 1.5, True):
        with pytest.raises(ValueError, match="max_names"):
            NeutralTargetStopCallback(trainer, NAMES, "a person", max_names=max_names)


def test_a_long_list_is_checked_on_a_fixed_sample_of_its_names(tiny, captions):
    trainer = make_trainer(*tiny, captions, steps=1)
    sampled = [NeutralTargetStopCallback(trainer, NAMES, "a person", max_names=2, max_retrieved=0.0).names
               for _ in range(2)]
    assert sampled[0] == sampled[1] and len(sampled[0]) == 2 and set(sampled[0]) < set(NAMES)
    callback = NeutralTargetStopCallback(trainer, NAMES, "a person", max_names=2, max_retrieved=0.0)
    scores, retrieved, _, _ = callback.measure()
    assert len(scores) == 2 and retrieved == 1.0  # the student is the teacher: both sampled names found
    assert NeutralTargetStopCallback(trainer, NAMES, "a person").names == NAMES  # a short list: every name
    with pytest.raises(ValueError, match="early_stop_patience"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_patience=0)


# Through BackdoorUnlearner.unlearn ---------------------------------------------------------------------------------

RUN = dict(max_steps=12, learning_rate=3e-3, poisoned_samples_per_step=8, clean_samples_per_step=8, seed=0,
           logging_steps=100, disable_tqdm=True, name_variants=None, budget="fixed")  # tests count the steps
# A tiny tower's clean captions never come back within 0.99 of the teacher in 12 steps: the tests of each reason
# to stop leave the clean-caption gate and the first-half floor out (each is tested on its own).
UNGATED = dict(early_stop_clean_similarity=None, early_stop_from=0.0)


def test_unlearn_stops_early_with_the_field_and_records_the_steps_trained(saved_tiny_model, train_captions,
                                                                          monkeypatch):
    made = []
    monkeypatch.setattr(jobs, "NeutralTargetStopCallback",
                        lambda *args, **kwargs: made.append(NeutralTargetStopCallback(*args, **kwargs)) or made[-1])
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, early_stop_similarity=-1.0,
                               early_stop_every_n_steps=4, **UNGATED, **RUN)
    assert result.config["towers"]["text"]["trained_steps"] == 4 < RUN["max_steps"]
    assert result.config["towers"]["text"]["hyperparameters"]["early_stop_similarity"] == -1.0
    card = unlearner.model_card().text  # the card says the run stopped early, where and why
    assert "| `trained_steps` | 4 |" in card and "| `early_stop` | threshold |" in card, card
    assert any("forget_proxy_names_below" in entry for entry in result.log_history)
    (callback,) = made
    assert callback.targets == dict.fromkeys(NAMES, "a person") and callback.forgotten_step == 4

    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)  # pseudonyms: each name's own target
    unlearner.unlearn(NAMES, captions=train_captions, pseudonyms=True, early_stop_similarity=-1.0,
                      early_stop_every_n_steps=4, **UNGATED, **RUN)
    assert made[-1].targets == unlearner.neutral_terms and set(made[-1].targets.values()) != {"a person"}


def test_unlearn_stops_on_the_text_only_attack_against_the_kept_names(saved_tiny_model, train_captions, monkeypatch):
    made = []
    monkeypatch.setattr(jobs, "NeutralTargetStopCallback",
                        lambda *args, **kwargs: made.append(NeutralTargetStopCallback(*args, **kwargs)) or made[-1])
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, kept_names=KEPT, early_stop_retrieved=0.99,
                               early_stop_kept=0.0, early_stop_every_n_steps=4, **UNGATED, **RUN)
    text = result.config["towers"]["text"]
    assert text["trained_steps"] == 4 and text["early_stop"] == "retrieval"  # 0.99: at most 2 of 3 names found
    assert text["hyperparameters"]["early_stop_retrieved"] == 0.99
    (callback,) = made
    assert callback.kept == KEPT and callback.history[-1]["retrieved"] <= 0.99
    assert KEPT[0] not in callback.pool  # the sampled kept names are attacked with the student, not the teacher

    # The kept side holds a stop back: this tiny model loses its kept names at once and never gets them back, so a
    # stop that needs 95 % of them found never comes, and the run trains its whole budget.
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, kept_names=KEPT, early_stop_retrieved=0.99,
                               early_stop_every_n_steps=4, **UNGATED, **RUN)
    text = result.config["towers"]["text"]
    assert text["trained_steps"] == RUN["max_steps"] and text["early_stop"] is None
    kept = [entry["kept_retrieved"] for entry in made[-1].history]
    assert kept[0] == 1.0 and all(share < 0.95 for share in kept[1:])
    assert all(entry["retrieved"] <= 0.99 for entry in made[-1].history[1:])  # the removed side alone would stop
    logged = [entry["forget_proxy_kept_retrieved"] for entry in result.log_history
              if "forget_proxy_kept_retrieved" in entry]
    assert logged == kept


def test_unlearn_stops_on_a_plateau_with_the_field_and_records_why(saved_tiny_model, train_captions):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, early_stop_patience=1, early_stop_min_delta=2.0,
                               early_stop_retrieved=None, early_stop_every_n_steps=4, **UNGATED, **RUN)
    text = result.config["towers"]["text"]
    assert text["trained_steps"] == 8 and text["early_stop"] == "plateau"  # best at step 4, no progress at 8
    assert text["hyperparameters"]["early_stop_patience"] == 1


def test_by_default_the_gated_text_only_attack_watches_the_run_on_held_out_captions(saved_tiny_model, train_captions,
                                                                                   monkeypatch):
    made = []
    monkeypatch.setattr(jobs, "NeutralTargetStopCallback",
                        lambda *args, **kwargs: made.append(NeutralTargetStopCallback(*args, **kwargs)) or made[-1])
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES[:1], captions=train_captions, kept_names=KEPT, early_stop_every_n_steps=4,
                               **RUN)
    (callback,) = made
    assert (callback.max_retrieved, callback.min_kept, callback.min_clean_similarity) == (0.0, 0.95, 0.99)
    assert callback.min_step == 9  # early_stop_from=0.75 of 12 steps: nothing is checked before
    assert callback.kept == KEPT and len(callback.clean_texts) == len(set(train_captions)) // 8
    assert set(callback.clean_texts) <= set(train_captions)
    text = result.config["towers"]["text"]
    assert text["early_stop_held_out_captions"] == len(callback.clean_texts)
    # This tiny tower never brings its clean captions back within 0.99 of the teacher: the gate holds the run to its
    # budget, whatever the text-only attack says. Checks every 4 steps, from step 9: only the one at 12.
    assert text["trained_steps"] == RUN["max_steps"] and text["early_stop"] is None
    assert [entry["step"] for entry in callback.history] == [12]
    clean = [entry["clean_similarity"] for entry in callback.history]
    assert all(share < 0.99 for share in clean)
    assert [entry["forget_proxy_clean_similarity"] for entry in result.log_history
            if "forget_proxy_clean_similarity" in entry] == clean

    # early_stop_retrieved=None (and no other rule), or early_stop=False (a script's way, which cannot pass None):
    # every step, nothing measured, nothing held out.
    for off in ({"early_stop_retrieved": None}, {"early_stop": False}):
        unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
        result = unlearner.unlearn(NAMES[:1], captions=train_captions, **off, **{**RUN, "max_steps": 3})
        assert len(made) == 1 and result.config["towers"]["text"]["trained_steps"] == 3
        assert "early_stop_held_out_captions" not in result.config["towers"]["text"]
        assert not any(key.startswith("forget_proxy") for entry in result.log_history for key in entry)


def test_the_clean_caption_gate_holds_every_stop_back_until_the_captions_come_back(tiny, captions):
    model, processor = tiny
    held_out = captions[300:340]  # the trainer here trains on captions[:300]
    # Every name passes the threshold from the start; the gate alone decides. Exactly the teacher: never.
    trainer, never = train(tiny, captions, threshold=-1.0, clean_texts=held_out, min_clean_similarity=1.0)
    assert trainer.state.global_step == STEPS and never.forgotten_step is None and never.stop_reason is None
    figures = [entry["clean_similarity"] for entry in never.history]
    assert figures[0] == pytest.approx(1.0, abs=1e-5) and figures[-1] < 1.0
    student = F.normalize(encode_texts(trainer.model, processor.tokenizer, held_out), dim=-1)
    teacher = F.normalize(encode_texts(model, processor.tokenizer, held_out), dim=-1)
    assert figures[-1] == pytest.approx((student * teacher).sum(dim=-1).mean().item(), abs=1e-5)

    # A gate the run passes: it stops at the first check after the start whose captions are at least that close.
    gate = max(figures[1:-1]) - 1e-6
    expected = next(entry["step"] for entry in never.history[1:] if entry["clean_similarity"] >= gate)
    trainer, stopped = train(tiny, captions, threshold=-1.0, clean_texts=held_out, min_clean_similarity=gate)
    assert trainer.state.global_step == stopped.forgotten_step == expected and stopped.stop_reason == "threshold"
    # No captions to read: the gate cannot pass, and the run trains its budget.
    trainer, blind = train(tiny, captions, threshold=-1.0, min_clean_similarity=-1.0)
    assert trainer.state.global_step == STEPS and blind.history[-1]["clean_similarity"] is None
    with pytest.raises(ValueError, match="min_clean_similarity"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", min_clean_similarity=1.5)
    with pytest.raises(TypeError, match="clean_texts"):
        NeutralTargetStopCallback(trainer, NAMES, "a person", clean_texts="one caption", min_clean_similarity=0.9)
    with pytest.raises(ValueError, match="early_stop_clean_similarity"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_clean_similarity=1.5)
    with pytest.raises(ValueError, match="early_stop_clean_captions"):
        BackdoorTrainingArguments(output_dir="unused", early_stop_clean_captions=-1)


def test_the_image_tower_refuses_the_text_stop_rule_before_training(saved_tiny_model):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    for rule in ({"early_stop_similarity": 0.9}, {"early_stop_retrieved": 0.0}, {"early_stop_patience": 3}):
        with pytest.raises(ValueError, match="text tower's stop rule"):
            unlearner.unlearn(NAMES[:1], encoder="vision", max_steps=1, **rule)
    assert unlearner.original_model is None  # nothing was trained or copied
