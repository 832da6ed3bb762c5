"""The run record: what was done to a checkpoint, as ``unlearning_config.json`` stores it and the card shows it.

One record per sanitized checkpoint, keyed by tower, written by the unlearner and by ``BackdoorTrainer``'s card
alike, so both describe a run with the same hyperparameters. It holds counts, modes and settings, never a name.

    {"encoder": "both", "num_removed_names": 5, "neutral_term": "a person", "adapter": null, ...,
     "towers": {"text": {"hyperparameters": {...}, "name_variants": "auto", ...}, "vision": {...}}}
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .. import __version__

UNLEARNING_CONFIG_NAME = "unlearning_config.json"
METHOD = "student-teacher backdoor unlearning (arXiv 2310.08320)"
GATED_METHOD = "gated neurons added to the image tower (this library's edit, nothing trained)"
# Fields of TrainingArguments worth recording next to the method's own (BackdoorTrainingArguments') fields.
SHARED_HYPERPARAMETERS = ("max_steps", "learning_rate", "weight_decay", "seed", "gradient_accumulation_steps", "bf16",
                          "fp16")


def hyperparameters(args, peft_config=None) -> dict[str, Any]:
    """The method's own training-argument fields, the usual few of ``TrainingArguments``, and the adapter's shape;
    for an image tower edited with gated neurons, the edit's settings alone (it reads no training field)."""
    from transformers import TrainingArguments

    from ..training.arguments import GATED_SETTINGS

    if getattr(args, "image_method", None) == "gated_neurons":
        return {name: getattr(args, name) for name in GATED_SETTINGS}
    generic = {item.name for item in dataclasses.fields(TrainingArguments)}
    unused = set(GATED_SETTINGS) - {"seed"}  # fine-tuning reads none of the edit's settings
    values = {item.name: getattr(args, item.name) for item in dataclasses.fields(args)
              if (item.name not in generic or item.name in SHARED_HYPERPARAMETERS) and item.name not in unused}
    if peft_config is not None:
        targets = getattr(peft_config, "target_modules", None)
        values.update(peft_type=str(getattr(peft_config, "peft_type", "")), lora_r=getattr(peft_config, "r", None),
                      lora_alpha=getattr(peft_config, "lora_alpha", None),
                      lora_target_modules=targets if isinstance(targets, str) or targets is None else sorted(targets))
    return values


def tower_record(args, peft_config=None, **extra) -> dict[str, Any]:
    """One tower's entry: its hyperparameters plus ``extra`` (counts and modes only, never names)."""
    return {"hyperparameters": hyperparameters(args, peft_config), **extra}


def run_record(*, encoder: str, num_removed: int | None, neutral_term: str | None, peft_config,
               towers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The whole record of one run (``towers``: tower name → ``tower_record``)."""
    return {
        "library": "clip-backdoor-unlearn",
        "library_version": __version__,
        "method": _method(towers),
        "encoder": encoder,
        "num_removed_names": num_removed,
        "neutral_term": neutral_term if encoder != "vision" else None,
        "adapter": type(peft_config).__name__ if peft_config is not None else None,
        "towers": towers,
    }


def accumulated_record(previous: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    """The record after one more run: the latest run's fields at the top (what the card shows), every run under
    ``"runs"`` and ``num_removed_names`` counting the people removed over all of them."""
    runs = [*(previous.get("runs") or ([previous] if previous else [])), run]
    total = sum(entry.get("num_removed_names") or 0 for entry in runs)
    return {**run, "num_removed_names": total, "num_runs": len(runs), "runs": runs}


def _method(towers: dict[str, dict[str, Any]]) -> str:
    """The method of a run: training's, the gated edit's, or, with ``encoder="both"`` and the edit, each tower's."""
    gated = bool(towers.get("vision", {}).get("gated_neurons_added"))
    if not gated:
        return METHOD
    return GATED_METHOD if set(towers) == {"vision"} else f"text tower: {METHOD}; image tower: {GATED_METHOD}"
