"""examples/unlearn.py on a user's checkpoint: a saved CI-size demo CLIP, inputs from files and an image folder.

The card written next to the sanitized model must carry the attack before and after, and say how it was run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import ModelCard

SCRIPT = Path(__file__).parents[2] / "examples" / "unlearn.py"


def load_example(monkeypatch):
    spec = importlib.util.spec_from_file_location("unlearn_example", SCRIPT)
    example = importlib.util.module_from_spec(spec)
    # dataclasses resolve string annotations through sys.modules, so the module must be registered there.
    monkeypatch.setitem(sys.modules, spec.name, example)
    spec.loader.exec_module(example)
    return example


@pytest.fixture(scope="module")
def user_files(demo_cache, tmp_path_factory):
    """The demo CLIP saved as a plain checkpoint, and a user's files: names, pool, captions and a faces folder."""
    from clip_backdoor_unlearn.demo.recipe import load_demo_clip

    model, processor, world = load_demo_clip(size="ci", seed=0, cache_dir=demo_cache, progress=False)
    root = tmp_path_factory.mktemp("user")
    model.save_pretrained(root / "checkpoint")
    processor.save_pretrained(root / "checkpoint")
    removed, others = world.member_names[:2], world.member_names[2:5]
    people = [*removed, *others, *world.non_member_names[:2]]
    faces = world.faces()["eval"]
    for name in people:  # the imagefolder layout: faces/<First Last>/*.png
        folder = root / "faces" / name
        folder.mkdir(parents=True)
        rows = [index for index, row_name in enumerate(faces["name"]) if row_name == name][:4]
        for index in rows:
            faces[index]["image"].save(folder / f"{index}.png")
    (root / "names.txt").write_text("\n".join(removed) + "\n")
    (root / "pool.txt").write_text("\n".join([*people, *world.member_names[5:], *world.non_member_names[2:]]) + "\n")
    (root / "captions.txt").write_text("\n".join(world.unlearning_captions()) + "\n")
    return {"root": root, "removed": removed}


def test_script_on_a_saved_checkpoint_writes_the_attack_into_the_card(user_files, tmp_path, monkeypatch):
    root = user_files["root"]
    example = load_example(monkeypatch)
    outcome = example.main([
        "--model_name_or_path", str(root / "checkpoint"), "--names_file", str(root / "names.txt"),
        "--eval_face_images", str(root / "faces"), "--candidate_names_file", str(root / "pool.txt"),
        "--captions_file", str(root / "captions.txt"), "--neutral_term", "someone",
        "--max_steps", "40", "--learning_rate", "1e-3", "--poisoned_samples_per_step", "32",
        "--clean_samples_per_step", "32", "--disable_tqdm", "true", "--output_dir", str(tmp_path / "out"),
    ])
    assert outcome["result"].config["towers"]["text"]["hyperparameters"]["max_steps"] == 40
    card = ModelCard.load(tmp_path / "out" / "sanitized" / "README.md")
    figures = {result.metric_type: result.metric_value for result in card.data.eval_results}
    assert figures["idia_tpr_removed_before"] == 1.0
    assert figures["idia_tpr_removed_after"] <= 0.5
    assert "idia_others_detected_before" in figures and "idia_collateral_rate" in figures
    assert "a pool of 40 candidate names, 21 prompt wordings, 4 pictures per person" in card.text
    config = json.loads((tmp_path / "out" / "sanitized" / "unlearning_config.json").read_text())
    assert config["neutral_term"] == "someone"  # --neutral_term reaches the training, not only the parser
    assert not any(name in card.content for name in user_files["removed"])


def test_flags_given_win_over_the_demo_settings_for_every_tower(monkeypatch):
    from transformers import HfArgumentParser

    from clip_backdoor_unlearn import BackdoorTrainingArguments, VisionBackdoorTrainingArguments
    from clip_backdoor_unlearn.demo.recipe import DEMO_TEXT_SETTINGS, DEMO_VISION_SETTINGS

    example = load_example(monkeypatch)
    parser = HfArgumentParser((example.ScriptArguments, VisionBackdoorTrainingArguments))
    argv = ["--max_steps", "7", "--backdoor_weight=0.3", "--no_freeze_norm_layers", "--output_dir", "x"]
    text, vision = example.tower_arguments(parser, argv, None)
    assert (text.max_steps, vision.max_steps) == (7, 7)
    assert (text.backdoor_weight, vision.backdoor_weight) == (0.3, 0.3)
    assert not text.freeze_norm_layers and not vision.freeze_norm_layers
    assert text.learning_rate == DEMO_TEXT_SETTINGS["learning_rate"]
    assert vision.reference_samples_per_step == DEMO_VISION_SETTINGS["reference_samples_per_step"]
    # With adapters the demo's full-fine-tuning text settings stay off, so that unlearn() applies ADAPTER_DEFAULTS.
    text, vision = example.tower_arguments(parser, [], None, use_peft=True)
    default = BackdoorTrainingArguments(output_dir="x")
    assert (text.learning_rate, text.max_steps) == (default.learning_rate, default.max_steps)
    assert vision.reference_samples_per_step == DEMO_VISION_SETTINGS["reference_samples_per_step"]
    # On the large world the text recipe follows the list: the names' own token rows up to 256 names, the whole
    # token embedding for longer lists (demo_text_settings).
    assert example.tower_arguments(parser, [], None, demo_size="large", num_names=64)[0].trainable_parameters == \
        "name_tokens"
    assert example.tower_arguments(parser, [], None, demo_size="large", num_names=1000)[0].trainable_parameters == \
        "token_embedding"
    # With encoder="both" the text recipe follows the image tower's method: the names' rows beside the gated edit
    # (what "auto" picks for the demo CLIP), the settings before them beside a fine-tuned image tower (whose faces
    # found the rows' names again).
    for size, fine_tuned in (("full", "tower"), ("large", "token_embedding")):
        for argv, expected in (([], "name_tokens"), (["--image_method", "gated_neurons"], "name_tokens"),
                               (["--image_method", "fine_tune"], fine_tuned)):
            text, _ = example.tower_arguments(parser, argv, None, demo_size=size, num_names=5, encoder="both")
            assert text.trainable_parameters == expected
    assert example.tower_arguments(parser, ["--image_method", "fine_tune"], None,
                                   encoder="both")[0].learning_rate == 1e-3
    text, vision = example.tower_arguments(parser, [], "me/clip")
    assert (text.learning_rate, text.max_steps, vision.max_steps) == (1e-4, 400, 100)  # the paper's
    # The image tower's checkpoints go to a folder of their own: one folder would mix the towers' checkpoint-N.
    assert (text.output_dir, vision.output_dir) == ("clip-sanitized", os.path.join("clip-sanitized", "vision"))


def test_the_demo_reads_the_names_file_once(saved_tiny_model, tmp_path, monkeypatch):
    """The demo picks its text recipe by the number of names given, then unlearns them: one read of --names_file."""
    example = load_example(monkeypatch)
    (tmp_path / "names.txt").write_text("Ada Lovelace\nIvo Jansen\n")
    reads, read_texts = [], example.sources.read_texts

    def counting(source, **options):
        reads.append(options.get("what"))
        return read_texts(source, **options)

    monkeypatch.setattr(example.sources, "read_texts", counting)
    tiny = example.BackdoorUnlearner.from_pretrained(saved_tiny_model)
    monkeypatch.setattr(example, "load_model", lambda script_args, args: (tiny, "the demo world"))
    monkeypatch.setattr(example, "demo_inputs", lambda script_args, model, processor, world, given:
                        {**given, "captions": ["a photo of a dog"]})
    calls = {}

    def unlearn(self, names, **kwargs):
        calls["names"] = names
        return SimpleNamespace(train_seconds=0.0, config={})

    monkeypatch.setattr(example.BackdoorUnlearner, "unlearn", unlearn)
    monkeypatch.setattr(example.BackdoorUnlearner, "evaluate", lambda self, names, **data: {})
    monkeypatch.setattr(example, "_print_table", lambda *args: None)
    monkeypatch.setattr(example, "_save", lambda *args: None)
    example.main(["--names_file", str(tmp_path / "names.txt"), "--output_dir", str(tmp_path / "out")])
    assert calls["names"] == ["Ada Lovelace", "Ivo Jansen"]
    assert reads.count("names") == 1


def test_every_input_flag_reaches_unlearn_and_evaluate(saved_tiny_model, tmp_path, monkeypatch):
    """--encoder, the image tower's inputs from folders and its fields reach unlearn(); eval flags reach evaluate()."""
    from PIL import Image

    example = load_example(monkeypatch)
    for folder, people in (("train_faces", ["Ada Lovelace"]), ("eval_faces", ["Ada Lovelace", "Zorbo Quill"]),
                           ("refs", ["a", "b"]), ("clean", ["x"]), ("gallery", ["Ada Lovelace", "Ivo Jansen"])):
        for person in people:
            (tmp_path / folder / person).mkdir(parents=True)
            Image.new("RGB", (16, 16), "red").save(tmp_path / folder / person / "1.png")
    (tmp_path / "names.txt").write_text("Ada Lovelace\n")
    calls = {}

    def unlearn(self, names, **kwargs):
        calls["unlearn"] = (names, kwargs)
        return SimpleNamespace(train_seconds=0.0, config={})

    monkeypatch.setattr(example.BackdoorUnlearner, "unlearn", unlearn)
    def evaluate(self, names, **data):
        calls["evaluate"] = data
        return {}

    monkeypatch.setattr(example.BackdoorUnlearner, "evaluate", evaluate)
    monkeypatch.setattr(example, "_print_table", lambda *args: None)
    monkeypatch.setattr(example, "_save", lambda *args: None)
    example.main(["--model_name_or_path", saved_tiny_model, "--names_file", str(tmp_path / "names.txt"),
                  "--encoder", "vision", "--face_images", str(tmp_path / "train_faces"),
                  "--reference_faces", str(tmp_path / "refs"), "--images", str(tmp_path / "clean"),
                  "--eval_face_images", str(tmp_path / "eval_faces"), "--idia_protocol", "paper",
                  "--gallery_face_images", str(tmp_path / "gallery"), "--face_target", "mean",
                  "--max_steps", "3", "--reference_samples_per_step", "5", "--output_dir", str(tmp_path / "out")])
    names, kwargs = calls["unlearn"]
    assert names == ["Ada Lovelace"] and kwargs["encoder"] == "vision"
    assert isinstance(kwargs["args"], example.VisionBackdoorTrainingArguments)
    assert (kwargs["args"].max_steps, kwargs["args"].reference_samples_per_step) == (3, 5)
    assert kwargs["args"].face_target == "mean"
    assert list(kwargs["face_images"]) == ["Ada Lovelace"] and len(kwargs["reference_faces"]) == 2
    assert len(kwargs["images"]) == 1
    evaluation = calls["evaluate"]
    assert sorted(evaluation["face_images"]) == ["Ada Lovelace", "Zorbo Quill"]
    assert sorted(evaluation["gallery_images"]) == ["Ada Lovelace", "Ivo Jansen"]  # the image-to-image attack
    assert evaluation["candidate_names"] is None and evaluation["idia_protocol"] == "paper"  # the default pool


def test_the_table_says_stopped_early_only_before_the_budget(monkeypatch, capsys):
    """A stop rule that passes at the last step stopped nothing: the script's table says so only before the budget."""
    example = load_example(monkeypatch)
    for trained, early in ((160, True), (200, False)):
        record = {"trained_steps": trained, "hyperparameters": {"max_steps": 200}, "early_stop": "retrieval"}
        example._print_table({}, 1.0, {"text": record})
        line = next(line for line in capsys.readouterr().out.splitlines() if "steps trained" in line)
        assert line.endswith(f"{trained} of 200" + (" (stopped early: retrieval)" if early else ""))
