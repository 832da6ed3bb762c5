"""The training budget: steps resolved from the number of names, clamped, and exposed on the command line."""

from __future__ import annotations

import logging

import pytest
from transformers import HfArgumentParser

from clip_backdoor_unlearn import BackdoorTrainingArguments, VisionBackdoorTrainingArguments


def arguments(**fields) -> BackdoorTrainingArguments:
    return BackdoorTrainingArguments(output_dir="unused", report_to="none", **fields)


def steps_by_counting(num_names: int, per_name: int, per_step: int, low: int, high: int) -> int:
    """The fewest steps whose poisoned slots hold ``per_name`` samples for every name, counted step by step, then
    held within [low, high] (high wins)."""
    steps = 0
    while steps * per_step < num_names * per_name:
        steps += 1
    return min(high, max(low, steps))


@pytest.mark.parametrize("num_names", [1, 10, 100])
def test_per_name_steps_follow_the_number_of_names(num_names):
    args = arguments(budget="per_name", poisoned_samples_per_name=50, poisoned_samples_per_step=16, min_steps=3,
                     max_steps=1_000)
    expected = steps_by_counting(num_names, 50, 16, 3, 1_000)
    assert args.steps_for(num_names) == expected
    resolved = args.for_names(num_names)
    assert resolved.max_steps == expected and args.max_steps == 1_000  # a copy; the caller's arguments stay
    assert resolved.for_names(num_names).max_steps == expected  # resolving again changes nothing
    assert resolved.milestone_steps == sorted({max(1, round(f * expected)) for f in resolved.lr_milestones})


def test_min_steps_and_max_steps_clamp_the_per_name_budget(caplog):
    args = arguments(budget="per_name", poisoned_samples_per_name=8, poisoned_samples_per_step=8, min_steps=20,
                     max_steps=50)
    assert args.steps_for(1) == 20 and args.steps_for(20) == 20  # under min_steps: min_steps
    assert args.steps_for(21) == 21 and args.steps_for(50) == 50
    with caplog.at_level(logging.WARNING):
        assert args.steps_for(51) == 50 and args.steps_for(10_000) == 50  # max_steps is the upper bound
    assert "caps it" in caplog.text
    below = arguments(budget="per_name", min_steps=500, max_steps=200)  # max_steps wins over min_steps too
    assert below.steps_for(1) == 200 and below.for_names(1).max_steps == 200


def test_fixed_budget_is_max_steps_whatever_the_names():
    for args in (arguments(), arguments(max_steps=7, min_steps=100, poisoned_samples_per_name=10_000)):
        assert args.budget == "fixed"
        assert {args.steps_for(count) for count in (1, 64, 1_000)} == {args.max_steps}
        assert args.for_names(1_000) is args


def test_defaults_keep_the_paper_s_budget_and_per_name_never_shortens_it():
    text, vision = arguments(), VisionBackdoorTrainingArguments(output_dir="unused", report_to="none")
    assert (text.budget, text.max_steps, vision.budget, vision.max_steps) == ("fixed", 400, "fixed", 100)
    for args in (text, vision):
        per_name = type(args)(output_dir="unused", report_to="none", budget="per_name")
        for count in (1, 8, 64):  # up to the paper's largest list: exactly the fixed budget
            assert per_name.steps_for(count) == args.max_steps
        uncapped = type(args)(output_dir="unused", report_to="none", budget="per_name", max_steps=100_000)
        assert uncapped.steps_for(65) > args.max_steps  # past 64 names the run grows with the list
        assert uncapped.steps_for(1_000) == steps_by_counting(1_000, uncapped.poisoned_samples_per_name,
                                                              uncapped.poisoned_samples_per_step,
                                                              uncapped.min_steps, 100_000)


def test_budget_fields_are_command_line_flags():
    parser = HfArgumentParser(BackdoorTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--budget", "per_name", "--poisoned_samples_per_name", "30", "--min_steps", "5",
         "--max_steps", "900"])
    assert (args.budget, args.poisoned_samples_per_name, args.min_steps, args.max_steps) == ("per_name", 30, 5, 900)
    with pytest.raises(SystemExit):  # a Literal: argparse refuses other choices
        parser.parse_args_into_dataclasses(["--output_dir", "x", "--budget", "auto"])


@pytest.mark.parametrize(("fields", "message"), [({"budget": "auto"}, "budget"),
                                                  ({"poisoned_samples_per_name": 0}, "poisoned_samples_per_name"),
                                                  ({"min_steps": 0}, "min_steps")])
def test_bad_budget_settings_are_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        arguments(**fields)
