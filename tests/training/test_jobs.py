"""Training jobs: the budget is resolved once, before the data set is built, and the run trains and records it."""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn import BackdoorUnlearner, build_backdoor_dataset
from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
from clip_backdoor_unlearn.demo.world import generate_names
from clip_backdoor_unlearn.training.jobs import text_job

from ..conftest import NAMES

pytestmark = pytest.mark.usefixtures("single_thread")

PER_NAME = dict(budget="per_name", poisoned_samples_per_name=6, poisoned_samples_per_step=4,
                clean_samples_per_step=4, max_steps=2, seed=0, report_to="none", disable_tqdm=True)


def job(model_and_processor, names, captions, tmp_path, name_variants=None, kept_names=(), **fields):
    model, processor = model_and_processor
    return text_job(model, processor.tokenizer, names, neutral_term="a person", captions=captions, args=None,
                    overrides={"output_dir": str(tmp_path), **fields}, name_variants=name_variants,
                    kept_names=kept_names)


@pytest.mark.parametrize("num_names", [1, 10, 100])
def test_the_data_set_holds_exactly_the_resolved_steps(tiny_model_and_processor, train_captions, tmp_path,
                                                       num_names):
    names = generate_names(num_names, seed=1)
    resolved = job(tiny_model_and_processor, names, train_captions, tmp_path, **PER_NAME)
    expected = -(-num_names * 6 // 4)  # ceil, in integers
    expected = max(2, expected)  # 1 name: max_steps (a short list's budget); 100 names: 150 steps
    assert resolved.args.max_steps == expected
    assert len(resolved.dataset) == expected * 4  # one poisoned sample a row, 4 a step
    assert sum(len(clean) for clean in resolved.dataset["clean"]) == expected * 4
    poisoned = resolved.dataset["poisoned"]
    for name in names:  # every name is seen at least its share (the steps round the total up)
        assert sum(name in text for text in poisoned) >= 6


def test_the_budget_counts_people_not_their_spellings(tiny_model_and_processor, train_captions, tmp_path):
    plain = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, **PER_NAME)
    spelled = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, name_variants="auto", **PER_NAME)
    assert plain.args.max_steps == spelled.args.max_steps == 5  # ceil(3 × 6 / 4)
    assert len(spelled.dataset) == 5 * 4


def test_a_fixed_budget_builds_today_s_data_set(tiny_model_and_processor, train_captions, tmp_path):
    tokenizer = tiny_model_and_processor[1].tokenizer
    fields = {**PER_NAME, "budget": "fixed", "max_steps": 7}
    fixed = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, **fields)
    assert fixed.args.max_steps == 7
    # The default stop rule's gate reads clean captions training never sees: an eighth of the distinct ones.
    held_out = set(fixed.held_out_captions)
    assert len(held_out) == len(set(train_captions)) // 8 and held_out <= set(train_captions)
    assert fixed.record["early_stop_held_out_captions"] == len(held_out)
    training = [caption for caption in train_captions if caption not in held_out]
    expected = build_backdoor_dataset(NAMES, training, num_steps=7, poisoned_samples_per_step=4,
                                      clean_samples_per_step=4, seed=0, tokenizer=tokenizer)
    assert fixed.dataset.to_dict() == expected.to_dict()
    assert held_out == set(job(tiny_model_and_processor, NAMES, train_captions, tmp_path, **fields).held_out_captions)

    # With the stop rule off, nothing is held out: every caption trains, as before the rule existed.
    off = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, early_stop_retrieved=None, **fields)
    assert off.held_out_captions == [] and "early_stop_held_out_captions" not in off.record
    expected = build_backdoor_dataset(NAMES, train_captions, num_steps=7, poisoned_samples_per_step=4,
                                      clean_samples_per_step=4, seed=0, tokenizer=tokenizer)
    assert off.dataset.to_dict() == expected.to_dict()
    # At most early_stop_clean_captions, and none without the gate.
    few = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, early_stop_clean_captions=10, **fields)
    assert len(few.held_out_captions) == 10
    ungated = job(tiny_model_and_processor, NAMES, train_captions, tmp_path, early_stop_clean_similarity=None,
                  **fields)
    assert ungated.held_out_captions == []
    # A caption given twice is held out whole: no copy of it trains.
    doubled = job(tiny_model_and_processor, NAMES, train_captions * 2, tmp_path, **fields)
    assert set(doubled.held_out_captions) == held_out
    assert not held_out & {caption for row in doubled.dataset["clean"] for caption in row}


def test_the_run_trains_and_records_the_resolved_steps(saved_tiny_model, train_captions, tmp_path):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, name_variants=None, logging_steps=1,
                               output_dir=str(tmp_path / "run"), **PER_NAME)
    steps = -(-len(NAMES) * 6 // 4)
    assert max(entry["step"] for entry in result.log_history) == steps  # what the Trainer ran
    recorded = result.config["towers"]["text"]["hyperparameters"]
    assert (recorded["max_steps"], recorded["budget"], recorded["poisoned_samples_per_name"]) == (
        steps, "per_name", 6)
    assert f"| `max_steps` | {steps} |" in unlearner.model_card().text


def test_kept_names_are_held_by_person_prompts_in_the_clean_set(tiny_model_and_processor, train_captions, tmp_path):
    kept = generate_names(6, seed=5)
    fields = {**PER_NAME, "budget": "fixed", "max_steps": 40, "clean_samples_per_step": 16}
    captions = train_captions[:30]  # 30 + 18 kept prompts: 640 clean samples cycle through all of them
    held = job(tiny_model_and_processor, NAMES, captions, tmp_path, kept_names=kept, **fields)
    clean = [caption for row in held.dataset["clean"] for caption in row]
    for name in kept:
        prompts = {caption for caption in clean if name in caption}
        assert prompts and all(caption in {t.format(name) for t in PERSON_TEMPLATES} for caption in prompts)
        assert len(prompts) <= 3  # kept_prompts_per_name wordings a name
    assert held.args.kept_prompts_per_name == 3
    again = job(tiny_model_and_processor, NAMES, captions, tmp_path, kept_names=kept, **fields)
    assert again.dataset["clean"] == held.dataset["clean"]  # drawn with the seed
    off = job(tiny_model_and_processor, NAMES, captions, tmp_path, kept_names=kept,
              **{**fields, "kept_prompts_per_name": 0})
    assert not any(name in caption for row in off.dataset["clean"] for caption in row for name in kept)
    with pytest.raises(ValueError, match="kept_prompts_per_name"):
        job(tiny_model_and_processor, NAMES, train_captions, tmp_path, **{**fields, "kept_prompts_per_name": -1})
