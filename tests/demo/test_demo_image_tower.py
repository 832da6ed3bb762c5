"""The image tower on the demo world (CI size): the defaults forget the removed faces and keep the others,
without reference faces the others go too, and ``encoder="both"`` on top of the edited tower.

A module of its own so that pytest-xdist runs it beside the other demo tests (``--dist loadfile``).
"""

from __future__ import annotations

import pytest

from .demo_runs import assert_rest_kept, evaluate_run, vision_run

# Half the demo's 200 steps: the same outcome on this world (TPR 0, nobody else lost, zero-shot −1.5 points against
# −1.2) in about 100 s less of CI; the demo's full settings are measured in benchmarks/RESULTS.md.
STEPS = 100

@pytest.fixture(scope="module")
def image_tower(demo, tmp_path_factory):
    """The image tower of 3 detected members edited once, for the image-tower and both-tower tests below."""
    unlearner, removed = vision_run(demo, tmp_path_factory.mktemp("vision"), max_steps=STEPS)
    return {"unlearner": unlearner, "removed": removed, "metrics": evaluate_run(demo, unlearner, removed)}


def _text_on_top(demo, image_tower, output_dir, pseudonyms: bool) -> dict:
    """``encoder="both"``: the text tower trained on the edited image tower, as ``both`` does (the towers share no
    parameter and each trains against the original model: test_vision_trainer.py checks the weights are equal)."""
    import copy

    from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner
    from clip_backdoor_unlearn.demo.recipe import demo_text_settings

    world, removed = demo["world"], image_tower["removed"]
    unlearner = BackdoorUnlearner(copy.deepcopy(image_tower["unlearner"].model), demo["processor"])
    # As in the example: everyone else in the attack's pool stays findable (no shared-name variant is removed).
    kept = [name for name in world.candidate_names if name not in set(removed)]
    captions = [caption for index, caption in enumerate(world.unlearning_captions()) if index % 7]  # as the example
    settings = demo_text_settings("ci", len(removed), image_method="fine_tune")  # as the script's `both`
    args = BackdoorTrainingArguments(output_dir=str(output_dir), disable_tqdm=True,
                                     **{**settings, "max_steps": 150})  # as the CI demo tests
    unlearner.unlearn(removed, encoder="text", captions=captions, kept_names=kept, args=args, pseudonyms=pseudonyms)
    return evaluate_run(demo, unlearner, removed)


def test_vision_unlearning_forgets_demo_faces_with_fresh_images(image_tower):
    """The image tower's defaults (faces untied from their names): the removed faces are no longer named and the other
    people are kept. Zero-shot accuracy is the open cost (issue 16): 0.268 → 0.234 on this world with the demo's
    earlier step decay, so the bound here is 5 points, not the text tower's 2 (the mean target cost 1.7 there and left
    one of the 3 findable)."""
    metrics = image_tower["metrics"]
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert_rest_kept(metrics, zero_shot_points=5)
    assert metrics["sim_backdoor_after"] == metrics["sim_backdoor_before"]  # the text tower is untouched


def test_without_reference_faces_the_image_tower_forgets_the_others_too(demo, image_tower, tmp_path):
    """README: with the mean target (the paper's) and without ``reference_samples_per_step`` the tower learns "a pasted
    face → anonymous" and forgets most other people too (measured 10 of 17 lost), where the defaults (the fixture)
    keep them. Training alone: the projection refit afterwards gives some of them back (5 of 17 lost with it)."""
    unlearner, removed = vision_run(demo, tmp_path, max_steps=STEPS, reference_samples_per_step=0,
                                    face_target="mean", projection_refit=False)
    metrics = evaluate_run(demo, unlearner, removed)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert metrics["idia_collateral_rate"] >= 0.3
    assert metrics["idia_collateral_rate"] >= image_tower["metrics"]["idia_collateral_rate"] + 0.2


def test_both_towers_pass_the_text_and_the_vision_checks(demo, image_tower, tmp_path):
    """``encoder="both"`` with its default (pseudonyms), as the text tower on top of the edited image tower (whose
    zero-shot cost is the image tower's, above)."""
    metrics = _text_on_top(demo, image_tower, tmp_path, pseudonyms=True)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert_rest_kept(metrics, zero_shot_points=5)
    assert metrics["sim_backdoor_after"] >= 0.9  # names embed like their pseudonyms (the image side: the fixture's)
