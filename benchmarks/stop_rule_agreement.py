"""Does the face-free stop rule agree with the attack? Where each rule would stop, and what the attack, the other
members and zero-shot accuracy say there.

    python benchmarks/stop_rule_agreement.py                     # full demo world (seed 0), 1 4 10 32, seeds 42 7
    python benchmarks/stop_rule_agreement.py --world_seed 1      # a second world, to report on what was tuned on 0
    python benchmarks/stop_rule_agreement.py --size ci --removed 1 4 --seed 42 --json /tmp/agreement-ci.json
    python benchmarks/stop_rule_agreement.py --rescore /tmp/agreement-ci.json --thresholds 0.8 0.85 --max_tpr 0
    python benchmarks/stop_rule_agreement.py --size large --removed 10 100 1000 --seed 42 --every_n_steps 20 \
        --learning_rate 1e-2 --samples_per_step 128 --set trainable_parameters=token_embedding  # many names

For each count k of removed people (the first k detected members) and each training seed, runs ONE text-tower
training with the benchmarks' default settings (the whole tower, 200 steps, lr 1e-3, 64 poisoned + 64 clean
captions a step, the world's unlearning captions minus every 7th, every other candidate kept; the README's main job,
``DEMO_TEXT_SETTINGS``, is ``--learning_rate 1e-2 --set trainable_parameters=name_tokens``) with both monitors
recording every ``--every_n_steps`` steps and neither stopping:

* the face-free rule (``NeutralTargetStopCallback``, wired by ``unlearn(early_stop_similarity=...)`` with an
  unreachable threshold, 2.0): the lowest name score, each name's worst held-out wording against the teacher's
  embedding of the same wording with "a person" (``forget_proxy_min_similarity`` in the log history), and, from the
  same pass, the text-only attack (``early_stop_retrieved`` set to record only): the share of removed names still
  found and of a sample of the kept names still found (``forget_proxy_retrieved``, ``forget_proxy_kept_retrieved``);
  the held-out clean captions' mean similarity to the teacher (``forget_proxy_clean_similarity``, the gate of the
  default rule; unlearn holds 256 of the training captions out for it);
* what a stop there would leave (``OutcomeMonitor``): the identity inference attack on every detected member's fresh
  ``eval`` pictures with the 21 IDIA prompts against the whole candidate pool re-embedded (the removed people's
  exact TPR and how many other members are still found), and zero-shot accuracy on the world's held-out set. The
  image tower does not train, so the pictures are embedded once.

From the series, for each rule: the step it would stop at (the first check, after training began, that passes; the
check before the first step never stops), the figures there, the first check whose TPR is at most ``--max_tpr``, and
the outcome: *agrees*, *too early* (at the stop the attack finds more than ``--max_tpr`` of the removed people, or the
other members found are more than 1 % (at least one person) below where the whole run leaves them, or zero-shot
accuracy is more than ``--max_zero_shot_drop`` below both its value before and at the end of the run) or *never*
(the rule does not pass within the steps). Steps saved are ``max_steps`` minus the stop step (0 for *never*). A
stopped run would have had the same weights at its stop step as this one (the rule only reads the model), so one
full run gives every threshold's outcome; ``--rescore`` scores other thresholds (or another ``--max_tpr``) on a
recorded ``--json`` without training. The retrieval rules (``--retrieved``, ``--min_kept``) are scored the same way:
the first check whose share of removed names found is at most the share while at least ``--min_kept`` of the kept
sample is still found; then again with the clean captions at least ``--min_clean`` from the teacher too and no
check before ``--early_stop_from`` of the steps (the library's default rule is ``--retrieved 0 --min_kept 0.95
--min_clean 0.99 --early_stop_from 0.75``). The runs themselves record from the first step (``early_stop_from=0``).
"stays ≤ from" is the first check after which the TPR never goes above ``--max_tpr`` again (it is not monotonic).
The learning-rate schedule is the 200-step one throughout.

Seconds: the whole ``unlearn`` call (both monitors' checks included), and each monitor's checks alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import tempfile
import time
import warnings

import torch
import torch.nn.functional as F
from time_to_forget import add_common_arguments, cell, machine_line, prepare, text_inputs, text_settings

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.variants import VariantConflictWarning
from clip_backdoor_unlearn.evaluation.idia import (
    embed_people,
    embed_prompts,
    evaluation_mode,
    images_by_person,
    person_verdict,
    predict_candidates,
)
from clip_backdoor_unlearn.evaluation.templates import IDIA_TEMPLATES
from clip_backdoor_unlearn.evaluation.zero_shot import zero_shot_classifier
from clip_backdoor_unlearn.training.callbacks import CheckClock
from clip_backdoor_unlearn.training.embeddings import encode_images, processor_parts

THRESHOLDS = (0.90, 0.93, 0.95, 0.97, 0.99)
UNREACHABLE = 2.0  # a cosine similarity never reaches it: the face-free rule records and never stops
RECORD_ONLY = -1.0  # no share of names is below it: the text-only attack is recorded and never stops
RETRIEVED_SHARES = (0.0, 0.02, 0.05, 0.1)
OUTCOMES = ("agrees", "too early", "never")
COLUMNS = ("removed", "seed", "stops at", "score there", "TPR there", "others lost there", "zero-shot Δ there",
           "attack ≤ max TPR at", "stays ≤ from", "TPR at end", "others lost at end", "zero-shot Δ at end", "outcome",
           "steps saved")


class OutcomeMonitor(CheckClock):
    """What stopping at a check would leave: the removed people's exact IDIA TPR, the other detected members still
    found (one attack over every detected member's pictures and the whole pool), and zero-shot accuracy. For a
    text-tower run: the pictures are embedded once, every check re-embeds the prompts and the class texts."""

    def __init__(self, setup: dict, removed: list[str], every_n_steps: int):
        self.setup, self.removed, self.every_n_steps = setup, set(removed), every_n_steps
        self.tokenizer, self.image_processor = processor_parts(setup["processor"])
        self._reset_clock()

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        start = time.perf_counter()
        world, people = self.setup["world"], self.setup["people"]
        self.members = {name: people[name] for name in self.setup["detected"]}
        zero_shot = world.zero_shot()
        with evaluation_mode(model):
            self.pictures = torch.cat(embed_people(model, self.image_processor, self.members))
            self.zero_shot_pictures = F.normalize(encode_images(model, self.image_processor,
                                                                list(zero_shot["image"])), dim=-1)
        self.zero_shot_labels = torch.tensor(zero_shot["label"])
        self.check_seconds += time.perf_counter() - start
        self._check(model, state.global_step)

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self._due(state):  # the stop rule's schedule: every every_n_steps steps and after the last
            self._check(model, state.global_step)

    @torch.no_grad()
    def _check(self, model, step: int) -> None:
        start = time.perf_counter()
        world = self.setup["world"]
        candidates = world.candidate_names
        index = {name: position for position, name in enumerate(candidates)}
        with evaluation_mode(model):
            prompts = embed_prompts(model, self.tokenizer, candidates, IDIA_TEMPLATES)
            classes = zero_shot_classifier(model, self.tokenizer, world.zero_shot_class_names,
                                           world.zero_shot_templates)
        predictions = predict_candidates(self.pictures, prompts).split([len(x) for x in self.members.values()])
        found = {name: person_verdict(votes, index[name], len(candidates), 1)[2]
                 for name, votes in zip(self.members, predictions, strict=True)}
        kept = [name for name in self.members if name not in self.removed]
        correct = (self.zero_shot_pictures @ classes.T).argmax(dim=-1) == self.zero_shot_labels
        self.history.append({"step": step, "tpr": sum(found[name] for name in self.removed) / len(self.removed),
                             "others_found": sum(found[name] for name in kept),
                             "zero_shot": correct.float().mean().item()})
        self.check_seconds += time.perf_counter() - start


def run(setup: dict, count: int, settings: dict, options: argparse.Namespace) -> dict:
    """One training with both monitors recording; the series, step by step."""
    removed = setup["detected"][:count]
    attack = OutcomeMonitor(setup, removed, options.every_n_steps)
    unlearner = BackdoorUnlearner(copy.deepcopy(setup["model"]), setup["processor"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="stop-rule-agreement-") as output_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantConflictWarning)  # expected: kept names share name parts
        result = unlearner.unlearn(removed, callbacks=[attack], output_dir=output_dir, disable_tqdm=True,
                                   logging_strategy="no", early_stop_similarity=UNREACHABLE,
                                   early_stop_retrieved=RECORD_ONLY, early_stop_from=0.0,
                                   early_stop_every_n_steps=options.every_n_steps, **text_inputs(setup, removed),
                                   **settings)
    seconds = time.perf_counter() - start
    proxy = [entry for entry in result.log_history if "forget_proxy_min_similarity" in entry]
    similarity = {entry["step"]: entry["forget_proxy_min_similarity"] for entry in proxy if entry["step"] > 0}
    retrieved = {entry["step"]: entry["forget_proxy_retrieved"] for entry in proxy if entry["step"] > 0}
    kept = {entry["step"]: entry.get("forget_proxy_kept_retrieved") for entry in proxy if entry["step"] > 0}
    clean = {entry["step"]: entry.get("forget_proxy_clean_similarity") for entry in proxy if entry["step"] > 0}
    outcomes = {entry["step"]: entry for entry in attack.history}
    if sorted(similarity) != sorted(step for step in outcomes if step > 0):
        raise RuntimeError(f"The monitors checked at different steps: {sorted(similarity)} and {sorted(outcomes)}.")
    before = outcomes[0]
    return {
        "removed": count, "seed": settings["seed"], "max_steps": max(outcomes),
        "others_before": before["others_found"], "zero_shot_before": before["zero_shot"],
        "series": [{**outcomes[step], "min_similarity": similarity[step], "retrieved": retrieved[step],
                    "kept_retrieved": kept[step], "clean_similarity": clean[step]} for step in sorted(similarity)],
        "similarity_before": next(entry["forget_proxy_min_similarity"] for entry in proxy if entry["step"] == 0),
        "unlearn_seconds": seconds, "attack_check_seconds": attack.check_seconds,
        "proxy_check_seconds": sum(entry["forget_proxy_check_seconds"] for entry in proxy),
    }


def too_early(row: dict, check: dict, max_tpr: float, max_zero_shot_drop: float) -> bool:
    """Whether stopping at ``check`` leaves what the whole run does not: removed people found, other members lost
    (more than 1 %, at least one person) or zero-shot accuracy down (below its value before and at the end)."""
    if check["tpr"] > max_tpr:
        return True
    end = row["series"][-1]
    if "others_found" not in check:  # recorded before the benchmark measured the other sides
        return False
    if check["others_found"] < end["others_found"] - max(1, 0.01 * row["others_before"]):
        return True
    return check["zero_shot"] < min(row["zero_shot_before"], end["zero_shot"]) - max_zero_shot_drop


def outcome(row: dict, threshold: float, max_tpr: float, measure: str = "min_similarity",
            min_kept: float = 0.0, min_clean: float | None = None, max_zero_shot_drop: float = 0.01,
            start: float = 0.0) -> dict:
    """Where the rule at ``threshold`` would have stopped this run, and what the attack said there.

    ``measure="min_similarity"``: the lowest name score reaches ``threshold`` (``early_stop_similarity``);
    ``"retrieved"``: the text-only attack's share of names found falls to ``threshold`` (``early_stop_retrieved``)
    while at least ``min_kept`` of the sampled kept names are still found (``early_stop_kept``). With ``min_clean``
    every rule also needs the clean captions at least that close to the teacher (``early_stop_clean_similarity``).
    No check before ``start`` of the run's steps passes (``early_stop_from``).
    """
    series = row["series"]

    def gates_hold(check: dict) -> bool:
        if check["step"] < math.ceil(start * row["max_steps"]):
            return False
        kept = measure != "retrieved" or check.get("kept_retrieved") is None or check["kept_retrieved"] >= min_kept
        clean = min_clean is None or (check.get("clean_similarity") or -1.0) >= min_clean
        return kept and clean

    passes = ((lambda check: check["retrieved"] <= threshold and gates_hold(check)) if measure == "retrieved"
              else (lambda check: check["min_similarity"] >= threshold and gates_hold(check)))
    stop = next((check for check in series if passes(check)), None)
    forgotten = next((check["step"] for check in series if check["tpr"] <= max_tpr), None)
    # The first check from which every later one is at most max_tpr too (the attack's TPR is not monotonic).
    stays = next((check["step"] for index, check in enumerate(series)
                  if all(later["tpr"] <= max_tpr for later in series[index:])), None)
    if stop is None:
        verdict = "never"
    else:
        verdict = "too early" if too_early(row, stop, max_tpr, max_zero_shot_drop) else "agrees"
    end = series[-1]

    def lost(check: dict | None) -> int | None:
        return None if check is None or "others_found" not in check else row["others_before"] - check["others_found"]

    def zero_shot(check: dict | None) -> float | None:
        if check is None or "zero_shot" not in check:
            return None
        return 100 * (check["zero_shot"] - row["zero_shot_before"])

    return {
        "removed": row["removed"], "seed": row["seed"],
        "stops at": None if stop is None else stop["step"],
        "score there": None if stop is None else stop[measure],
        "TPR there": None if stop is None else stop["tpr"],
        "others lost there": lost(stop), "zero-shot Δ there": zero_shot(stop),
        "attack ≤ max TPR at": forgotten, "stays ≤ from": stays, "TPR at end": end["tpr"],
        "others lost at end": lost(end), "zero-shot Δ at end": zero_shot(end), "outcome": verdict,
        "steps saved": 0 if stop is None else row["max_steps"] - stop["step"],
    }


def plateau_stop(series: list[dict], patience: int, min_delta: float) -> dict | None:
    """The check where ``early_stop_patience`` would stop: ``patience`` checks in a row without the lowest score
    rising more than ``min_delta`` over its best (``NeutralTargetStopCallback``'s rule, replayed on the series)."""
    best, stale = float("-inf"), 0
    for check in series:
        if check["min_similarity"] > best + min_delta:
            best, stale = check["min_similarity"], 0
        else:
            stale += 1
        if stale >= patience:
            return check
    return None


def plateau_report(rows: list[dict], patiences: list[int], min_deltas: list[float], slack: float) -> list[dict]:
    """Where the plateau rule stops each run, and whether stopping there cost TPR against running every step.

    A plateau claims no more than "more steps no longer move the names": it is *too early* when the attack's TPR at
    the stop is more than ``slack`` above its TPR at the end of the run, and *agrees* otherwise.
    """
    results = []
    print(f"\nPlateau rule (too early: TPR at the stop > TPR at the end + {slack:g})\n")
    print("patience | min_delta | agrees | too early | never | mean steps saved | worst TPR excess | stops (step: TPR "
          "there / at end)")
    print("--- | --- | --- | --- | --- | --- | --- | ---")
    for patience in patiences:
        for min_delta in min_deltas:
            stops, counts, saved, worst = [], dict.fromkeys(OUTCOMES, 0), 0, 0.0
            for row in rows:
                series, end = row["series"], row["series"][-1]["tpr"]
                stop = plateau_stop(series, patience, min_delta)
                if stop is None:
                    counts["never"] += 1
                    stops.append("never")
                    continue
                excess = stop["tpr"] - end
                counts["too early" if excess > slack else "agrees"] += 1
                saved += row["max_steps"] - stop["step"]
                worst = max(worst, excess)
                stops.append(f"{stop['step']}: {stop['tpr']:.2f}/{end:.2f}")
            results.append({"patience": patience, "min_delta": min_delta, **counts,
                            "mean steps saved": saved / max(1, len(rows)), "worst excess": worst, "stops": stops})
            print(f"{patience} | {min_delta:g} | {counts['agrees']} | {counts['too early']} | {counts['never']} | "
                  f"{saved / max(1, len(rows)):.1f} | {worst:.3f} | {'; '.join(stops)}")
    return results


def summary(outcomes: list[dict]) -> str:
    counts = {name: sum(entry["outcome"] == name for entry in outcomes) for name in OUTCOMES}
    saved = sum(entry["steps saved"] for entry in outcomes) / max(1, len(outcomes))
    return (f"{counts['agrees']} of {len(outcomes)} agree, {counts['too early']} too early, {counts['never']} never; "
            f"mean steps saved {saved:.1f}")


def report(rows: list[dict], thresholds: list[float], max_tpr: float, measure: str = "min_similarity",
           seconds: bool = True, min_kept: float = 0.0, min_clean: float | None = None,
           max_zero_shot_drop: float = 0.01, start: float = 0.0) -> dict:
    """Print a table per threshold, the summary and the seconds; return each threshold's outcomes."""
    results = {}
    label = "Share still retrieved" if measure == "retrieved" else "Threshold"
    if min_clean is not None:
        label += f" (clean captions ≥ {min_clean:g}, from {start:g} of the steps)"
    for threshold in thresholds:
        outcomes = [outcome(row, threshold, max_tpr, measure, min_kept, min_clean, max_zero_shot_drop, start)
                    for row in rows]
        results[threshold] = outcomes
        print(f"\n### {label} {threshold:g}: {summary(outcomes)}\n")
        print(" | ".join(COLUMNS))
        print(" | ".join("---" for _ in COLUMNS))
        for entry in outcomes:
            print(" | ".join(cell(entry[column]) for column in COLUMNS))

    print(f"\n{label.lower()} | agrees | too early | never | mean steps saved")
    print("--- | --- | --- | --- | ---")
    for threshold, outcomes in results.items():
        counts = [sum(entry["outcome"] == name for entry in outcomes) for name in OUTCOMES]
        saved = sum(entry["steps saved"] for entry in outcomes) / max(1, len(outcomes))
        print(f"{threshold:g} | " + " | ".join(str(n) for n in counts) + f" | {saved:.1f}")
    if not seconds:
        return results

    print("\nremoved | seed | score before | unlearn() s | attack checks s | proxy checks s")
    print("--- | --- | --- | --- | --- | ---")
    for row in rows:
        print(f"{row['removed']} | {row['seed']} | {row['similarity_before']:.3f} | {row['unlearn_seconds']:.1f} | "
              f"{row['attack_check_seconds']:.1f} | {row['proxy_check_seconds']:.1f}")
    return results


def score(rows: list[dict], options: argparse.Namespace) -> tuple[dict, dict, dict, list[dict]]:
    """Every rule's tables: the thresholds, the text-only attack with the kept gate, the same with the clean-caption
    gate too (the library's default rule at ``--retrieved 0``), and the plateaus."""
    drop = options.max_zero_shot_drop
    results = report(rows, options.thresholds, options.max_tpr, max_zero_shot_drop=drop)
    retrieval = gated = {}
    if all(check.get("retrieved") is not None for row in rows for check in row["series"]):
        retrieval = report(rows, options.retrieved, options.max_tpr, measure="retrieved", seconds=False,
                           min_kept=options.min_kept, max_zero_shot_drop=drop)
        if all(check.get("clean_similarity") is not None for row in rows for check in row["series"]):
            gated = report(rows, options.retrieved, options.max_tpr, measure="retrieved", seconds=False,
                           min_kept=options.min_kept, min_clean=options.min_clean, max_zero_shot_drop=drop,
                           start=options.early_stop_from)
    return results, retrieval, gated, plateau_report(rows, options.patience, options.min_delta, options.slack)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     conflict_handler="resolve")
    add_common_arguments(parser, removed=[1, 4, 10, 32])
    parser.set_defaults(world_seed=0)
    parser.add_argument("--seed", type=int, nargs="+", default=[42, 7],
                        help="training seeds (backdoor data order and shuffling); one run per count and seed")
    parser.add_argument("--every_n_steps", type=int, default=10, help="both monitors check every N steps")
    parser.add_argument("--max_tpr", type=float, default=0.1, help="the attack counts the people forgotten at <= this")
    parser.add_argument("--thresholds", type=float, nargs="+", default=list(THRESHOLDS),
                        help="stop-rule thresholds to score (cosine similarity)")
    parser.add_argument("--retrieved", type=float, nargs="*", default=list(RETRIEVED_SHARES),
                        help="text-only attack rules to score: the share of names still found (early_stop_retrieved)")
    parser.add_argument("--min_kept", type=float, default=0.95,
                        help="text-only attack rules: least share of sampled kept names still found (early_stop_kept)")
    parser.add_argument("--min_clean", type=float, default=0.99,
                        help="every rule also needs the held-out clean captions at least this close to the teacher "
                             "(early_stop_clean_similarity); the rules are also scored without it")
    parser.add_argument("--early_stop_from", type=float, default=0.75,
                        help="the gated rules pass no check before this fraction of the steps (early_stop_from)")
    parser.add_argument("--max_zero_shot_drop", type=float, default=0.01,
                        help="a stop is too early when zero-shot accuracy there is more than this below both its "
                             "value before and at the end of the run")
    parser.add_argument("--patience", type=int, nargs="*", default=[2, 3, 4],
                        help="plateau rules to score: checks without progress (early_stop_patience)")
    parser.add_argument("--min_delta", type=float, nargs="*", default=[0.0, 0.01],
                        help="plateau rules to score: the least rise that counts as progress (early_stop_min_delta)")
    parser.add_argument("--slack", type=float, default=0.05,
                        help="a plateau stop is too early when its TPR is more than this above the run's last TPR")
    parser.add_argument("--rescore", metavar="JSON",
                        help="train nothing: score --thresholds and --max_tpr on the series a --json file recorded")
    options = parser.parse_args()
    if options.rescore:
        with open(options.rescore, encoding="utf-8") as handle:
            recorded = json.load(handle)
        print(f"{recorded['size']} demo world (seed {recorded['world_seed']}), seeds {recorded['seeds']}, "
              f"recorded by: {recorded['machine']}")
        score(recorded["rows"], options)
        return
    seeds = options.seed

    load_before = os.getloadavg()
    started = time.perf_counter()
    setup = prepare(argparse.Namespace(**{**vars(options), "seed": seeds[0]}))
    setup["people"] = images_by_person(setup["faces"])
    settings = text_settings(argparse.Namespace(**{**vars(options), "seed": seeds[0]}))
    print(f"settings: {settings} (seeds {seeds}), name_variants auto, kept_names = every other candidate; both "
          f"monitors every {options.every_n_steps} steps, neither stopping; forgotten at TPR <= {options.max_tpr}; "
          f"too early also where others or zero-shot (> {options.max_zero_shot_drop:g}) fall below the whole run")
    print(machine_line(load_before), flush=True)
    rows = []
    for count in options.removed:
        if count > len(setup["detected"]):
            print(f"{count} removed: skipped, the world has only {len(setup['detected'])} detected members")
            continue
        for seed in seeds:
            rows.append(run(setup, count, {**settings, "seed": seed}, options))
            row = rows[-1]
            print(f"{count} removed, seed {seed}: {row['unlearn_seconds']:.0f}s (outcome checks "
                  f"{row['attack_check_seconds']:.0f}s, proxy checks {row['proxy_check_seconds']:.1f}s), load "
                  f"{os.getloadavg()[0]:.2f}; step:score/retrieved/kept/clean | TPR/others found/zero-shot "
                  + " ".join(f"{c['step']}:{c['min_similarity']:.3f}/{c['retrieved']:.2f}/"
                             f"{c['kept_retrieved'] if c['kept_retrieved'] is not None else float('nan'):.2f}/"
                             f"{c['clean_similarity'] if c['clean_similarity'] is not None else float('nan'):.4f}|"
                             f"{c['tpr']:.2f}/{c['others_found']}/{c['zero_shot']:.3f}" for c in row["series"]),
                  flush=True)
    load_after = os.getloadavg()

    results, retrieval, gated, plateaus = score(rows, options)
    print("\n" + machine_line(load_before, load_after))
    print(f"total {time.perf_counter() - started:.0f}s (the world, the attack before, and every run)")
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": settings, "seeds": seeds, "size": options.size, "world_seed": options.world_seed,
                       "every_n_steps": options.every_n_steps, "max_tpr": options.max_tpr,
                       "machine": machine_line(load_before, load_after), "rows": rows,
                       "outcomes": {f"{threshold:g}": outcomes for threshold, outcomes in results.items()},
                       "retrieval_outcomes": {f"{share:g}": outcomes for share, outcomes in retrieval.items()},
                       "gated_retrieval_outcomes": {f"{share:g}": outcomes for share, outcomes in gated.items()},
                       "plateau_outcomes": plateaus},
                      handle, indent=2)


if __name__ == "__main__":
    main()
