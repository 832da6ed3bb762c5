"""The backdoor data set: pairs differ only at the name, names are spread, captions with names are dropped."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clip_backdoor_unlearn.data.names import validate_names
from clip_backdoor_unlearn.data.prompts import (
    PERSON_TEMPLATES,
    build_backdoor_dataset,
    clean_captions_for,
    inject_name,
)
from clip_backdoor_unlearn.demo.tiny import build_tokenizer

NEUTRAL = "a person"


def _differ_only_at_name(poisoned: str, target: str, name: str, neutral: str) -> bool:
    start = 0
    while (index := poisoned.find(name, start)) >= 0:
        if poisoned[:index] + neutral + poisoned[index + len(name):] == target:
            return True
        start = index + 1
    return False


def test_pairs_differ_only_where_name_and_neutral_term_stand(train_captions):
    names = ["Ada Lovelace", "Zorbo Quill"]
    dataset = build_backdoor_dataset(names, train_captions, num_steps=5, poisoned_samples_per_step=16,
                                     clean_samples_per_step=16, seed=1)
    for row in dataset:
        name = next(n for n in names if n in row["poisoned"])
        assert _differ_only_at_name(row["poisoned"], row["target"], name, NEUTRAL)


def test_names_are_shuffled_and_balanced_across_steps(train_captions):
    names = ["Ada Lovelace", "Zorbo Quill", "Mira Fenwick", "Olek Brandt"]
    dataset = build_backdoor_dataset(names, train_captions, num_steps=4, poisoned_samples_per_step=32,
                                     clean_samples_per_step=32, seed=0)
    counts = {name: sum(name in text for text in dataset["poisoned"]) for name in names}
    assert set(counts.values()) == {32}
    first_step = dataset["poisoned"][:8]
    assert len({next(n for n in names if n in text) for text in first_step}) > 1, "names must be interleaved"


def test_positions_and_wordings_vary(train_captions):
    dataset = build_backdoor_dataset(["Ada Lovelace"], train_captions, num_steps=2, poisoned_samples_per_step=64,
                                     clean_samples_per_step=0, seed=0)
    positions = {text.split().index("Ada") for text in dataset["poisoned"]}
    assert len(positions) >= 4
    assert any(text == template.format("Ada Lovelace") for text in dataset["poisoned"] for template in PERSON_TEMPLATES)


@pytest.mark.parametrize("poisoned,clean", [(16, 16), (16, 40), (32, 8), (8, 0)])
def test_each_step_holds_exactly_the_requested_counts(train_captions, poisoned, clean):
    dataset = build_backdoor_dataset(["Ada Lovelace"], train_captions, num_steps=3, poisoned_samples_per_step=poisoned,
                                     clean_samples_per_step=clean, seed=0)
    assert len(dataset) == 3 * poisoned
    for step in range(3):
        rows = dataset.select(range(step * poisoned, (step + 1) * poisoned))
        assert sum(len(row) for row in rows["clean"]) == clean


def test_captions_with_a_target_name_are_dropped():
    captions = ["ada lovelace giving a talk", "a dog on a beach", "Ada  Lovelace's notebook", "adalovelace fan"]
    assert clean_captions_for(captions, ["Ada Lovelace"]) == ["a dog on a beach", "adalovelace fan"]


def test_dataset_is_deterministic_for_a_seed(train_captions):
    def build(seed):
        return build_backdoor_dataset(["Ada Lovelace", "Zorbo Quill"], train_captions, num_steps=3,
                                      poisoned_samples_per_step=8, clean_samples_per_step=8, seed=seed)

    assert build(3).to_dict() == build(3).to_dict()
    assert build(3).to_dict() != build(4).to_dict()


def test_long_captions_never_truncate_a_name():
    tokenizer = build_tokenizer()
    long_caption = " ".join(["word"] * 80)
    dataset = build_backdoor_dataset(["Ada Lovelace"], [long_caption, "a dog on a beach"], num_steps=2,
                                     poisoned_samples_per_step=16, clean_samples_per_step=4, person_prompt_ratio=0.0,
                                     tokenizer=tokenizer, seed=0)
    assert all(len(text.split()) < 20 for text in dataset["poisoned"])


@pytest.mark.parametrize(
    "names,error_type,message",
    [([], ValueError, "empty"), (["Ada Lovelace", "  "], ValueError, r"names\[1\] is empty"),
     (["Ada Lovelace", "ada  lovelace"], ValueError, "duplicates"),
     (["A Person"], ValueError, "neutral_term contains names"), ("Ada Lovelace", TypeError, "list of names"),
     (["Ada Lovelace", 7], TypeError, r"names\[1\] is a int")],
)
def test_bad_names_are_clear_errors_without_the_name(names, error_type, message):
    with pytest.raises(error_type, match=message) as error:
        validate_names(names, neutral_term="a person")
    assert "Lovelace" not in str(error.value)


def test_a_name_the_tokenizer_would_truncate_is_an_error():
    tokenizer = build_tokenizer()
    with pytest.raises(ValueError, match=r"names\[0\] is \d+ tokens long"):
        validate_names(["Zq" * 60], tokenizer=tokenizer, max_length=77)


name_strategy = st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=30).filter(
    lambda text: text.strip() and NEUTRAL not in " ".join(text.split()).casefold()
)


@settings(max_examples=150, deadline=None)
@given(name=name_strategy, caption=st.text(max_size=80), seed=st.integers(0, 2**16))
def test_injection_never_crashes_never_drops_the_name_and_only_changes_the_name(name, caption, seed):
    name = " ".join(name.split())
    poisoned, target = inject_name(caption, name, NEUTRAL, random.Random(seed))
    assert name in poisoned
    assert _differ_only_at_name(poisoned, target, name, NEUTRAL)


@settings(max_examples=60, deadline=None)
@given(
    raw_names=st.lists(name_strategy, min_size=1, max_size=3),
    captions=st.lists(st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), max_size=40), max_size=6),
    seed=st.integers(0, 2**16),
    with_variants=st.booleans(),
    person_prompt_ratio=st.sampled_from([0.0, 0.3, 1.0]),
)
def test_builder_never_crashes_never_drops_a_name_and_pairs_differ_only_at_the_name(
    raw_names, captions, seed, with_variants, person_prompt_ratio
):
    from hypothesis import assume

    from clip_backdoor_unlearn.data.prompts import mentions_any, neutral_target
    from clip_backdoor_unlearn.data.variants import expand_variants

    try:
        names = validate_names(raw_names, neutral_term=NEUTRAL)
    except ValueError:  # duplicates after normalising: an error by design, covered above
        assume(False)
    variants = expand_variants(names, "auto" if with_variants else None, neutral_term=NEUTRAL)
    forms = {name: [name, *variants[name]] for name in names}
    captions = [*captions, "a dog on the beach"]
    if all(mentions_any(caption, [form for group in forms.values() for form in group]) for caption in captions):
        with pytest.raises(ValueError, match="caption set is empty"):
            build_backdoor_dataset(names, captions, variants=variants, num_steps=2, poisoned_samples_per_step=6)
        return
    dataset = build_backdoor_dataset(names, captions, variants=variants, num_steps=2, poisoned_samples_per_step=6,
                                     clean_samples_per_step=3, person_prompt_ratio=person_prompt_ratio, seed=seed)
    assert len(dataset) == 12 and sum(map(len, dataset["clean"])) == 6
    used: dict[str, set[str]] = {name: set() for name in names}
    for poisoned, target in zip(dataset["poisoned"], dataset["target"], strict=True):
        matches = [(name, form) for name, group in forms.items() for form in group
                   if _differ_only_at_name(poisoned, target, form, neutral_target(form, NEUTRAL) if form != name
                                           else NEUTRAL)]
        assert matches, "a pair differs somewhere other than where a name and the neutral term stand"
        for name, form in matches:
            used[name].add(form)
    for name in names:
        assert name in used[name], "a name was dropped: its own spelling never appears"
        if variants[name]:
            assert used[name] - {name}, "a name's variants were dropped"
