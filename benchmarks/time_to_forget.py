"""Time to forget: training seconds and steps until the removed people's IDIA TPR is at most 0.1 (text tower).

    python benchmarks/time_to_forget.py                          # full demo world (seed 42), 1 4 16 64 removed
    python benchmarks/time_to_forget.py --size ci --world_seed 0 --removed 1 4
    python benchmarks/time_to_forget.py --size large --world_seed 0 --removed 1000 --against_paper --set ...

For each count k, removes the first k detected members of the demo world with the whole tower's settings by default
(200 steps, lr 1e-3, 64 poisoned + 64 clean captions a step, the world's unlearning captions minus every 7th,
every other candidate kept) and a ``ForgetMonitorCallback``: every ``--every_n_steps`` steps it attacks the removed
people's fresh ``eval`` pictures with the 21 IDIA prompts against the whole candidate pool and stops training at the
first check whose TPR is at most ``--max_tpr``. The face pictures are embedded once (the image tower does not
train); every check embeds all candidates' prompts again, so it is the IDIA's exact figure for the model at that
step. ``--screen`` re-embeds only the removed names' prompts and reuses the others' until a check passes (then
confirms with the whole pool): cheaper, but it measured later stops (see ``ForgetMonitorCallback``). Seconds are
wall seconds of training with the checks' time taken off the clock; steps and seconds have the resolution of the
check interval. The learning-rate schedule is the 200-step one (halved at
steps 100 and 150) whether or not training stops earlier.

``--against_paper`` first runs the paper's recipe (400 steps, lr 1e-4, 128 poisoned + 128 clean captions, "a
person") end to end for each count and attacks once after it; this run then stops at the first check whose TPR is at
most the paper's, and the ratio of the paper's ``unlearn()`` seconds to this run's end-to-end seconds (the whole
call up to that check, the monitor's attacks taken off) is printed.
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import platform
import tempfile
import time
import warnings

import torch
import transformers
from machine import cpu_model

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.variants import VariantConflictWarning
from clip_backdoor_unlearn.demo.recipe import load_demo_clip
from clip_backdoor_unlearn.demo.world import WORLD_SIZES
from clip_backdoor_unlearn.evaluation import identity_inference_attack
from clip_backdoor_unlearn.evaluation.idia import images_by_person
from clip_backdoor_unlearn.training.callbacks import ForgetMonitorCallback

# The benchmarks' default text settings: the whole tower, the README's main job until the twenty-ninth session. The
# main job now trains the names' own rows (``DEMO_TEXT_SETTINGS``): ``--learning_rate 1e-2 --set
# trainable_parameters=name_tokens``.
MAIN_JOB_SETTINGS = {"max_steps": 200, "learning_rate": 1e-3, "poisoned_samples_per_step": 64,
                     "clean_samples_per_step": 64}


# Shared with benchmarks/scaling.py ----------------------------------------------------------------------------

def machine_line(load_before: tuple[float, ...], load_after: tuple[float, ...] | None = None) -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    line = (f"machine: {cpu_model()}, {os.cpu_count()} cores ({cores} usable), {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__}, transformers {transformers.__version__}, Python "
            f"{platform.python_version()}; load average (1/5/15 min) before "
            f"{'/'.join(f'{x:.2f}' for x in load_before)}")
    if load_after is not None:
        line += f", after {'/'.join(f'{x:.2f}' for x in load_after)}"
    return line


def add_common_arguments(parser: argparse.ArgumentParser, removed: list[int]) -> None:
    parser.add_argument("--size", default="full", choices=sorted(WORLD_SIZES), help="demo world size (default full)")
    parser.add_argument("--world_seed", type=int, default=42,
                        help="seed of the demo world and its cached CLIP (default 42: the full world's cached model)")
    parser.add_argument("--removed", type=int, nargs="+", default=removed, help="numbers of people to remove")
    parser.add_argument("--seed", type=int, default=42, help="training seed (backdoor data order and shuffling)")
    parser.add_argument("--max_steps", type=int, default=MAIN_JOB_SETTINGS["max_steps"])
    parser.add_argument("--learning_rate", type=float, default=MAIN_JOB_SETTINGS["learning_rate"])
    parser.add_argument("--samples_per_step", type=int, default=MAIN_JOB_SETTINGS["poisoned_samples_per_step"],
                        help="poisoned and clean captions per step (each)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="more unlearn() settings, e.g. pseudonyms=True budget=per_name early_stop_patience=3")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--json", help="also write the settings, machine and rows to this JSON file")


def _value(text: str):
    """A ``--set`` value as Python reads it (numbers, booleans, None, lists), else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def text_settings(options: argparse.Namespace) -> dict:
    settings = {"max_steps": options.max_steps, "learning_rate": options.learning_rate,
                "poisoned_samples_per_step": options.samples_per_step,
                "clean_samples_per_step": options.samples_per_step, "seed": options.seed}
    return {**settings, **{key: _value(value) for key, value in (item.split("=", 1) for item in options.set)}}


def prepare(options: argparse.Namespace) -> dict:
    """The demo CLIP, its world, the attack before unlearning, and the inputs every run shares."""
    if options.threads:
        torch.set_num_threads(options.threads)
    torch.manual_seed(options.seed)
    start = time.perf_counter()
    model, processor, world = load_demo_clip(options.size, options.world_seed, progress=False)
    faces = world.faces()["eval"]  # fresh pictures: neither the demo CLIP's training nor the unlearning saw them
    before = identity_inference_attack(model, processor, faces, world.candidate_names)
    captions = world.unlearning_captions()
    detected = [name for name in world.member_names if before.detected[name]]
    print(f"{options.size} demo world (seed {options.world_seed}) ready in {time.perf_counter() - start:.0f}s: "
          f"{len(world.member_names)} members ({len(detected)} detected before), {len(world.non_member_names)} "
          f"non-members, {len(world.candidate_names)} candidate names; {len(captions)} unlearning captions, every "
          "7th held out", flush=True)
    return {"model": model, "processor": processor, "world": world, "faces": faces, "before": before,
            "detected": detected, "train_captions": [caption for index, caption in enumerate(captions) if index % 7],
            "held_out_captions": captions[::7]}


def text_inputs(setup: dict, removed: list[str]) -> dict:
    """``unlearn`` inputs as examples/unlearn.py gives them: the caption split and everyone else kept."""
    removed_set = set(removed)
    kept = [name for name in setup["world"].candidate_names if name not in removed_set]
    return {"captions": setup["train_captions"], "kept_names": kept}


def cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


# This benchmark ------------------------------------------------------------------------------------------------

# The paper's text recipe: 400 steps whatever the number of names, lr 1e-4, 128 poisoned + 128 clean captions, every
# name mapped to "a person" (the library's defaults map more than 10 names to pseudonyms; the paper does not), and
# every step trained (the library's default face-free stop is off).
PAPER_RECIPE = {"max_steps": 400, "budget": "fixed", "learning_rate": 1e-4, "poisoned_samples_per_step": 128,
                "clean_samples_per_step": 128, "pseudonyms": False, "early_stop_retrieved": None}


def paper_run(setup: dict, count: int, seed: int) -> dict:
    """The paper's recipe end to end, no monitor: ``unlearn()`` seconds and the attack's TPR after it."""
    removed = setup["detected"][:count]
    unlearner = BackdoorUnlearner(copy.deepcopy(setup["model"]), setup["processor"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="time-to-forget-") as output_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantConflictWarning)
        result = unlearner.unlearn(removed, output_dir=output_dir, disable_tqdm=True, logging_strategy="no",
                                   seed=seed, **text_inputs(setup, removed), **PAPER_RECIPE)
    seconds = time.perf_counter() - start
    after = identity_inference_attack(unlearner.model, setup["processor"],
                                      {name: setup["people"][name] for name in removed},
                                      setup["world"].candidate_names)
    return {"removed": count, "unlearn_s": round(seconds, 1), "train_s": round(result.train_seconds, 1),
            "tpr": after.tpr(removed)}

COLUMNS = ("removed", "forgotten", "steps", "train s", "s/step", "TPR at stop", "checks (exact)", "check s",
           "unlearn() s", "end to end s")


def time_to_forget(setup: dict, count: int, settings: dict, options: argparse.Namespace,
                   max_tpr: float | None = None) -> dict:
    removed = setup["detected"][:count]
    people = setup["people"]
    monitor = ForgetMonitorCallback(
        setup["processor"], {name: people[name] for name in removed}, removed, setup["world"].candidate_names,
        every_n_steps=options.every_n_steps, max_tpr=options.max_tpr if max_tpr is None else max_tpr,
        reuse_kept_prompts=options.screen, stop_from=0,  # the first check that passes: the time to forget
    )
    unlearner = BackdoorUnlearner(copy.deepcopy(setup["model"]), setup["processor"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="time-to-forget-") as output_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantConflictWarning)  # expected: kept names share name parts
        result = unlearner.unlearn(removed, callbacks=[monitor], output_dir=output_dir, disable_tqdm=True,
                                        logging_strategy="no", **text_inputs(setup, removed),
                                        **{"early_stop_retrieved": None, **settings})  # the attack stops it
    wall = time.perf_counter() - start
    forgotten = monitor.forgotten_step is not None
    steps = monitor.forgotten_step if forgotten else monitor.history[-1]["step"]
    train_seconds = monitor.forgotten_train_seconds if forgotten else monitor.history[-1]["train_seconds"]
    return {
        "removed": len(removed), "forgotten": "yes" if forgotten else f"no (within {settings['max_steps']})",
        "steps": steps, "train s": round(train_seconds, 2), "s/step": round(train_seconds / max(1, steps), 3),
        "TPR at stop": monitor.last_tpr,
        "checks (exact)": f"{len(monitor.history)} ({sum(entry['exact'] for entry in monitor.history)})",
        "check s": round(monitor.check_seconds, 1), "unlearn() s": round(result.train_seconds, 1),
        # The whole call (data set, teacher, training, saving nothing) without the monitor's attacks: what a user
        # waits for when the run stops at that step.
        "end to end s": round(wall - monitor.check_seconds, 1),
        "history": monitor.history,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, removed=[1, 4, 16, 64])
    parser.add_argument("--every_n_steps", type=int, default=10, help="check every N optimisation steps")
    parser.add_argument("--max_tpr", type=float, default=0.1, help="forgotten once the removed people's TPR <= this")
    parser.add_argument("--against_paper", action="store_true",
                        help="first run the paper's recipe (400 steps, lr 1e-4, 128 + 128) end to end for each count, "
                             "then stop this run once its TPR is at most the paper's, and print the time ratio")
    parser.add_argument("--screen", action="store_true",
                        help="screen with the removed names' prompts only, reusing the other candidates' embeddings, "
                             "and confirm with the whole pool (default: the whole pool at every check)")
    options = parser.parse_args()

    load_before = os.getloadavg()
    settings = text_settings(options)
    setup = prepare(options)
    setup["people"] = images_by_person(setup["faces"])
    print(f"settings: {settings}, name_variants auto, kept_names = every other candidate; check every "
          f"{options.every_n_steps} steps, stop at TPR <= {options.max_tpr}, "
          f"{'screening checks confirmed by an exact one' if options.screen else 'exact checks (whole pool)'}")
    print(machine_line(load_before), flush=True)
    rows = []
    for count in options.removed:
        if count > len(setup["detected"]):
            print(f"{count} removed: skipped, the world has only {len(setup['detected'])} detected members")
            continue
        paper = paper_run(setup, count, options.seed) if options.against_paper else None
        if paper:
            print(f"{count} removed, the paper's recipe: unlearn() {paper['unlearn_s']} s (training "
                  f"{paper['train_s']} s), TPR {paper['tpr']:.3f}", flush=True)
        rows.append(time_to_forget(setup, count, settings, options, max_tpr=paper["tpr"] if paper else None))
        if paper:
            rows[-1]["paper"] = paper
            rows[-1]["ratio"] = round(paper["unlearn_s"] / rows[-1]["end to end s"], 1)
        print(f"{count} removed: " + ", ".join(f"{column} {cell(rows[-1][column])}" for column in COLUMNS[1:]),
              flush=True)
    load_after = os.getloadavg()

    print("\n" + " | ".join(COLUMNS))
    print(" | ".join("---" for _ in COLUMNS))
    for row in rows:
        print(" | ".join(cell(row[column]) for column in COLUMNS))
    if options.against_paper:
        print("\nremoved | paper: unlearn() s | paper: TPR | this run: end to end s to reach it | steps | ratio")
        print("--- | --- | --- | --- | --- | ---")
        for row in rows:
            reached = row["forgotten"] == "yes"
            print(f"{row['removed']} | {row['paper']['unlearn_s']} | {row['paper']['tpr']:.3f} | "
                  f"{row['end to end s'] if reached else 'not reached'} | {row['steps']} | "
                  f"{row['ratio'] if reached else '-'}")
    print("\nTPR of the removed people at each check (step:TPR):")
    for row in rows:
        trajectory = " ".join(f"{entry['step']}:{entry['tpr']:.2f}" for entry in row["history"])
        print(f"{row['removed']:>4} removed: {trajectory}")
    print("\n" + machine_line(load_before, load_after))
    print("train s: wall seconds of training until the check that passed, the checks' own time excluded; "
          "unlearn() s: the whole training call, checks included.")
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": settings, "size": options.size, "world_seed": options.world_seed,
                       "every_n_steps": options.every_n_steps, "max_tpr": options.max_tpr, "screen": options.screen,
                       "machine": machine_line(load_before, load_after), "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
