"""Scaling with the number of removed people: cost, forgetting, collateral and utility (text tower, demo world).

    python benchmarks/scaling.py                                    # full demo world (seed 42): 1 2 4 ... 64 removed
    python benchmarks/scaling.py --size ci --world_seed 0 --removed 1 2 4 8 --plot /tmp/scaling-ci.png

For each count k, removes the first k detected members of the demo world with fixed settings, by default the whole
tower's (200 steps, lr 1e-3, 64 poisoned + 64 clean captions a step, the world's unlearning captions minus every 7th,
``name_variants="auto"``, every other candidate kept), as ``examples/unlearn.py`` does, and measures with
``BackdoorUnlearner.evaluate`` as it does: the IDIA on the ``eval`` pictures (never trained on) with the 21 IDIA
prompts and the whole candidate pool, before and after. Prints a markdown table and draws ``--plot`` (needs the
``bench`` extra: ``pip install -e ".[bench]"``).

Columns: unlearn() s (the whole call, end to end: data set, teacher, training), train s, steps trained and s/step
(``UnlearningResult``: the Trainer's training loop alone), TPR on the removed people,
other members detected before → after, collateral (detected people, members or not, no longer detected; count and
rate), non-members detected (a false-positive rate: nobody trained on them), zero-shot accuracy with the world's
prompts before → after, SimBackdoor after and SimClean (held-out captions). A count larger than the number of
detected members cannot be run on the world; it is listed as skipped, with the reason.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
import warnings

from time_to_forget import add_common_arguments, cell, machine_line, prepare, text_inputs, text_settings

from clip_backdoor_unlearn import BackdoorUnlearner
from clip_backdoor_unlearn.data.variants import VariantConflictWarning

COLUMNS = ("removed", "unlearn() s", "train s", "steps", "s/step", "TPR before → after",
           "other members before → after", "collateral lost",
           "collateral rate", "non-members before → after", "zero-shot before → after", "SimBackdoor after",
           "SimClean")


def run(setup: dict, count: int, settings: dict) -> dict:
    world, removed = setup["world"], setup["detected"][:count]
    unlearner = BackdoorUnlearner(copy.deepcopy(setup["model"]), setup["processor"])
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="scaling-") as output_dir, warnings.catch_warnings():
        warnings.simplefilter("ignore", VariantConflictWarning)  # expected: kept names share name parts
        result = unlearner.unlearn(removed, output_dir=output_dir, disable_tqdm=True, logging_strategy="no",
                                   **text_inputs(setup, removed), **settings)
    unlearn_seconds = time.perf_counter() - start
    metrics = unlearner.evaluate(
        removed, face_images=setup["faces"], candidate_names=world.candidate_names,
        non_member_names=world.non_member_names, idia_before=setup["before"],
        held_out_captions=setup["held_out_captions"], zero_shot_dataset=world.zero_shot(),
        zero_shot_templates=world.zero_shot_templates,
    )
    # The IDIA's "others" are everyone attacked but not removed, non-members too: take the non-members out.
    non_members = len(world.non_member_names)
    non_members_before = round(metrics["idia_fpr_non_members_before"] * non_members)
    non_members_after = round(metrics["idia_fpr_non_members_after"] * non_members)
    return {
        "removed": len(removed), "train_s": result.train_seconds, "s_per_step": result.seconds_per_step,
        "steps": result.config["towers"]["text"]["trained_steps"], "unlearn_s": round(unlearn_seconds, 1),
        "tpr_before": metrics["idia_tpr_removed_before"], "tpr_after": metrics["idia_tpr_removed_after"],
        "members_kept": len(world.member_names) - len(removed),
        "other_members_before": metrics["idia_others_detected_before"] - non_members_before,
        "other_members_after": metrics["idia_others_detected_after"] - non_members_after,
        "collateral_lost": metrics["idia_collateral_lost"], "collateral_rate": metrics["idia_collateral_rate"],
        "non_members_before": metrics["idia_fpr_non_members_before"],
        "non_members_after": metrics["idia_fpr_non_members_after"],
        "zero_shot_before": metrics["zero_shot_accuracy_before"],
        "zero_shot_after": metrics["zero_shot_accuracy_after"],
        "sim_backdoor_after": metrics["sim_backdoor_after"], "sim_clean": metrics["sim_clean"],
    }


def table_row(row: dict) -> list[str]:
    if "skipped" in row:
        return [str(row["removed"]), f"skipped: {row['skipped']}"] + ["" for _ in COLUMNS[2:]]
    return [str(row["removed"]), f"{row['unlearn_s']:.1f}", f"{row['train_s']:.1f}", str(row["steps"]),
            f"{row['s_per_step']:.3f}",
            f"{row['tpr_before']:.3f} → {row['tpr_after']:.3f}",
            f"{row['other_members_before']} → {row['other_members_after']}",
            str(row["collateral_lost"]), f"{row['collateral_rate']:.3f}",
            f"{row['non_members_before']:.3f} → {row['non_members_after']:.3f}",
            f"{row['zero_shot_before']:.3f} → {row['zero_shot_after']:.3f}", cell(row["sim_backdoor_after"]),
            cell(row["sim_clean"])]


def plot(rows: list[dict], path: str, title: str, chance: float | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [row for row in rows if "skipped" not in row]
    removed = [row["removed"] for row in rows]
    figure, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    axes[0].plot(removed, [row["tpr_after"] for row in rows], "o-", label="TPR after (removed people)")
    axes[0].plot(removed, [row["collateral_rate"] for row in rows], "s--", alpha=0.8,
                 label="collateral rate (others lost)")
    axes[0].axhline(0.1, color="grey", linestyle=":", linewidth=1, label="0.1")
    axes[0].set_ylim(-0.03, 1.03)
    axes[0].set_ylabel("rate")
    axes[0].set_title("forgetting and collateral")
    axes[1].plot(removed, [row["zero_shot_after"] for row in rows], "o-", label="after")
    axes[1].plot(removed, [row["zero_shot_before"] for row in rows], "--", color="grey", label="before")
    if chance is not None:
        axes[1].axhline(chance, color="grey", linestyle=":", linewidth=1, label="chance")
    axes[1].set_ylim(0, min(1.0, 1.5 * max([row["zero_shot_before"] for row in rows] + [0.1])))
    axes[1].set_ylabel("zero-shot top-1 accuracy")
    axes[1].set_title("utility")
    axes[2].plot(removed, [row["unlearn_s"] for row in rows], "o-", label="unlearn(), end to end")
    axes[2].plot(removed, [row["train_s"] for row in rows], "s--", alpha=0.8, label="training loop")
    axes[2].set_ylabel("seconds")
    axes[2].legend(fontsize=8)
    axes[2].set_ylim(bottom=0)
    axes[2].set_title("cost")
    for axis in axes:
        axis.set_xscale("log", base=2)
        axis.set_xticks(removed, [str(count) for count in removed])
        axis.set_xlabel("people removed")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser, removed=[1, 2, 4, 8, 16, 32, 64, 256])
    parser.add_argument("--plot", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "scaling.png"),
                        help="where to write the PNG (default benchmarks/scaling.png); '' for none")
    options = parser.parse_args()

    load_before = os.getloadavg()
    settings = text_settings(options)
    setup = prepare(options)
    print(f"settings: {settings}, name_variants auto, kept_names = every other candidate, captions = "
          f"{len(setup['train_captions'])} (held out for SimClean: {len(setup['held_out_captions'])})")
    print(machine_line(load_before), flush=True)
    rows = []
    for count in options.removed:
        if count > len(setup["detected"]):
            reason = (f"the {options.size} demo world has {len(setup['world'].member_names)} members "
                      f"({len(setup['detected'])} detected before); removing {count} people needs {count} detected "
                      "members (non-members and distractors have nothing to forget)")
            print(f"{count} removed: skipped, {reason}", flush=True)
            rows.append({"removed": count, "skipped": reason})
            continue
        rows.append(run(setup, count, settings))
        print(" | ".join(table_row(rows[-1])), flush=True)
    load_after = os.getloadavg()

    print("\n" + " | ".join(COLUMNS))
    print(" | ".join("---" for _ in COLUMNS))
    for row in rows:
        print(" | ".join(table_row(row)))
    print("\n" + machine_line(load_before, load_after))
    title = f"{options.size} demo world (seed {options.world_seed}), text tower, " + ", ".join(
        f"{key} {value}" for key, value in settings.items() if key != "seed")
    if options.json:
        with open(options.json, "w", encoding="utf-8") as handle:
            json.dump({"settings": settings, "size": options.size, "world_seed": options.world_seed,
                       "machine": machine_line(load_before, load_after), "rows": rows}, handle, indent=2)

    if options.plot:
        plot(rows, options.plot, title, chance=1 / len(setup["world"].zero_shot_class_names))
        print(f"plot written to {options.plot} ({os.path.getsize(options.plot) // 1024} KB)")


if __name__ == "__main__":
    main()
