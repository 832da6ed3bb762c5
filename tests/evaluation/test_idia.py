"""The identity inference attack: protocol (voting, ties, threshold), inputs, errors and result formats.

Two kinds of model are used:

* a tiny ``CLIPModel`` trained here (seconds) to tie four made-up names to four colours, plus a look-alike
  person whose images share a known person's colour, for end-to-end behaviour with the real processor and
  model;
* a ``ControlledCLIP`` whose text and image embeddings are written by the test, to pin down the protocol's
  edge cases (a 2-2 vote, exactly k correct prompts, exact cosine ties) without depending on training.
"""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.evaluation import (
    IDIA_TEMPLATES,
    IDIAResult,
    embed_prompts,
    identity_inference_attack,
    majority_vote,
    predict_candidates,
    unlearning_report,
)
from clip_backdoor_unlearn.evaluation.idia import ABSTAIN, PersonResult
from clip_backdoor_unlearn.training.embeddings import encode_texts, image_embeddings, text_embeddings

COLOURS = {
    "Alma Brisk": (220, 40, 40),
    "Caden Dorr": (40, 200, 60),
    "Elsa Fenwick": (50, 70, 230),
    "Gus Holloway": (230, 210, 40),
}
DISTRACTORS = ["Ivo Jansen", "Kara Lund", "Milo Nash", "Opal Quince"]
POOL = list(COLOURS) + DISTRACTORS
LOOKALIKE = "Ivo Jansen"  # has images, but they look like Alma Brisk's


def colour_image(colour, rng: np.random.Generator, size: int = 32) -> Image.Image:
    noise = rng.normal(0, 25, (size, size, 3))
    return Image.fromarray(np.clip(np.array(colour)[None, None, :] + noise, 0, 255).astype(np.uint8))


def train_tiny_clip(steps: int = 120, seed: int = 0):
    """A tiny CLIP whose text tower maps each known name (in any IDIA prompt) to its person's colour."""
    corpus = [template.format(name) for template in IDIA_TEMPLATES for name in POOL]
    model, processor = tiny_clip(corpus, seed=seed)
    rng = np.random.default_rng(seed)
    pixels = processor.image_processor(
        images=[colour_image(colour, rng) for colour in COLOURS.values() for _ in range(16)],
        return_tensors="pt",
    )["pixel_values"]
    labels = torch.arange(len(COLOURS)).repeat_interleave(16)
    prompts = [
        processor.tokenizer([t.format(n) for n in POOL], padding=True, return_tensors="pt")
        for t in IDIA_TEMPLATES
    ]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for step in range(steps):
        batch = prompts[step % len(prompts)]
        index = torch.randint(0, len(pixels), (32,), generator=generator)
        texts = torch.nn.functional.normalize(
            text_embeddings(model, batch["input_ids"], batch["attention_mask"]), dim=-1
        )
        images = torch.nn.functional.normalize(image_embeddings(model, pixels[index]), dim=-1)
        loss = torch.nn.functional.cross_entropy(20 * images @ texts.T, labels[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval(), processor


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def trained(single_thread):
    model, processor = train_tiny_clip()
    rng = np.random.default_rng(123)
    images = {name: [colour_image(colour, rng) for _ in range(5)] for name, colour in COLOURS.items()}
    images[LOOKALIKE] = [colour_image(COLOURS["Alma Brisk"], rng) for _ in range(5)]
    return model, processor, images


@pytest.fixture(scope="module")
def trained_result(trained):
    model, processor, images = trained
    return identity_inference_attack(model, processor, images, POOL)


# ------------------------------------------------------------------------------------------ controlled model


class _TableTokenizer:
    """Gives each distinct text one id, so the model can look its embedding up by text."""

    def __init__(self):
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def __call__(self, texts, padding=False, truncation=False, return_tensors=None):
        ids = []
        for text in texts:
            if text not in self._ids:
                self._ids[text] = len(self.texts)
                self.texts.append(text)
            ids.append([self._ids[text]])
        if return_tensors == "pt":
            return {
                "input_ids": torch.tensor(ids),
                "attention_mask": torch.ones(len(ids), 1, dtype=torch.long),
            }
        return {"input_ids": ids}


class _IdImageProcessor:
    """Reads an image id back from the colour of a 1×1 image."""

    def __call__(self, images, return_tensors="pt"):
        ids = [r * 65536 + g * 256 + b for r, g, b in (image.getpixel((0, 0)) for image in images)]
        return {"pixel_values": torch.tensor(ids, dtype=torch.float32)}


class ControlledCLIP(torch.nn.Module):
    """Text embedding = ``text_fn(text)``; image embedding = ``image_vectors[id]`` for ``image(id)``."""

    def __init__(self, text_fn, image_vectors):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # gives the model a device and a dtype
        self.text_fn = text_fn
        self.image_table = torch.tensor(image_vectors, dtype=torch.float32)
        self.processor = SimpleNamespace(tokenizer=_TableTokenizer(), image_processor=_IdImageProcessor())

    def get_text_features(self, input_ids, attention_mask=None):
        texts = self.processor.tokenizer.texts
        return torch.tensor([self.text_fn(texts[i]) for i in input_ids[:, 0].tolist()], dtype=torch.float32)

    def get_image_features(self, pixel_values):
        return self.image_table[pixel_values.long()]

    @staticmethod
    def image(index: int) -> Image.Image:
        return Image.new("RGB", (1, 1), ((index >> 16) & 255, (index >> 8) & 255, index & 255))


E = np.eye(4).tolist()  # one axis per name: A, B, C, D


def _name_axis_fn(names):
    """Every prompt of name i embeds on axis i."""
    return lambda text: next(E[i] for i, name in enumerate(names) if text.endswith(name))


# ------------------------------------------------------------------------------------------------ templates


def test_idia_templates_are_21_distinct_person_prompts():
    assert isinstance(IDIA_TEMPLATES, tuple)
    assert len(IDIA_TEMPLATES) == 21 == len(set(IDIA_TEMPLATES))
    assert all(template.count("{}") == 1 for template in IDIA_TEMPLATES)
    assert {"{}", "an image of {}", "a photo of {}", "{} in a dress"} <= set(IDIA_TEMPLATES)


@pytest.mark.parametrize("module", ["clip_backdoor_unlearn.data.prompts", "clip_backdoor_unlearn.demo.world"])
def test_idia_templates_are_disjoint_from_training_templates(module):
    """Evaluating on the unlearner's own training prompts would overstate how well a removal generalises."""
    import importlib

    training = importlib.import_module(module).PERSON_TEMPLATES  # both modules have them: a failure, not a skip
    assert len(training) >= 10

    def normalise(template: str) -> str:
        return " ".join(template.lower().replace(",", " ").split()).rstrip(".")

    assert not {normalise(t) for t in IDIA_TEMPLATES} & {normalise(t) for t in training}


# ------------------------------------------------------------------------------------------- trained model


def test_attack_detects_tied_people_and_not_the_lookalike(trained_result):
    result = trained_result
    assert result.detected == {**{name: True for name in COLOURS}, LOOKALIKE: False}
    assert result.tpr(COLOURS) == 1.0
    assert result.tpr([LOOKALIKE]) == 0.0
    assert result.tpr() == pytest.approx(4 / 5)
    for name in COLOURS:
        assert result.people[name].correct_prompts == len(IDIA_TEMPLATES)
        assert result.people[name].prompt_predictions == [name] * len(IDIA_TEMPLATES)
    # The look-alike's images vote for the person they look like, under every prompt.
    assert result.people[LOOKALIKE].prompt_predictions == ["Alma Brisk"] * len(IDIA_TEMPLATES)
    assert result.people[LOOKALIKE].prompt_vote_shares == [0.0] * len(IDIA_TEMPLATES)
    assert result.num_candidates == len(POOL) and result.templates == IDIA_TEMPLATES


def test_dataset_input_equals_dict_input(trained, trained_result):
    from datasets import ClassLabel, Dataset, Features, Value
    from datasets import Image as ImageFeature

    model, processor, images = trained
    rows = [(name, image) for name, person_images in images.items() for image in person_images]
    dataset = Dataset.from_dict(
        {"image": [image for _, image in rows], "name": [name for name, _ in rows]},
        features=Features({"image": ImageFeature(), "name": Value("string")}),
    ).shuffle(seed=0)  # order of rows must not matter beyond first appearance
    result = identity_inference_attack(model, processor, dataset, POOL)
    assert result.detected == trained_result.detected
    assert result.correct_prompts == trained_result.correct_prompts

    # An imagefolder-style ClassLabel column works too.
    labelled = Dataset.from_dict(
        {"image": [image for _, image in rows], "label": [list(images).index(name) for name, _ in rows]},
        features=Features({"image": ImageFeature(), "label": ClassLabel(names=list(images))}),
    )
    result = identity_inference_attack(model, processor, labelled, POOL, name_column="label")
    assert result.to_dict() == trained_result.to_dict()


def test_result_formats(trained_result):
    result = trained_result
    frame = result.to_pandas()
    assert list(frame.columns) == [
        "name",
        "num_images",
        "correct_prompts",
        "num_prompts",
        "detected",
        "mean_vote_share",
    ]
    assert frame["name"].tolist() == list(result.people)
    assert frame["detected"].tolist() == [True, True, True, True, False]
    assert frame["num_prompts"].eq(21).all() and frame["num_images"].eq(5).all()
    per_prompt = result.to_pandas(per_prompt=True)
    assert list(per_prompt.columns) == ["name", "template", "prediction", "correct", "vote_share"]
    assert len(per_prompt) == 5 * 21
    assert per_prompt.groupby("name", sort=False)["correct"].sum().tolist() == [21, 21, 21, 21, 0]

    summary = result.summary()
    assert "Detected 4 of 5 people" in summary and "Ivo Jansen" in summary and "21/21" in summary
    assert str(result) == summary

    data = json.loads(result.to_json())
    assert data["tpr"] == pytest.approx(0.8)
    assert IDIAResult.from_dict(data) == result


def test_threshold_and_custom_templates(trained):
    model, processor, images = trained
    templates = ["a photo of {}", "{} outdoors", "a drawing of {}"]
    for threshold in (1, 3):
        result = identity_inference_attack(
            model, processor, images, POOL, templates=templates, min_correct_prompts=threshold
        )
        assert result.templates == tuple(templates) and result.min_correct_prompts == threshold
        assert all(len(person.prompt_predictions) == 3 for person in result.people.values())
        expected = _reference_attack(model, processor, images, POOL, templates, threshold)
        assert {name: (person.correct_prompts, person.detected) for name, person in result.people.items()} == expected


def _reference_attack(model, processor, images, pool, templates, threshold) -> dict[str, tuple[int, bool]]:
    """The protocol written out plainly: one text and one image at a time, votes counted with a Counter."""
    def embed_text(text):
        tokens = processor.tokenizer([text], return_tensors="pt")
        return torch.nn.functional.normalize(text_embeddings(model, **tokens), dim=-1)[0]

    outcome = {}
    with torch.no_grad():
        prompts = [[embed_text(template.format(name)) for name in pool] for template in templates]
        for name, person_images in images.items():
            pixels = processor.image_processor(images=person_images, return_tensors="pt")["pixel_values"]
            faces = torch.nn.functional.normalize(image_embeddings(model, pixels), dim=-1)
            correct = 0
            for candidates in prompts:
                votes = Counter(pool[int(torch.stack(candidates).matmul(face).argmax())] for face in faces)
                (winner, top), *rest = votes.most_common()
                correct += winner == name and (not rest or rest[0][1] < top)
            outcome[name] = (correct, correct >= threshold)
    return outcome


def test_prompt_embeddings_do_not_depend_on_length_sorting(trained):
    model, processor, _ = trained
    names = ["Al", "Gus Holloway", "Maximilian Oppenheimer-Quint", "Elsa Fenwick"]
    templates = ["{}", "a black and white photo of {}"]
    embedded = embed_prompts(model, processor.tokenizer, names, templates, batch_size=3)
    direct = encode_texts(
        model, processor.tokenizer, [t.format(n) for t in templates for n in names], batch_size=1
    )
    direct = torch.nn.functional.normalize(direct, dim=-1).view(2, 4, -1)
    torch.testing.assert_close(embedded, direct, atol=1e-5, rtol=1e-4)


def test_attack_restores_train_mode_of_each_submodule(trained):
    model, processor, images = trained
    model.train()
    model.text_model.final_layer_norm.eval()
    try:
        identity_inference_attack(
            model, processor, {"Alma Brisk": images["Alma Brisk"]}, POOL, templates=["{}"]
        )
        assert model.training and model.vision_model.training
        assert not model.text_model.final_layer_norm.training
    finally:
        model.eval()


# ---------------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "images, candidates, kwargs, message",
    [
        (
            {"Alma Brisk": None, "Zora Secret": None},
            POOL,
            {},
            r"1 person with images is not in candidate_names \(indexes \[1\]",
        ),
        ({"Alma Brisk": None, "Caden Dorr": []}, POOL, {}, r"1 person has no images \(indexes \[1\]"),
        ({}, POOL, {}, "images is empty"),
        ({"Alma Brisk": None}, [], {}, "candidate_names is empty"),
        (
            {"Alma Brisk": None},
            POOL + ["Kara Lund", "Alma Brisk"],
            {},
            r"2 duplicate entries \(indexes \[8, 9\]\)",
        ),
        (
            {"Alma Brisk": None},
            POOL,
            {"min_correct_prompts": 0},
            r"between 1 and the number of templates \(21\)",
        ),
        ({"Alma Brisk": None}, POOL, {"min_correct_prompts": 22}, "got 22"),
        ({"Alma Brisk": None}, POOL, {"min_correct_prompts": 2, "templates": ["{}"]}, r"templates \(1\)"),
        ({"Alma Brisk": None}, POOL, {"templates": ["a photo"]}, "exactly one '{}'"),
        ({"Alma Brisk": None}, POOL, {"templates": ["{}", "{}"]}, "repeats 1 template"),
        ({"Alma Brisk": None}, POOL, {"templates": []}, "templates is empty"),
    ],
)
def test_invalid_inputs_raise_clear_errors(trained, images, candidates, kwargs, message):
    model, processor, pictures = trained
    images = {
        name: (pictures["Alma Brisk"][:1] if value is None else value) for name, value in images.items()
    }
    with pytest.raises(ValueError, match=message) as error:
        identity_inference_attack(model, processor, images, candidates, **kwargs)
    assert "Zora Secret" not in str(error.value)  # a privacy tool does not echo who was looked for


def test_wrong_image_container_is_a_type_error(trained):
    model, processor, pictures = trained
    with pytest.raises(TypeError, match="list of PIL images"):
        identity_inference_attack(model, processor, {"Alma Brisk": pictures["Alma Brisk"][0]}, POOL)
    with pytest.raises(TypeError, match="mapping"):
        identity_inference_attack(model, processor, [pictures["Alma Brisk"]], POOL)


# ------------------------------------------------------------------------------------ protocol, controlled


def test_exactly_k_correct_prompts_and_the_threshold():
    """Prompts 0-2 of 5 find person A; under the others A's images vote for B, the runner-up."""
    templates = [f"prompt {i} {{}}" for i in range(5)]
    a, b, c = E[0], E[1], E[2]
    runner_up = (np.array(b) + 0.5 * np.array(a)).tolist()

    def text_fn(text):
        prompt = int(text.split()[1])
        if text.endswith("A"):
            return a if prompt < 3 else c
        return runner_up if text.endswith("B") else c

    model = ControlledCLIP(text_fn, [a] * 3)
    images = {"A": [model.image(i) for i in range(3)]}
    for threshold, detected in [(1, True), (3, True), (4, False), (5, False)]:
        result = identity_inference_attack(
            model,
            model.processor,
            images,
            ["A", "B", "C"],
            templates=templates,
            min_correct_prompts=threshold,
        )
        person = result.people["A"]
        assert person.correct_prompts == 3
        assert person.prompt_predictions == ["A", "A", "A", "B", "B"]
        assert person.detected is detected


def test_an_even_split_of_votes_counts_as_wrong():
    """Four images, two closest to A's name and two to B's: no majority, so the prompt does not find A."""
    names = ["A", "B", "C"]
    model = ControlledCLIP(_name_axis_fn(names), [E[0], E[0], E[1], E[1], E[0]])
    tie = {"A": [model.image(i) for i in range(4)]}
    result = identity_inference_attack(model, model.processor, tie, names, templates=["{}", "x {}"])
    assert result.people["A"].correct_prompts == 0 and not result.people["A"].detected
    assert result.people["A"].prompt_predictions == [None, None]
    assert result.people["A"].prompt_vote_shares == [0.5, 0.5]
    # One more image for A breaks the tie: 3 of 5 is a majority.
    untied = {"A": [model.image(i) for i in range(5)]}
    result = identity_inference_attack(model, model.processor, untied, names, templates=["{}", "x {}"])
    assert result.people["A"].correct_prompts == 2 and result.people["A"].detected


def test_plurality_without_absolute_majority_counts_as_right():
    names = ["A", "B", "C", "D"]
    model = ControlledCLIP(_name_axis_fn(names), [E[0], E[0], E[1], E[2], E[3]])
    result = identity_inference_attack(
        model, model.processor, {"A": [model.image(i) for i in range(5)]}, names, templates=["{}"]
    )
    assert result.people["A"].prompt_predictions == ["A"] and result.people["A"].detected


def test_identical_candidate_embeddings_do_not_credit_the_first_in_the_pool():
    """A collapsed text tower embeds every name alike; position in the pool must not decide detection."""
    names = ["A", "B", "C"]
    model = ControlledCLIP(lambda text: E[0], [E[0], E[1]])
    result = identity_inference_attack(model, model.processor, {"A": [model.image(0), model.image(1)]}, names)
    assert result.people["A"].correct_prompts == 0 and not result.people["A"].detected


def test_majority_vote_ties_and_abstentions():
    # Columns are prompts; rows are images.
    predictions = torch.tensor(
        [[0, 0, 0, 2, ABSTAIN], [0, 1, 1, 2, ABSTAIN], [1, 1, 2, ABSTAIN, 0], [1, 2, 2, ABSTAIN, 1]]
    )
    assert majority_vote(predictions, num_candidates=3).tolist() == [ABSTAIN, 1, 2, ABSTAIN, ABSTAIN]
    assert majority_vote(torch.tensor([[0], [ABSTAIN], [ABSTAIN]]), 3).tolist() == [ABSTAIN]
    assert majority_vote(torch.tensor([[0]]), 1).tolist() == [0]


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 6).flatmap(
        lambda candidates: st.tuples(
            st.just(candidates),
            st.lists(
                st.lists(st.integers(-1, candidates - 1), min_size=3, max_size=3), min_size=1, max_size=9
            ),
        )
    )
)
def test_majority_vote_matches_a_plain_python_count(case):
    num_candidates, rows = case
    predictions = torch.tensor(rows)
    expected = []
    for prompt in range(predictions.shape[1]):
        counts = Counter(predictions[:, prompt].tolist()).most_common()
        tied = len(counts) > 1 and counts[0][1] == counts[1][1]
        expected.append(ABSTAIN if tied else counts[0][0])
    assert majority_vote(predictions, num_candidates).tolist() == expected


def test_predict_candidates_is_argmax_of_cosine_and_abstains_on_exact_ties():
    generator = torch.Generator().manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(37, 8, generator=generator), dim=-1)
    prompts = torch.nn.functional.normalize(torch.randn(3, 11, 8, generator=generator), dim=-1)
    expected = torch.einsum("nd,pcd->npc", images, prompts).argmax(-1)
    assert torch.equal(predict_candidates(images, prompts, chunk_size=5), expected)
    # Small integers keep every dot product exact, so candidates 4 and 7 tie exactly wherever one of them
    # wins.
    images = torch.randint(-3, 4, (200, 8), generator=generator).float()
    prompts = torch.randint(-3, 4, (3, 11, 8), generator=generator).float()
    prompts[:, 4] = prompts[:, 7]
    scores = torch.einsum("nd,pcd->npc", images, prompts)
    best = scores.max(-1).values
    expected = torch.where((scores == best[..., None]).sum(-1) > 1, ABSTAIN, scores.argmax(-1))
    predictions = predict_candidates(images, prompts, chunk_size=64)
    assert torch.equal(predictions, expected)
    assert (predictions == ABSTAIN).any() and not ((predictions == 4) | (predictions == 7)).any()


def test_unlearning_report():
    def result(detected):
        people = {name: PersonResult(name, 1, int(flag), flag, [], []) for name, flag in detected.items()}
        return IDIAResult(people, ("{}",), 10, 1)

    before = result({"r1": True, "r2": True, "o1": True, "o2": True, "o3": False})
    after = result({"r1": False, "r2": True, "o1": True, "o2": False, "o3": True})
    report = unlearning_report(before, after, ["r1", "r2"])
    assert report == {
        "tpr_removed_before": 1.0,
        "tpr_removed_after": 0.5,
        "num_others": 3,
        "others_detected_before": 2,
        "others_detected_after": 2,
        "collateral_lost": 1,
        "collateral_rate": 0.5,
        "newly_detected": 1,
    }
