"""The training budget: steps resolved from the number of names, and exposed on the command line."""

from __future__ import annotations

import logging

import pytest
from transformers import HfArgumentParser

from clip_backdoor_unlearn import BackdoorTrainingArguments, VisionBackdoorTrainingArguments


def arguments(**fields) -> BackdoorTrainingArguments:
    return BackdoorTrainingArguments(output_dir="unused", report_to="none", **fields)


def steps_by_counting(num_names: int, per_name: int, per_step: int, floor: int) -> int:
    """The fewest steps whose poisoned slots hold ``per_name`` samples for every name, counted step by step, and
    never fewer than ``floor``."""
    steps = 0
    while steps * per_step < num_names * per_name:
        steps += 1
    return max(floor, steps)


@pytest.mark.parametrize("num_names", [1, 10, 100])
def test_per_name_steps_follow_the_number_of_names(num_names):
    args = arguments(budget="per_name", poisoned_samples_per_name=50, poisoned_samples_per_step=16, max_steps=3)
    expected = steps_by_counting(num_names, 50, 16, 3)
    assert args.steps_for(num_names) == expected
    resolved = args.for_names(num_names)
    assert resolved.max_steps == expected and args.max_steps == 3  # a copy; the caller's arguments stay
    assert resolved.for_names(num_names).max_steps == expected  # resolving again changes nothing
    assert resolved.milestone_steps == sorted({max(1, round(f * expected)) for f in resolved.lr_milestones})


def test_max_steps_is_a_short_list_s_budget_and_a_long_list_gets_more(caplog):
    args = arguments(budget="per_name", poisoned_samples_per_name=8, poisoned_samples_per_step=8, max_steps=20)
    assert args.steps_for(1) == 20 and args.steps_for(20) == 20  # each name already gets its share
    with caplog.at_level(logging.WARNING):
        assert args.steps_for(21) == 21 and args.steps_for(10_000) == 10_000
    assert "max_steps=20 is raised" in caplog.text and "budget='fixed' keeps it" in caplog.text


def test_fixed_budget_is_max_steps_whatever_the_names():
    for args in (arguments(budget="fixed"), arguments(budget="fixed", max_steps=7, poisoned_samples_per_name=10_000),
                 VisionBackdoorTrainingArguments(output_dir="unused", report_to="none")):
        assert args.budget == "fixed"
        assert {args.steps_for(count) for count in (1, 64, 1_000, 100_000)} == {args.max_steps}
        assert args.for_names(100_000) is args


def test_defaults_keep_the_paper_s_budget_up_to_2048_names_then_each_name_keeps_its_measured_share():
    text, vision = arguments(), VisionBackdoorTrainingArguments(output_dir="unused", report_to="none")
    assert (text.budget, text.max_steps, text.poisoned_samples_per_name) == ("per_name", 400, 25)
    assert (vision.budget, vision.max_steps) == ("fixed", 100)  # many faces: not measured yet
    for count in (1, 64, 1_000, 2_048):  # 400 × 128 poisoned samples hold 25 for each of 2,048 names
        assert text.steps_for(count) == 400
    assert text.steps_for(2_049) == 401
    assert text.steps_for(10_000) == steps_by_counting(10_000, 25, 128, 400) == 1_954


def test_budget_fields_are_command_line_flags():
    parser = HfArgumentParser(BackdoorTrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(
        ["--output_dir", "x", "--budget", "fixed", "--poisoned_samples_per_name", "30", "--max_steps", "900"])
    assert (args.budget, args.poisoned_samples_per_name, args.max_steps) == ("fixed", 30, 900)
    with pytest.raises(SystemExit):  # a Literal: argparse refuses other choices
        parser.parse_args_into_dataclasses(["--output_dir", "x", "--budget", "auto"])


@pytest.mark.parametrize(("fields", "message"), [({"budget": "auto"}, "budget"),
                                                  ({"poisoned_samples_per_name": 0}, "poisoned_samples_per_name")])
def test_bad_budget_settings_are_errors(fields, message):
    with pytest.raises(ValueError, match=message):
        arguments(**fields)
