"""The offline demo world end to end (CI size): the demo CLIP knows its members, and unlearning removes some.

The demo model is trained once per test session (about a minute on two cores) into a temporary cache.
"""

from __future__ import annotations

from clip_backdoor_unlearn import VisionBackdoorTrainingArguments
from clip_backdoor_unlearn.evaluation import zero_shot_accuracy

from .demo_runs import assert_rest_kept, evaluate_run, vision_run

# The demo's text settings (``DEMO_TEXT_SETTINGS``) but 150 steps.
DEMO_UNLEARN_FLAGS = ["--max_steps", "150", "--disable_tqdm", "true", "--logging_steps", "50"]


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


def test_gated_neurons_forget_demo_faces_and_keep_the_rest(demo, tmp_path):
    """``image_method="gated_neurons"`` (nothing trained, a few neurons added): the removed faces are no longer named
    from fresh pictures, nobody else is lost, the text tower is untouched. Zero-shot: −0.06 ± 0.97 points measured
    here with the defaults (the 1-point bar is judged on the full worlds' 10,140 pictures, benchmarks/RESULTS.md)."""
    width = demo["model"].config.vision_config.intermediate_size
    per_person = VisionBackdoorTrainingArguments.gated_neurons_per_person  # the default
    unlearner, removed = vision_run(demo, tmp_path, image_method="gated_neurons")
    metrics = evaluate_run(demo, unlearner, removed)
    assert metrics["idia_tpr_removed_after"] <= 0.2
    assert_rest_kept(metrics, zero_shot_points=2)
    assert metrics["sim_backdoor_after"] == metrics["sim_backdoor_before"]
    assert unlearner.model.config.vision_config.intermediate_size == width + per_person * len(removed)
