"""Publishing: model cards with the IDIA metrics, push to a Hub, pull sanitized checkpoints, never leak a name.

Pushing and pulling go through the real ``huggingface_hub`` client (and transformers' and PEFT's loaders) against
``tests/hub/hub_server.py``, a Hub on loopback. The rest of the suite runs offline (``HF_HUB_OFFLINE=1``), and
``huggingface_hub`` reads its settings once at import, so each test points both the environment and
``huggingface_hub.constants`` at the test Hub and at a temporary cache.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard
from PIL import Image
from transformers import CLIPModel

from clip_backdoor_unlearn import BackdoorTrainer, BackdoorTrainingArguments, BackdoorUnlearner
from clip_backdoor_unlearn.hub.model_card import CITATION, UnlearningCardData, build_model_card
from clip_backdoor_unlearn.hub.privacy import NameLeakError, files_with_names

from ..conftest import NAMES
from .conftest import TOKEN

ROOT = Path(__file__).resolve().parents[2]
FAST = dict(max_steps=4, learning_rate=2e-3, poisoned_samples_per_step=8, clean_samples_per_step=8, seed=0,
            logging_steps=2, disable_tqdm=True, lr_milestones=[])
OTHERS = ["Orla Brightwater", "Tavi Kestrel", "Pell Marrow"]
IDIA_KEYS = ("idia_tpr_removed_before", "idia_tpr_removed_after", "idia_collateral_lost")


def repo_name(request) -> str:
    return "test-user/" + re.sub(r"[^\w.-]+", "-", request.node.name)[:80]


# Unlearned tiny models -------------------------------------------------------------------------------------------

def random_images(count: int, seed: int) -> list[Image.Image]:
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (count, 32, 32, 3), generator=generator, dtype=torch.uint8).numpy()
    return [Image.fromarray(array) for array in pixels]


@pytest.fixture(scope="module")
def evaluated(saved_tiny_model, train_captions, held_out_captions) -> BackdoorUnlearner:
    """A few steps of LoRA unlearning on a tiny CLIP, evaluated with every kind of figure (IDIA on random pictures).

    One run serves every test: ``push_to_hub`` publishes the merged model by default and the adapter on request.
    """
    peft = pytest.importorskip("peft")
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(NAMES, captions=train_captions, peft_config=peft.LoraConfig(r=4, lora_alpha=8),
                      **{**FAST, "learning_rate": 1e-2})
    people = NAMES + OTHERS
    faces = {name: random_images(2, seed) for seed, name in enumerate(people)}
    zero_shot = {"image": random_images(6, 99), "label": ["dog", "cat", "car"] * 2}
    unlearner.evaluate(NAMES, face_images=faces, candidate_names=people, held_out_captions=held_out_captions[:20],
                       zero_shot_dataset=zero_shot, class_names=["dog", "cat", "car"])
    return unlearner


# Privacy scan ----------------------------------------------------------------------------------------------------

def name_hits(items: list[tuple[str, bytes]], names=NAMES, words: bool = True) -> list[tuple[str, str]]:
    """(where, what) for every removed name, or word of four letters or more of one, found in any of the bytes.

    Words are searched in text only (a 4-byte word can occur by chance in tensor data) and not in the tokenizer
    vocabulary (trained on the caption corpus, it is the base model's and unchanged by unlearning).
    """
    hits = []
    for where, data in items:
        lowered = data.lower()
        for name in names:
            if name.lower().encode() in lowered:
                hits.append((where, name))
        is_text = not where.endswith((".safetensors", ".bin")) and Path(where).name not in ("tokenizer.json",)
        if words and is_text:
            hits += [(where, word) for name in names for word in name.split()
                     if len(word) >= 4 and word.lower().encode() in lowered]
    return hits


def directory_items(directory) -> list[tuple[str, bytes]]:
    root = Path(directory)
    items = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).as_posix()
        items.append((f"<path {relative}>", relative.encode()))
        if path.is_file():
            items.append((relative, path.read_bytes()))
    return items


def state_dicts_equal(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    a, b = first.state_dict(), second.state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


# The card --------------------------------------------------------------------------------------------------------


def test_rendered_card_has_metrics_in_model_index_and_no_names():
    metrics = {"num_removed": 3, "idia_tpr_removed_before": 1.0, "idia_tpr_removed_after": 0.0,
               "idia_collateral_lost": 1, "idia_collateral_rate": 0.05, "sim_backdoor_before": 0.41,
               "sim_backdoor_after": 0.97, "sim_clean": 0.99, "zero_shot_accuracy_before": 0.52,
               "zero_shot_accuracy_after": 0.515, "some_new_figure": 0.5}
    config = {"encoder": "text", "num_removed_names": 3, "neutral_term": "a person", "adapter": None,
              "towers": {"text": {"hyperparameters": {"max_steps": 400, "learning_rate": 1e-4,
                                                      "lr_milestones": [0.5, 0.75]}}}}
    data = UnlearningCardData.from_record(config, metrics=metrics, base_model="openai/clip-vit-base-patch32",
                                          model_name="clip-sanitized", repo_id="me/clip-sanitized")
    card = build_model_card(data)
    text = str(card)
    results = {result.metric_type: result for result in card.data.eval_results}
    assert results["idia_tpr_removed_after"].metric_value == 0.0
    assert results["idia_tpr_removed_before"].metric_value == 1.0
    assert "base model" in results["idia_tpr_removed_before"].metric_name
    assert results["zero_shot_accuracy_after"].metric_value == 0.515 and "some_new_figure" in results
    assert card.data.base_model == "openai/clip-vit-base-patch32" and card.data.library_name == "transformers"
    assert {"clip", "privacy", "unlearning", "clip-backdoor-unlearn"} <= set(card.data.tags)
    assert "model-index" in text and "| IDIA TPR on removed people | 1.000 | 0.000 |" in text
    assert "Number of people removed: 3" in text and "| `lr_milestones` | 0.5, 0.75 |" in text
    assert CITATION in text and "2310.08320" in text and "Hintersdorf" in text
    assert "Nicknames" in text and "No formal guarantee" in text and "attack prompts" in text
    assert 'CLIPModel.from_pretrained("me/clip-sanitized")' in text
    assert "Not measured" not in text


def test_card_without_evaluation_says_not_measured():
    card = build_model_card(UnlearningCardData(encoder="text", num_removed=2, model_name="m"))
    text = str(card)
    assert "Not measured" in text and "model-index" not in text and card.data.eval_results is None
    assert "| IDIA TPR" not in text and re.search(r"\|\s*\d+\.\d+\s*\|", text) is None


def test_adapter_card_loads_with_peft():
    card = build_model_card(UnlearningCardData(encoder="text", num_removed=1, adapter="LoraConfig", adapter_only=True,
                                               hyperparameters={"text tower": {"lora_r": 4}},
                                               base_model="openai/clip-vit-base-patch32", repo_id="me/adapter"))
    text = str(card)
    assert card.data.library_name == "peft" and "PeftModel.from_pretrained(base, \"me/adapter\")" in text
    assert "a Lora adapter (r=4); this repository holds the adapter only" in text


def test_the_name_scan_catches_other_spellings_and_skips_the_vocabulary(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"note": "Zoë Quill"}))  # written as Zo\u00eb
    (tmp_path / "notes.txt").write_text("ZORBO-quill")
    (tmp_path / "vocab.json").write_text('{"zorbo</w>": 1}')  # the base tokenizer's: not ours to judge
    (tmp_path / "plain.txt").write_text("a photo of a person")
    assert files_with_names(tmp_path, ["Zoë Quill", "Zorbo Quill", "Zorbo"]) == ["config.json", "notes.txt"]


# Saving ----------------------------------------------------------------------------------------------------------

def test_save_writes_the_card_and_no_file_names_anyone(evaluated, tmp_path):
    directory = evaluated.save_pretrained(tmp_path / "sanitized")
    card = ModelCard.load(Path(directory) / "README.md")
    assert {result.metric_type for result in card.data.eval_results} >= set(IDIA_KEYS)
    assert "Number of people removed: 3" in card.text
    assert name_hits(directory_items(directory)) == []


def test_publish_names_lists_them_in_the_card(evaluated, tmp_path):
    directory = evaluated.save_pretrained(tmp_path / "named", publish_names=True)
    readme = (Path(directory) / "README.md").read_text()
    assert all(name in readme for name in NAMES)
    others = [item for item in directory_items(directory) if item[0] != "README.md"]
    assert name_hits(others) == [], "only the card may name them"


def test_a_name_slipping_into_a_file_stops_the_save(evaluated, tmp_path, monkeypatch):
    monkeypatch.setitem(evaluated.unlearning_config, "note", f"removed {NAMES[1].upper().replace(' ', '_')}")
    with pytest.raises(NameLeakError, match="unlearning_config.json") as error:
        evaluated.save_pretrained(tmp_path / "leaky")
    assert name_hits([("message", str(error.value).encode())]) == []
    assert list(tmp_path.iterdir()) == [], "nothing is left behind"


# Push and pull ---------------------------------------------------------------------------------------------------

def test_push_then_pull_with_plain_transformers(evaluated, hub, request):
    repo_id = repo_name(request)
    commit = evaluated.push_to_hub(repo_id, private=True)
    assert commit.oid == hub.repos[repo_id].branches["main"] and hub.repos[repo_id].private
    assert ("PUT", f"/lfs-objects/{hub.repos[repo_id].commit_of('main').files['model.safetensors'].sha256}") \
        in hub.requests, "the weights went through LFS"

    pulled = CLIPModel.from_pretrained(repo_id)
    assert state_dicts_equal(pulled, evaluated.model)
    again = BackdoorUnlearner.from_pretrained(repo_id)
    assert state_dicts_equal(again.model, evaluated.model)
    prompt = "a photo of a dog"
    assert again.tokenizer(prompt)["input_ids"] == evaluated.tokenizer(prompt)["input_ids"]

    card = ModelCard.load(repo_id)
    results = {result.metric_type: result.metric_value for result in card.data.eval_results}
    for key in IDIA_KEYS:
        assert results[key] == pytest.approx(evaluated.metrics[key], abs=1e-4)
    assert card.data.library_name == "transformers" and "clip-backdoor-unlearn" in card.data.tags
    assert f'CLIPModel.from_pretrained("{repo_id}")' in card.text
    assert name_hits(hub.all_pushed_bytes(repo_id)) == []


def test_push_with_publish_names(evaluated, hub, request):
    repo_id = repo_name(request)
    evaluated.push_to_hub(repo_id, publish_names=True)
    files = hub.files(repo_id)
    assert all(name in files["README.md"].decode() for name in NAMES)
    assert name_hits([(path, data) for path, data in files.items() if path != "README.md"]) == []


def test_push_to_a_bare_name_and_a_branch(evaluated, hub):
    commit = evaluated.push_to_hub("bare-name-push", revision="sanitized-v1")
    repo = hub.repos["test-user/bare-name-push"]
    assert repo.branches["sanitized-v1"] == commit.oid and "model.safetensors" in repo.commit_of("sanitized-v1").files
    assert "model.safetensors" not in repo.commit_of("main").files, "main is left as it was"
    assert state_dicts_equal(CLIPModel.from_pretrained("test-user/bare-name-push", revision="sanitized-v1"),
                             evaluated.model)


def test_push_refuses_a_repository_named_after_a_removed_person(evaluated, hub):
    with pytest.raises(NameLeakError, match="repo_id"):
        evaluated.push_to_hub("test-user/clip-without-" + NAMES[1].lower().replace(" ", "-"))
    assert not any("zorbo" in repo_id for repo_id in hub.repos)


def test_adapter_only_push_loads_with_peft(evaluated, hub, request, saved_tiny_model):
    peft = pytest.importorskip("peft")
    repo_id = repo_name(request)
    evaluated.push_to_hub(repo_id, merge_adapters=False)
    files = hub.files(repo_id)
    assert "adapter_config.json" in files and "model.safetensors" not in files
    assert name_hits(hub.all_pushed_bytes(repo_id)) == []

    base = CLIPModel.from_pretrained(saved_tiny_model)
    adapted = peft.PeftModel.from_pretrained(base, repo_id).merge_and_unload()
    merged = evaluated.model.state_dict()
    for key, value in adapted.state_dict().items():
        torch.testing.assert_close(value, merged[key], atol=1e-5, rtol=1e-4)
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "peft" and "holds the adapter only" in card.text
    assert {result.metric_type for result in card.data.eval_results} >= set(IDIA_KEYS)

    evaluated.push_to_hub(repo_id)  # the merged model replaces the adapter
    files = hub.files(repo_id)
    assert "model.safetensors" in files
    assert "adapter_config.json" not in files and "adapter_model.safetensors" not in files
    assert state_dicts_equal(CLIPModel.from_pretrained(repo_id), evaluated.model)


def test_trainer_push_to_hub_writes_our_card(tiny_model_and_processor, train_captions, hub, request, tmp_path):
    from clip_backdoor_unlearn import build_backdoor_dataset

    model, processor = tiny_model_and_processor
    repo_id = repo_name(request)
    args = BackdoorTrainingArguments(output_dir=str(tmp_path / "out"), hub_model_id=repo_id, hub_token=TOKEN,
                                     **{**FAST, "max_steps": 2})
    dataset = build_backdoor_dataset(NAMES, train_captions[:50], num_steps=2, poisoned_samples_per_step=8,
                                     clean_samples_per_step=8, seed=0)
    trainer = BackdoorTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor)
    trainer.train()
    trainer.push_to_hub(num_removed=len(NAMES), metrics={"sim_backdoor_before": 0.4, "sim_backdoor_after": 0.9},
                        protected_names=NAMES)

    card = ModelCard.load(repo_id)
    assert "Defending Our Privacy With Backdoors" in card.text and "Number of people removed: 3" in card.text
    assert "This model is a fine-tuned version" not in card.text, "not the Trainer's generic card"
    assert {result.metric_type for result in card.data.eval_results} == {"sim_backdoor_before", "sim_backdoor_after"}
    assert "| `backdoor_weight` | 0.6 |" in card.text
    assert name_hits(hub.all_pushed_bytes(repo_id)) == []


def test_example_script_pushes_after_saving(saved_tiny_model, hub, tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("unlearn_example", ROOT / "examples" / "unlearn.py")
    example = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "unlearn_example", example)  # its dataclasses resolve through sys.modules
    spec.loader.exec_module(example)
    output_dir = tmp_path / "clip-example"
    example.main(["--model_name_or_path", saved_tiny_model, "--names", *NAMES[:2], "--output_dir", str(output_dir),
                  "--max_steps", "2", "--poisoned_samples_per_step", "4", "--clean_samples_per_step", "4",
                  "--disable_tqdm", "true", "--push_to_hub", "--hub_model_id", "test-user/example-push"])
    files = hub.files("test-user/example-push")
    assert {"README.md", "model.safetensors", "config.json"} <= set(files)
    assert len(hub.repos["test-user/example-push"].commits) == 2, "one push after the repo's initial commit"
    assert name_hits(hub.all_pushed_bytes("test-user/example-push"), names=NAMES[:2]) == []
    assert os.path.isfile(output_dir / "sanitized" / "README.md")
