"""ForgetMonitorCallback: its attack is the IDIA's, it stops on an exact verdict, and checks cost no training time."""

from __future__ import annotations

import copy
import time

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import TrainerControl, TrainerState

from clip_backdoor_unlearn import BackdoorTrainer, BackdoorTrainingArguments, build_backdoor_dataset
from clip_backdoor_unlearn.demo.tiny import tiny_clip
from clip_backdoor_unlearn.evaluation import identity_inference_attack
from clip_backdoor_unlearn.training.callbacks import ForgetMonitorCallback, _trained_towers

NAMES = ["Ada Lovelace", "Zorbo Quill", "Mira Fenwick"]
POOL = NAMES + ["Olek Brandt", "Tove Lind", "Ivo Jansen"]
TEMPLATES = ("a photo of {}", "{} smiling", "a portrait of {}", "an image of {}")


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model_and_processor():
    corpus = [template.format(name) for template in TEMPLATES for name in POOL] + ["a dog on the grass", "a red car"]
    return tiny_clip(corpus, seed=3)


@pytest.fixture(scope="module")
def faces():
    rng = np.random.default_rng(0)
    return {name: [Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)) for _ in range(3)]
            for name in POOL}


def monitor(processor, faces, **kwargs) -> ForgetMonitorCallback:
    return ForgetMonitorCallback(processor, faces, NAMES, POOL, templates=TEMPLATES, batch_size=64, **kwargs)


def trainer(model, processor, callback, max_steps: int = 5) -> BackdoorTrainer:
    args = BackdoorTrainingArguments(output_dir="unused", max_steps=max_steps, learning_rate=1e-2,
                                     poisoned_samples_per_step=4, clean_samples_per_step=4, logging_steps=100,
                                     disable_tqdm=True, seed=0, report_to="none")
    dataset = build_backdoor_dataset(NAMES, ["a dog on the grass", "a red car"], num_steps=max_steps,
                                     poisoned_samples_per_step=4, clean_samples_per_step=4, seed=0,
                                     tokenizer=processor.tokenizer)
    return BackdoorTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                           callbacks=[callback])


def idia_tpr(model, processor, faces) -> float:
    return identity_inference_attack(model, processor, faces, POOL, templates=TEMPLATES).tpr(NAMES)


def begin(callback, model) -> None:
    callback.on_train_begin(None, TrainerState(), TrainerControl(), model=model)


def test_measure_is_the_identity_inference_attack(model_and_processor, faces):
    model, processor = model_and_processor
    model = copy.deepcopy(model)
    callback = monitor(processor, faces)
    model.requires_grad_(False).text_model.requires_grad_(True)  # the text tower trains, the image tower not
    begin(callback, model)
    assert callback._prompts is None and callback._images is not None  # only the fixed side is embedded up front
    tpr = callback.measure(model)
    assert tpr == idia_tpr(model, processor, faces)
    assert callback.measure(model, exact=False) == tpr  # nothing moved: screening agrees
    with torch.no_grad():  # the text tower changes: an exact check re-embeds every prompt
        for parameter in model.text_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    tpr = callback.measure(model)
    assert tpr == idia_tpr(model, processor, faces)
    cached = [embeddings.clone() for embeddings in callback._images]
    with torch.no_grad():  # the image tower does not train: its embeddings are reused, not recomputed
        model.visual_projection.weight.mul_(-1)
    assert callback.measure(model) == tpr
    assert all(torch.equal(a, b) for a, b in zip(cached, callback._images, strict=True))

    vision_model = copy.deepcopy(model_and_processor[0])
    vision_model.requires_grad_(False).vision_model.requires_grad_(True)
    callback = monitor(processor, faces)
    begin(callback, vision_model)
    with torch.no_grad():
        for parameter in vision_model.vision_model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    assert callback.measure(vision_model) == idia_tpr(vision_model, processor, faces)


def test_trained_towers_are_read_from_requires_grad(model_and_processor):
    model = copy.deepcopy(model_and_processor[0])
    model.requires_grad_(False)
    assert _trained_towers(model) == (False, False)
    model.text_projection.requires_grad_(True)
    assert _trained_towers(model) == (True, False)
    model.vision_model.encoder.requires_grad_(True)
    assert _trained_towers(model) == (True, True)


def test_stops_at_the_first_check_that_passes(model_and_processor, faces):
    """Checks at steps 2, 4, 6: the first TPR is above max_tpr, the second equal to it (passes), the third never
    runs. Real attacks are run and recorded too, so the logged figures are the attack's."""
    model, processor = model_and_processor

    class Scripted(ForgetMonitorCallback):
        figures = [2 / 3, 1 / 3, 0.0]
        real: list[float] = []

        def measure(self, model, exact=True):
            self.real.append(super().measure(model, exact))
            return self.figures.pop(0)

    callback = Scripted(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=2, max_tpr=1 / 3,
                        stop_from=0)
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=8)
    train.train()
    assert train.state.global_step == 4 and callback.figures == [0.0]
    assert callback.forgotten_step == 4 and callback.forgotten_train_seconds > 0
    assert [(entry["step"], entry["tpr"], entry["exact"]) for entry in callback.history] == [
        (2, 2 / 3, True), (4, 1 / 3, True)]
    assert callback.real[-1] == idia_tpr(train.model, processor, faces)  # measure() is the attack at that step
    logged = [entry for entry in train.state.log_history if "forget_idia_tpr" in entry]
    assert logged == [{"step": entry["step"], "forget_idia_tpr": entry["tpr"],
                       "forget_check_seconds": entry["check_seconds"]} for entry in callback.history]


def test_no_stop_before_stop_from(model_and_processor, faces):
    """By default a pass before three quarters of the steps is recorded (``forgotten_step``) but training goes on:
    the first check from there that passes stops it, not one that fails."""
    model, processor = model_and_processor

    class Scripted(ForgetMonitorCallback):
        figures = [0.0, 0.0, 0.5, 0.0]  # checks at steps 2 and 4 (before 6 of 8) pass, 6 fails, 8 passes

        def measure(self, model, exact=True):
            return self.figures.pop(0)

    callback = Scripted(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=2, max_tpr=0.1)
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=8)
    train.train()
    assert [entry["step"] for entry in callback.history] == [2, 4, 6, 8] and train.state.global_step == 8
    assert callback.forgotten_step == 2

    callback = Scripted(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=2, max_tpr=0.1)
    callback.figures = [0.0, 0.5, 0.0, 0.0]  # step 6 passes: the run stops there
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=8)
    train.train()
    assert train.state.global_step == 6 and callback.figures == [0.0] and callback.forgotten_step == 2


@pytest.mark.parametrize(("tower", "stops_at_six"), [("text_model", True), ("vision_model", False)])
def test_the_default_stop_from_follows_the_tower_that_trains(model_and_processor, faces, tower, stops_at_six):
    """The default waits for three quarters of the steps while the text tower trains, for the last step while the
    image tower trains (its last steps still repair zero-shot accuracy)."""
    model, processor = model_and_processor
    model = copy.deepcopy(model).requires_grad_(False)
    getattr(model, tower).requires_grad_(True)

    class Passing(ForgetMonitorCallback):
        def measure(self, model, exact=True):
            return 0.0

    callback = Passing(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=2)
    begin(callback, model)
    for step, stops in ((4, False), (6, stops_at_six), (8, True)):
        state, control = TrainerState(global_step=step, max_steps=8), TrainerControl()
        callback.on_step_end(None, state, control, model=model)
        assert control.should_training_stop == stops
    assert callback.forgotten_step == 4


@pytest.mark.parametrize("stop_from", [-0.1, 1.5])
def test_stop_from_is_a_fraction(model_and_processor, faces, stop_from):
    with pytest.raises(ValueError, match="stop_from"):
        monitor(model_and_processor[1], faces, stop_from=stop_from)


def test_a_forgotten_run_goes_on_when_told_not_to_stop(model_and_processor, faces):
    model, processor = model_and_processor
    callback = monitor(processor, faces, every_n_steps=2, max_tpr=1.0, stop_training=False)
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=4)
    train.train()
    assert train.state.global_step == 4 and callback.forgotten_step == 2
    assert [entry["step"] for entry in callback.history] == [2, 4]


def test_checks_every_n_steps_and_after_the_last(model_and_processor, faces):
    model, processor = model_and_processor
    callback = monitor(processor, faces, every_n_steps=2, max_tpr=-1.0)  # never forgotten
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=5)
    train.train()
    assert train.state.global_step == 5
    assert [entry["step"] for entry in callback.history] == [2, 4, 5]
    assert callback.forgotten_step is None and callback.forgotten_train_seconds is None
    assert all(entry["exact"] and entry["screened_tpr"] is None for entry in callback.history)
    assert callback.history[-1]["tpr"] == callback.last_tpr == idia_tpr(train.model, processor, faces)
    clock = [entry["train_seconds"] for entry in callback.history]
    assert clock == sorted(clock) and callback.train_seconds >= clock[-1]
    recorded = repr(callback.history) + repr(train.state.log_history)  # counts and rates only, never a name
    assert not any(part in recorded for name in NAMES for part in name.split())


def test_screening_pass_is_confirmed_before_stopping(model_and_processor, faces):
    """A screening figure under the threshold triggers an exact attack; only the exact figure can stop training."""
    model, processor = model_and_processor

    class Scripted(ForgetMonitorCallback):
        verdicts = {False: [0.0, 0.0], True: [0.5, 0.0]}  # screening figures, exact figures

        def measure(self, model, exact=True):
            return self.verdicts[exact].pop(0)

    callback = Scripted(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=1, max_tpr=0.1,
                        reuse_kept_prompts=True, stop_from=0)
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=5)
    train.train()
    assert [(entry["step"], entry["screened_tpr"], entry["tpr"]) for entry in callback.history] == [
        (1, 0.0, 0.5), (2, 0.0, 0.0)]
    assert callback.forgotten_step == 2 and train.state.global_step == 2


def test_check_time_is_kept_off_the_training_clock(model_and_processor, faces):
    model, processor = model_and_processor

    calls = []

    class Slow(ForgetMonitorCallback):
        def measure(self, model, exact=True):
            calls.append(time.perf_counter())
            time.sleep(0.3)
            return 1.0

    callback = Slow(processor, faces, NAMES, POOL, templates=TEMPLATES, every_n_steps=1, max_tpr=0.1)
    train = trainer(copy.deepcopy(model), processor, callback, max_steps=3)
    start = time.perf_counter()
    train.train()
    wall = time.perf_counter() - start
    assert callback.check_seconds >= 3 * 0.3  # three checks
    assert callback.train_seconds <= wall - callback.check_seconds + 1e-6
    clock = [entry["train_seconds"] for entry in callback.history]
    for index in range(1, len(clock)):  # between two checks: training, and one check the clock must not count
        assert clock[index] - clock[index - 1] <= calls[index] - calls[index - 1] - 0.3 + 0.01


@pytest.mark.parametrize(
    ("names", "pool", "message"),
    [([], POOL, "empty"), (["Nobody Here"], POOL, "not in candidate_names"),
     (NAMES, POOL + ["Ada Lovelace"], "duplicates")],
)
def test_bad_input_is_an_error_by_index(model_and_processor, faces, names, pool, message):
    with pytest.raises(ValueError, match=message):
        ForgetMonitorCallback(model_and_processor[1], faces, names, pool)


def test_a_removed_person_without_pictures_is_an_error(model_and_processor, faces):
    with pytest.raises(ValueError, match="no face images") as error:
        ForgetMonitorCallback(model_and_processor[1], {NAMES[0]: faces[NAMES[0]]}, NAMES, POOL)
    assert "Zorbo" not in str(error.value)
