"""The offline demo world end to end (CI size): the demo CLIP knows its members, and unlearning removes some.

The demo model is trained once per test session (about a minute on two cores) into a temporary cache.
"""

from __future__ import annotations

import pytest

from clip_backdoor_unlearn.evaluation import identity_inference_attack, zero_shot_accuracy

DEMO_UNLEARN_FLAGS = ["--max_steps", "150", "--learning_rate", "1e-3", "--poisoned_samples_per_step", "64",
                      "--clean_samples_per_step", "64", "--disable_tqdm", "true", "--logging_steps", "50"]


@pytest.fixture(scope="session")
def demo(tmp_path_factory):
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    cache = tmp_path_factory.mktemp("demo-cache")
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
    accuracy = zero_shot_accuracy(demo["model"], demo["processor"], world.zero_shot())
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
    script = Path(__file__).parents[1] / "examples" / "unlearn.py"
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
    others_before = metrics["idia_others_detected_before"]
    assert metrics["idia_others_detected_after"] >= others_before - 0.1 * metrics["idia_num_others"]
    assert metrics["zero_shot_accuracy_after"] >= metrics["zero_shot_accuracy_before"] - 0.02
    assert (tmp_path / "out" / "model.safetensors").exists()
    written = (tmp_path / "out" / "unlearning_metrics.json").read_text()
    removed = [name for name in demo["world"].member_names if demo["before"].detected[name]][:3]
    assert not any(name in written for name in removed)
