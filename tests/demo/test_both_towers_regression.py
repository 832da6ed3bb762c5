"""Regression for ``encoder="both"`` on a CI-sized demo world: why names map to pseudonyms, not to "a person".

With both towers edited, "a person" and the mean face are the same point, so the anonymous face retrieves the
removed names and names the model never learned drift towards the faces. On the CI world of seed 0, removing 10
of its 20 members (the attack's pool as ``kept_names``, the settings of ``examples/unlearn.py``), measured:

* "a person": TPR after 0.1, and 2 non-members whom the attack never found before are found (TPR 0.1 on them);
* pseudonyms (the default for "both"): TPR after 0.1 as well, no non-member found, nobody newly found.

On this world the difference shows in the names the model never learned, not in the removed people's TPR (the
full world's 1.0 → 0.0 does not reproduce at CI size; 3 removed reach 0 either way). Each run trains both towers
of the CI demo CLIP, about 4 minutes on two quiet cores (20+ on a shared machine), so the module is marked
``regression`` as well as ``slow`` and is left out of the default run: ``python -m pytest -m regression tests``.
"""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner, VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS, load_demo_clip
from clip_backdoor_unlearn.evaluation import identity_inference_attack

pytestmark = [pytest.mark.slow, pytest.mark.regression, pytest.mark.usefixtures("single_thread")]

NUM_REMOVED = 10


@pytest.fixture(scope="module")
def world(demo_cache):
    model, processor, world = load_demo_clip(size="ci", seed=0, cache_dir=demo_cache, progress=False)
    faces = world.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    removed = [name for name in world.member_names if before.detected[name]][:NUM_REMOVED]
    assert len(removed) == NUM_REMOVED
    return {"model": model, "processor": processor, "world": world, "faces": faces, "before": before,
            "removed": removed}


def unlearn_both(world, tmp_path, pseudonyms):
    demo, removed = world["world"], world["removed"]
    captions = [caption for index, caption in enumerate(demo.unlearning_captions()) if index % 7]
    common = dict(output_dir=str(tmp_path), seed=0, disable_tqdm=True, report_to="none", logging_steps=50)
    args = BackdoorTrainingArguments(max_steps=150, learning_rate=1e-3, poisoned_samples_per_step=64,
                                     clean_samples_per_step=64, **common)
    vision = demo.vision_unlearning_inputs(removed)
    vision["vision_args"] = VisionBackdoorTrainingArguments(**common, **DEMO_VISION_SETTINGS)
    unlearner = BackdoorUnlearner(world["model"], world["processor"])
    kept = [name for name in demo.candidate_names if name not in set(removed)]
    unlearner.unlearn(removed, encoder="both", captions=captions, args=args, kept_names=kept, pseudonyms=pseudonyms,
                      **vision)
    after = identity_inference_attack(unlearner.model, world["processor"], world["faces"], demo.candidate_names)
    before = world["before"]
    newly = [name for name in demo.member_names + demo.non_member_names
             if after.detected[name] and not before.detected[name]]
    return after, newly


def test_the_world_knows_its_members_and_not_the_others(world):
    demo, before = world["world"], world["before"]
    assert before.tpr(demo.member_names) == 1.0 and before.tpr(demo.non_member_names) == 0.0


def test_a_person_as_the_target_finds_people_the_model_never_learned(world, tmp_path):
    after, newly = unlearn_both(world, tmp_path, pseudonyms=False)
    assert newly, "'a person' no longer finds new people on this world: update the README and this module"
    assert after.tpr(world["world"].non_member_names) > 0  # measured 0.1: 2 non-members


def test_pseudonyms_find_nobody_new(world, tmp_path):
    after, newly = unlearn_both(world, tmp_path, pseudonyms=None)  # None: pseudonyms, the default for "both"
    assert after.tpr(world["world"].non_member_names) == 0.0 and newly == []
    assert after.tpr(world["removed"]) <= 0.1  # measured 0.1 (1 of 10), as with "a person"
