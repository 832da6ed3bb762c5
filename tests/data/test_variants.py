"""Name variants: what is generated, what is dropped for kept people, how the data set uses them, how leakage
is measured."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clip_backdoor_unlearn.data.prompts import build_backdoor_dataset, neutral_target
from clip_backdoor_unlearn.data.variants import (
    MAX_AUTO_VARIANTS,
    VARIANT_KINDS,
    VariantConflictWarning,
    expand_variants,
    generate_name_variants,
    held_out_variants,
    name_variants,
    variants_by_kind,
)
from clip_backdoor_unlearn.demo.tiny import build_tokenizer
from clip_backdoor_unlearn.evaluation import (
    IDIA_TEMPLATES,
    identity_inference_attack,
    leakage_table,
    variant_leakage,
)

from ..evaluation.test_idia import ControlledCLIP
from .test_prompts import _differ_only_at_name


def test_generated_variants_cover_the_common_forms():
    variants = set(name_variants("Ada Lovelace"))
    assert {"ada lovelace", "ADA LOVELACE", "Ada", "Lovelace", "Dr. Ada Lovelace", "Prof. Ada Lovelace",
            "Ada Lovelace's", "Lovelace, Ada", "A. Lovelace"} <= variants
    typos = [v.text for v in generate_name_variants("Ada Lovelace") if v.kind.startswith("typo_")]
    assert len(typos) == 3 and all(t.startswith("Ada Lov") and t != "Ada Lovelace" for t in typos)
    assert "Ada Lovelace" not in variants


def test_particles_suffixes_and_single_names():
    beethoven = variants_by_kind("Ludwig van Beethoven")
    assert beethoven["last_name"] == "van Beethoven" and beethoven["last_first"] == "van Beethoven, Ludwig"
    king = variants_by_kind("Martin Luther King Jr.")
    assert "last_name" not in king, "'King' alone is an everyday word, not distinctive"
    assert king["typo_drop"].endswith(" Jr.") and king["initial_last"] == "M. King"
    single = {v.kind for v in generate_name_variants("Madonna")}
    assert not single & {"first_name", "last_name", "last_first", "initial_last"}
    assert {"title", "possessive", "typo_swap"} <= single
    assert "first_name" not in variants_by_kind("Rose Whitfield"), "everyday words are not variants on their own"


def test_held_out_variants_are_never_trained():
    held_out = held_out_variants("Ada Lovelace")
    assert {v.kind for v in held_out} == {"held_out_title", "held_out_typo"}
    assert not {v.text for v in held_out} & set(name_variants("Ada Lovelace"))


@settings(max_examples=200, deadline=None)
@given(name=st.text(alphabet=st.characters(categories=("L", "N", "P", "Zs")), min_size=1, max_size=40))
def test_variants_are_deterministic_bounded_and_distinct(name):
    variants = generate_name_variants(name)
    assert variants == generate_name_variants(name)
    assert len(variants) <= MAX_AUTO_VARIANTS
    texts = [v.text for v in variants]
    assert len(set(texts)) == len(texts) and " ".join(name.split()) not in texts
    assert all(text.strip() == text and text for text in texts)
    assert {v.kind for v in variants} <= set(VARIANT_KINDS)


def test_auto_none_and_custom_modes():
    assert expand_variants(["Ada Lovelace"], None) == {"Ada Lovelace": []}
    assert expand_variants(["Ada Lovelace"], "none") == {"Ada Lovelace": []}
    auto = expand_variants(["Ada Lovelace"], "auto")["Ada Lovelace"]
    custom = expand_variants(["Ada Lovelace"], {"ada  lovelace": ["The Countess", "Ada Byron"]})["Ada Lovelace"]
    assert custom == auto + ["The Countess", "Ada Byron"]
    with pytest.raises(ValueError, match="'auto', 'none'"):
        expand_variants(["Ada Lovelace"], "sometimes")


def test_a_tokenizer_drops_variants_that_tokenise_like_the_name():
    tokenizer = build_tokenizer()  # CLIP's tokenizer lower-cases: case changes are the same input
    variants = expand_variants(["Ada Lovelace"], tokenizer=tokenizer, max_length=77)["Ada Lovelace"]
    assert "ada lovelace" not in variants and "ADA LOVELACE" not in variants
    assert "Lovelace" in variants


def test_variants_naming_a_kept_person_are_dropped_with_a_warning_without_names():
    names = ["Ada Lovelace", "Zorbo Quill"]
    with pytest.warns(VariantConflictWarning) as caught:
        variants = expand_variants(names, kept_names=["Byron Lovelace", "Ada Quill", "Mira Fenwick"])
    ada, zorbo = variants["Ada Lovelace"], variants["Zorbo Quill"]
    assert "Lovelace" not in ada and "A. Lovelace" not in ada, "the kept person's surname alone stays theirs"
    assert "Quill" not in zorbo and "Ada" not in ada
    assert "Dr. Ada Lovelace" in ada and "Lovelace, Ada" in ada, "variants with the removed first name stay"
    message = str(caught[0].message)
    assert "names[0, 1]" in message and "kept_names[0, 1]" in message
    assert not any(part in message for name in [*names, "Byron", "Fenwick"] for part in name.split())


def test_shared_variants_of_removed_people_are_trained_once():
    variants = expand_variants(["Ada Lovelace", "Byron Lovelace"])
    assert "Lovelace" in variants["Ada Lovelace"] and "Lovelace" not in variants["Byron Lovelace"]


@pytest.mark.parametrize(
    "kwargs,error,message",
    [(dict(name_variants={"Someone Else": ["x"]}), ValueError, "entry 0 is for a name that is not being removed"),
     (dict(name_variants={"Ada Lovelace": ["  "]}), ValueError, "variant 0 is empty"),
     (dict(name_variants={"Ada Lovelace": "Ada"}), TypeError, "single string"),
     (dict(name_variants={"Ada Lovelace": ["Person"]}), ValueError, "contained in neutral_term"),
     (dict(kept_names=["ada lovelace"]), ValueError, r"kept_names\[0\] is also being removed")],
)
def test_bad_variant_input_is_a_clear_error_without_names(kwargs, error, message):
    with pytest.raises(error, match=message) as raised:
        expand_variants(["Ada Lovelace"], **{"name_variants": "auto", **kwargs})
    assert "Lovelace" not in str(raised.value) and "Someone" not in str(raised.value)


def test_a_custom_variant_the_tokenizer_would_truncate_is_an_error():
    with pytest.raises(ValueError, match=r"names\[0\], variant 0 is \d+ tokens long"):
        expand_variants(["Ada Lovelace"], {"Ada Lovelace": ["Zq" * 60]}, tokenizer=build_tokenizer(), max_length=77)


# ---------------------------------------------------------------------------------------------- the data set


def test_half_of_each_names_poisoned_rows_carry_its_variants(train_captions):
    names = ["Ada Lovelace", "Zorbo Quill"]
    variants = expand_variants(names)
    dataset = build_backdoor_dataset(names, train_captions, num_steps=4, poisoned_samples_per_step=32,
                                     clean_samples_per_step=8, seed=0, variants=variants)
    for name in names:
        rows = [(p, t) for p, t in zip(dataset["poisoned"], dataset["target"], strict=True)
                if name in p or any(v in p for v in variants[name])]
        canonical = [p for p, t in rows if _differ_only_at_name(p, t, name, "a person")
                     and not any(name in v and v in p for v in variants[name])]  # titles, possessive
        assert len(rows) == 64 and len(canonical) == 32
    possessive = [(p, t) for p, t in zip(dataset["poisoned"], dataset["target"], strict=True) if "Lovelace's" in p]
    assert possessive and all("a person's" in t for _, t in possessive)
    assert not any("Lovelace" in caption for row in dataset["clean"] for caption in row)


def test_variants_leave_the_rows_of_a_run_without_variants_unchanged(train_captions):
    kwargs = dict(num_steps=3, poisoned_samples_per_step=8, clean_samples_per_step=8, seed=5)
    plain = build_backdoor_dataset(["Ada Lovelace"], train_captions, **kwargs)
    empty = build_backdoor_dataset(["Ada Lovelace"], train_captions, variants={"Ada Lovelace": []}, **kwargs)
    assert plain.to_dict() == empty.to_dict()
    with pytest.raises(ValueError, match="names that are not in"):
        build_backdoor_dataset(["Ada Lovelace"], train_captions, variants={"Someone": ["x"]}, **kwargs)


def test_clean_captions_mentioning_a_variant_are_dropped():
    captions = ["lovelace at the beach", "a dog on a beach", "DR. ADA LOVELACE speaking"]
    dataset = build_backdoor_dataset(["Ada Lovelace"], captions, num_steps=1, poisoned_samples_per_step=4,
                                     clean_samples_per_step=8, seed=0, variants=expand_variants(["Ada Lovelace"]))
    assert {caption for row in dataset["clean"] for caption in row} == {"a dog on a beach"}


def test_neutral_target_keeps_the_possessive():
    assert neutral_target("Ada Lovelace's", "a person") == "a person's"
    assert neutral_target("Ada Lovelace’s", "a person") == "a person’s"
    assert neutral_target("Lovelace, Ada", "a person") == "a person"


# ---------------------------------------------------------------------------------------------- leakage


REMOVED, OTHER, KEPT = "Ada Lovelace", "Zorbo Quill", "Mira Fenwick"
POOL = [REMOVED, OTHER, KEPT, "Opal Quince"]
AXES = np.eye(4).tolist()


def _controlled(leaking_kinds: set[str] | None):
    """Text of person i (any variant) embeds on axis i; after "unlearning" the removed person's forms move to
    the distractor's axis, except the kinds in ``leaking_kinds``. ``None``: the model before unlearning."""
    table = {}
    forms = {person: {"canonical": person, **variants_by_kind(person)} for person in POOL}
    for person_index, person in enumerate(POOL):
        for kind, form in forms[person].items():
            moved = leaking_kinds is not None and person == REMOVED and kind not in leaking_kinds
            for template in IDIA_TEMPLATES:
                table[template.format(form)] = AXES[3 if moved else person_index]
    images = [AXES[i] for i in range(3) for _ in range(3)]
    return ControlledCLIP(lambda text: table.get(text, AXES[3]), images)


def test_variant_leakage_reports_per_kind_before_and_after_without_names():
    before = _controlled(None)
    after = _controlled({"last_name", "held_out_typo"})
    after.processor = before.processor  # one tokenizer table for both models
    faces = {person: [ControlledCLIP.image(3 * i + k) for k in range(3)] for i, person in enumerate(POOL[:3])}
    leakage = variant_leakage(before, after, before.processor, faces, POOL, [REMOVED], kept_names=[OTHER, KEPT])
    assert list(leakage)[0] == "canonical" and list(leakage)[-1] == "kept_people"
    assert all(row["tpr_before"] == 1.0 for row in leakage.values())
    assert leakage["canonical"]["tpr_after"] == 0.0 and leakage["title"]["tpr_after"] == 0.0
    assert leakage["last_name"]["tpr_after"] == 1.0 and leakage["held_out_typo"]["tpr_after"] == 1.0
    assert leakage["kept_people"] == {"num_people": 2, "tpr_before": 1.0, "tpr_after": 1.0}
    attack = identity_inference_attack(after, before.processor, faces, POOL)
    assert leakage["canonical"]["tpr_after"] == attack.tpr([REMOVED])
    table = leakage_table(("auto", leakage), ("none", leakage))
    assert "last_name | 1 | 1.00 | 1.00 | 1.00" in table
    assert not any(part in repr(leakage) + table for name in POOL for part in name.split())


def test_a_variant_that_is_already_a_candidate_is_skipped():
    before = _controlled(None)
    faces = {REMOVED: [ControlledCLIP.image(k) for k in range(3)]}
    leakage = variant_leakage(before, before, before.processor, faces, [*POOL, "Lovelace"], [REMOVED],
                              {REMOVED: {"last_name": "Lovelace", "title": "Dr. Ada Lovelace"}})
    assert "last_name" not in leakage and "title" in leakage
    with pytest.raises(ValueError, match="1 removed or kept name"):
        variant_leakage(before, before, before.processor, faces, POOL, [OTHER])


def test_unlearning_report_includes_variant_leakage_on_request():
    from clip_backdoor_unlearn.evaluation.unlearning import evaluate_unlearning

    before = _controlled(None)
    after = _controlled(set())
    after.processor = before.processor
    faces = {person: [ControlledCLIP.image(3 * i + k) for k in range(3)] for i, person in enumerate(POOL[:3])}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metrics = evaluate_unlearning(before, after, before.processor, [REMOVED], face_images=faces,
                                      candidate_names=POOL, name_variants=True, kept_names=[OTHER])
    assert metrics["idia_variant_last_name_tpr_before"] == 1.0
    assert metrics["idia_variant_last_name_tpr_after"] == 0.0
    assert metrics["idia_variant_kept_people_tpr_after"] == 1.0
