"""Remove named people from CLIP models with student-teacher backdoors (Hintersdorf, Struppek et al., arXiv 2310.08320).

Public names are imported on first use, so ``clip-backdoor-unlearn --help`` and the evaluation tools start without
loading the Trainer and PEFT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BackdoorCollator": ".trainer",
    "BackdoorTrainer": ".trainer",
    "BackdoorTrainingArguments": ".config",
    "BackdoorUnlearner": ".unlearner",
    "ForgetMonitorCallback": ".callbacks",
    "UnlearningResult": ".unlearner",
    "PERSON_TEMPLATES": ".prompts",
    "build_backdoor_dataset": ".prompts",
    "identity_inference_attack": ".evaluation",
    "IDIAResult": ".evaluation",
    "VisionBackdoorCollator": ".vision_data",
    "VisionBackdoorTrainer": ".vision_trainer",
    "VisionBackdoorTrainingArguments": ".config",
    "build_vision_backdoor_dataset": ".vision_data",
    "invent_pseudonyms": ".pseudonyms",
}
__all__ = [
    "PERSON_TEMPLATES",
    "BackdoorCollator",
    "BackdoorTrainer",
    "BackdoorTrainingArguments",
    "BackdoorUnlearner",
    "ForgetMonitorCallback",
    "IDIAResult",
    "UnlearningResult",
    "VisionBackdoorCollator",
    "VisionBackdoorTrainer",
    "VisionBackdoorTrainingArguments",
    "build_backdoor_dataset",
    "build_vision_backdoor_dataset",
    "identity_inference_attack",
    "invent_pseudonyms",
]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from .callbacks import ForgetMonitorCallback
    from .config import BackdoorTrainingArguments, VisionBackdoorTrainingArguments
    from .evaluation import IDIAResult, identity_inference_attack
    from .prompts import PERSON_TEMPLATES, build_backdoor_dataset
    from .pseudonyms import invent_pseudonyms
    from .trainer import BackdoorCollator, BackdoorTrainer
    from .unlearner import BackdoorUnlearner, UnlearningResult
    from .vision_data import VisionBackdoorCollator, build_vision_backdoor_dataset
    from .vision_trainer import VisionBackdoorTrainer


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
