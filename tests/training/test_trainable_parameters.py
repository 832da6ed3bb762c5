"""trainable_parameters: full fine-tuning of the whole tower (default), of the text tower's token embedding alone, or of
the rows of the names' own tokens."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from clip_backdoor_unlearn import BackdoorTrainer, BackdoorTrainingArguments, BackdoorUnlearner
from clip_backdoor_unlearn.data.prompts import PERSON_TEMPLATES
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.training.embeddings import text_embeddings
from clip_backdoor_unlearn.training.towers import (
    TEXT,
    VISION,
    is_token_embedding,
    name_token_ids,
    set_tower_trainable,
    train_token_rows,
)

from ..conftest import NAMES

pytestmark = pytest.mark.usefixtures("single_thread")

RUN = dict(max_steps=4, learning_rate=1e-2, poisoned_samples_per_step=8, clean_samples_per_step=8, seed=0,
           disable_tqdm=True, name_variants=None)


def _pictures(count: int, seed: int) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)) for _ in range(count)]


def _changed(before: dict, after: dict) -> set[str]:
    return {name for name in before if not torch.equal(before[name], after[name])}


def test_token_embedding_only_trains_the_token_embedding_and_nothing_else(saved_tiny_model, train_captions):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES, captions=train_captions, trainable_parameters="token_embedding", **RUN)
    changed = _changed(unlearner.original_model.state_dict(), unlearner.model.state_dict())
    assert changed == {"text_model.embeddings.token_embedding.weight"}
    assert result.config["towers"]["text"]["hyperparameters"]["trainable_parameters"] == "token_embedding"
    # The default trains the layers too.
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    unlearner.unlearn(NAMES, captions=train_captions, **RUN)
    changed = _changed(unlearner.original_model.state_dict(), unlearner.model.state_dict())
    assert "text_model.embeddings.token_embedding.weight" in changed and len(changed) > 10
    assert not any(name.startswith("vision_model") for name in changed)


def test_name_tokens_trains_only_the_rows_of_the_names_tokens(saved_tiny_model, train_captions):
    """Every other row keeps its value exactly, so a caption without those tokens embeds as before, and the names'
    rows do move (variants on: their tokens count as the names')."""
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    result = unlearner.unlearn(NAMES[:2], captions=train_captions, trainable_parameters="name_tokens",
                               **{**RUN, "name_variants": "auto"})
    before, after = unlearner.original_model.state_dict(), unlearner.model.state_dict()
    assert _changed(before, after) == {"text_model.embeddings.token_embedding.weight"}
    key = "text_model.embeddings.token_embedding.weight"
    moved = (before[key] != after[key]).any(dim=1).nonzero().flatten().tolist()
    tokenizer = unlearner.processor.tokenizer
    own = set(name_token_ids(tokenizer, NAMES[:2]))
    assert own <= set(moved)
    assert set(moved) - own  # the variants' own tokens moved too (misspellings split differently)
    template_words = set(name_token_ids(tokenizer, [PERSON_TEMPLATES[0].format("")]))
    assert template_words and not template_words & set(moved)  # the trained captions' other words stay
    assert result.config["towers"]["text"]["hyperparameters"]["trainable_parameters"] == "name_tokens"
    caption = next(text for text in train_captions if not set(tokenizer(text)["input_ids"]) & set(moved))
    ids = tokenizer([caption], return_tensors="pt")
    with torch.no_grad():  # the same weights and ids: equal but for the last bit of a kernel's rounding
        torch.testing.assert_close(text_embeddings(unlearner.model, ids["input_ids"], ids["attention_mask"]),
                                   text_embeddings(unlearner.original_model, ids["input_ids"], ids["attention_mask"]),
                                   rtol=0, atol=1e-5)


def test_name_tokens_is_refused_where_it_cannot_keep_its_promise(saved_tiny_model, train_captions):
    with pytest.raises(ValueError, match="weight_decay"):
        BackdoorTrainingArguments(output_dir="unused", trainable_parameters="name_tokens", weight_decay=0.01)
    model, processor = tiny_clip()
    with pytest.raises(ValueError, match="token embedding"):
        train_token_rows(model, [10**6])
    with pytest.raises(ValueError, match="token embedding"):
        train_token_rows(model, [])
    for setting, ids in (("name_tokens", None), ("tower", [5])):
        args = BackdoorTrainingArguments(output_dir="unused", trainable_parameters=setting, report_to="none")
        with pytest.raises(ValueError, match="trainable_token_ids"):
            BackdoorTrainer(model=model, args=args, processing_class=processor, trainable_token_ids=ids)


def test_the_token_embedding_is_found_in_every_text_tower_layout():
    model, _ = tiny_clip()
    trained = set_tower_trainable(model, TEXT, token_embedding_only=True)
    assert trained == ["text_model.embeddings.token_embedding.weight"]
    assert [name for name, p in model.named_parameters() if p.requires_grad] == trained
    assert is_token_embedding("embeddings.token_embedding.weight")  # a plain CLIPTextModel has no text_model level
    assert not is_token_embedding("text_model.embeddings.position_embedding.weight")
    with pytest.raises(ValueError, match="image tower has none"):
        set_tower_trainable(model, VISION, token_embedding_only=True)


def test_bad_or_misplaced_settings_are_errors_before_training(saved_tiny_model, train_captions):
    with pytest.raises(ValueError, match="trainable_parameters must be one of"):
        BackdoorTrainingArguments(output_dir="unused", trainable_parameters="layers")
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    faces = {"face_images": {NAMES[0]: _pictures(2, 1)}, "reference_faces": _pictures(3, 2),
             "images": _pictures(3, 3)}
    with pytest.raises(ValueError, match="image tower trains every weight"):
        unlearner.unlearn(NAMES[:1], encoder="vision", trainable_parameters="token_embedding", **faces, **RUN)
    peft = pytest.importorskip("peft")
    with pytest.raises(ValueError, match="target_modules"):
        unlearner.unlearn(NAMES[:1], captions=train_captions, peft_config=peft.LoraConfig(r=2),
                          trainable_parameters="token_embedding", **RUN)
    assert unlearner.original_model is None or not _changed(unlearner.original_model.state_dict(),
                                                            unlearner.model.state_dict())


def test_with_both_towers_the_setting_stays_with_the_text_tower(saved_tiny_model, train_captions):
    unlearner = BackdoorUnlearner.from_pretrained(saved_tiny_model)
    faces = {"face_images": {NAMES[0]: _pictures(2, 1)}, "reference_faces": _pictures(3, 2),
             "images": _pictures(3, 3)}
    result = unlearner.unlearn(NAMES[:1], encoder="both", captions=train_captions,
                               trainable_parameters="token_embedding", reference_samples_per_step=0,
                               image_method="fine_tune", **{**RUN, "max_steps": 2}, **faces)
    changed = _changed(unlearner.original_model.state_dict(), unlearner.model.state_dict())
    assert {name for name in changed if name.startswith("text")} == {"text_model.embeddings.token_embedding.weight"}
    assert any(name.startswith("vision_model.encoder") for name in changed)
    towers = result.config["towers"]
    assert towers["text"]["hyperparameters"]["trainable_parameters"] == "token_embedding"
    assert towers["vision"]["hyperparameters"]["trainable_parameters"] == "tower"


def test_the_names_rows_beside_a_fine_tuned_image_tower_are_warned_of(saved_tiny_model, train_captions, caplog):
    faces = {"face_images": {NAMES[0]: _pictures(2, 1)}, "reference_faces": _pictures(3, 2),
             "images": _pictures(3, 3)}
    quick = {**RUN, "max_steps": 2, "reference_samples_per_step": 0, "gated_steps": 2}
    warned = {}
    for trainable, method in [("name_tokens", "fine_tune"), ("name_tokens", "gated_neurons"),
                              ("tower", "fine_tune")]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="clip_backdoor_unlearn"):
            BackdoorUnlearner.from_pretrained(saved_tiny_model).unlearn(
                NAMES[:1], encoder="both", captions=train_captions, trainable_parameters=trainable,
                image_method=method, **quick, **faces)
        warned[trainable, method] = "let removed faces find their names again" in caplog.text
        assert NAMES[0] not in caplog.text
    assert warned == {("name_tokens", "fine_tune"): True, ("name_tokens", "gated_neurons"): False,
                      ("tower", "fine_tune"): False}
