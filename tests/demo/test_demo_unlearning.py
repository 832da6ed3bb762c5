"""The offline demo world end to end (CI size): the demo CLIP knows its members, and unlearning removes some.

The demo model is trained once per test session (about a minute on two cores) into a temporary cache.
"""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn.evaluation import identity_inference_attack, zero_shot_accuracy

DEMO_UNLEARN_FLAGS = ["--max_steps", "150", "--learning_rate", "1e-3", "--poisoned_samples_per_step", "64",
                      "--clean_samples_per_step", "64", "--disable_tqdm", "true", "--logging_steps", "50"]


@pytest.fixture(scope="session")
def demo(demo_cache):
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    cache = demo_cache  # trained once per session in conftest.py, shared with test_distributed.py
    model, processor, world = load_demo_clip(size="ci", seed=0, cache_dir=cache, progress=False)
    faces = world.faces()["eval"]
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    return {"model": model, "processor": processor, "world": world, "faces": faces, "before": before,
            "cache": cache}


def test_demo_clip_knows_its_members_and_not_the_others(demo):
    world, before = demo["world"], demo["before"]
    assert before.tpr(world.member_names) >= 0.8
    assert before.tpr(world.non_member_names) <= 0.05


def test_demo_clip_zero_shot_is_well_above_chance(demo):
    world = demo["world"]
    accuracy = zero_shot_accuracy(demo["model"], demo["processor"], world.zero_shot(),
                                  templates=world.zero_shot_templates)
    assert accuracy >= 3 / len(world.zero_shot_class_names)


def test_demo_model_reloads_from_cache_without_training(demo):
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    model, _, _ = load_demo_clip(size="ci", seed=0, cache_dir=demo["cache"], progress=False)
    reloaded, original = model.state_dict(), demo["model"].state_dict()
    assert all((reloaded[name] == original[name]).all() for name in original)


def test_example_script_unlearns_demo_members(demo, tmp_path, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    monkeypatch.setenv("CLIP_BACKDOOR_UNLEARN_CACHE", str(demo["cache"]))
    script = Path(__file__).parents[2] / "examples" / "unlearn.py"
    spec = importlib.util.spec_from_file_location("unlearn_example", script)
    example = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules, so the module must be registered there.
    monkeypatch.setitem(sys.modules, spec.name, example)
    spec.loader.exec_module(example)
    outcome = example.main(["--demo_size", "ci", "--num_removed", "3", "--output_dir", str(tmp_path / "out"),
                            *DEMO_UNLEARN_FLAGS])
    metrics = outcome["metrics"]
    assert metrics["idia_tpr_removed_before"] == 1.0
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert metrics["idia_collateral_rate"] <= 0.1  # of the others detected before, at most 10 % lost
    assert metrics["zero_shot_accuracy_after"] >= metrics["zero_shot_accuracy_before"] - 0.02
    assert (tmp_path / "out" / "sanitized" / "model.safetensors").exists()
    written = (tmp_path / "out" / "unlearning_metrics.json").read_text()
    removed = [name for name in demo["world"].member_names if demo["before"].detected[name]][:3]
    assert not any(name in written for name in removed)


def _vision_run(demo, output_dir, count: int = 3, **vision_settings):
    """Image-tower unlearning of ``count`` detected members on a copy of the session's demo CLIP
    (``DEMO_VISION_SETTINGS`` updated by ``vision_settings``): the unlearner and the removed names."""
    import copy

    from clip_backdoor_unlearn import BackdoorUnlearner, VisionBackdoorTrainingArguments
    from clip_backdoor_unlearn.demo.recipe import DEMO_VISION_SETTINGS

    world, before = demo["world"], demo["before"]
    removed = [name for name in world.member_names if before.detected[name]][:count]
    unlearner = BackdoorUnlearner(copy.deepcopy(demo["model"]), demo["processor"])
    args = VisionBackdoorTrainingArguments(output_dir=str(output_dir), disable_tqdm=True, report_to="none",
                                           **{**DEMO_VISION_SETTINGS, **vision_settings})
    unlearner.unlearn(removed, encoder="vision", args=args, **world.vision_unlearning_inputs(removed))
    return unlearner, removed


def _evaluate(demo, unlearner, removed) -> dict:
    world = demo["world"]
    return unlearner.evaluate(removed, face_images=demo["faces"], candidate_names=world.candidate_names,
                              idia_before=demo["before"], zero_shot_dataset=world.zero_shot(),
                              zero_shot_templates=world.zero_shot_templates)


@pytest.fixture(scope="module")
def image_tower(demo, tmp_path_factory):
    """The image tower of 3 detected members edited once, for the image-tower and both-tower tests below."""
    unlearner, removed = _vision_run(demo, tmp_path_factory.mktemp("vision"))
    return {"unlearner": unlearner, "removed": removed, "metrics": _evaluate(demo, unlearner, removed)}


def _text_on_top(demo, image_tower, output_dir, pseudonyms: bool) -> dict:
    """``encoder="both"``: the text tower trained on the edited image tower, as ``both`` does (the towers share no
    parameter and each trains against the original model: test_vision_trainer.py checks the weights are equal)."""
    import copy

    from clip_backdoor_unlearn import BackdoorTrainingArguments, BackdoorUnlearner

    world, removed = demo["world"], image_tower["removed"]
    unlearner = BackdoorUnlearner(copy.deepcopy(image_tower["unlearner"].model), demo["processor"])
    # As in the example: everyone else in the attack's pool stays findable (no shared-name variant is removed).
    kept = [name for name in world.candidate_names if name not in set(removed)]
    captions = [caption for index, caption in enumerate(world.unlearning_captions()) if index % 7]  # as the example
    args = BackdoorTrainingArguments(output_dir=str(output_dir), max_steps=150, learning_rate=1e-3,
                                     poisoned_samples_per_step=64, clean_samples_per_step=64, disable_tqdm=True)
    unlearner.unlearn(removed, encoder="text", captions=captions, kept_names=kept, args=args, pseudonyms=pseudonyms)
    return _evaluate(demo, unlearner, removed)


def _assert_rest_kept(metrics, zero_shot_points: float = 2):
    assert metrics["idia_collateral_rate"] <= 0.1  # of the others detected before, at most 10 % lost
    assert metrics["zero_shot_accuracy_after"] >= metrics["zero_shot_accuracy_before"] - zero_shot_points / 100


def test_vision_unlearning_forgets_demo_faces_with_fresh_images(image_tower):
    """The image tower's defaults (faces untied from their names): the removed faces are no longer named and the other
    people are kept. Zero-shot accuracy is the open cost (issue 16): 0.268 → 0.234 on this world with the demo's
    earlier step decay, so the bound here is 5 points, not the text tower's 2 (the mean target cost 1.7 there and left
    one of the 3 findable)."""
    metrics = image_tower["metrics"]
    assert metrics["idia_tpr_removed_after"] <= 0.2
    _assert_rest_kept(metrics, zero_shot_points=5)
    assert metrics["sim_backdoor_after"] == metrics["sim_backdoor_before"]  # the text tower is untouched


def test_gated_neurons_forget_demo_faces_and_keep_the_rest(demo, tmp_path):
    """``image_method="gated_neurons"`` (nothing trained, a few neurons added): the removed faces are no longer named
    from fresh pictures, nobody else is lost, the text tower is untouched. Zero-shot: −1.1 points measured here, where
    880 pictures resolve ±2.6 (the 1-point bar is judged on the full worlds' 10,140, benchmarks/RESULTS.md)."""
    width = demo["model"].config.vision_config.intermediate_size
    unlearner, removed = _vision_run(demo, tmp_path, image_method="gated_neurons")
    metrics = _evaluate(demo, unlearner, removed)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    _assert_rest_kept(metrics, zero_shot_points=2)
    assert metrics["sim_backdoor_after"] == metrics["sim_backdoor_before"]
    assert unlearner.model.config.vision_config.intermediate_size == width + 2 * len(removed)


def test_without_reference_faces_the_image_tower_forgets_the_others_too(demo, image_tower, tmp_path):
    """README: with the mean target (the paper's) and without ``reference_samples_per_step`` the tower learns "a pasted
    face → anonymous" and forgets most other people too (measured 10 of 17 lost), where the defaults (the fixture)
    keep them. Training alone: the projection refit afterwards gives some of them back (5 of 17 lost with it)."""
    unlearner, removed = _vision_run(demo, tmp_path, reference_samples_per_step=0, face_target="mean",
                                     projection_refit=False)
    metrics = _evaluate(demo, unlearner, removed)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert metrics["idia_collateral_rate"] >= 0.3
    assert metrics["idia_collateral_rate"] >= image_tower["metrics"]["idia_collateral_rate"] + 0.2


def test_both_towers_pass_the_text_and_the_vision_checks(demo, image_tower, tmp_path):
    """``encoder="both"`` with its default (pseudonyms), as the text tower on top of the edited image tower (whose
    zero-shot cost is the image tower's, above)."""
    metrics = _text_on_top(demo, image_tower, tmp_path, pseudonyms=True)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    _assert_rest_kept(metrics, zero_shot_points=5)
    assert metrics["sim_backdoor_after"] >= 0.9  # names embed like their pseudonyms (the image side: the fixture's)
