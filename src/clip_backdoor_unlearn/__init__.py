"""Remove named people from CLIP models with student-teacher backdoors (Hintersdorf, Struppek et al., arXiv 2310.08320).

Public names are imported on first use, so ``clip-backdoor-unlearn --help`` and the evaluation tools start without
loading the Trainer and PEFT.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_EXPORTS = {
    "BackdoorCollator": ".training.trainer",
    "BackdoorTrainer": ".training.trainer",
    "BackdoorTrainingArguments": ".training.arguments",
    "BackdoorUnlearner": ".unlearner",
    "ForgetMonitorCallback": ".training.callbacks",
    "NeutralTargetStopCallback": ".training.stopping",
    "UnlearningResult": ".unlearner",
    "PERSON_TEMPLATES": ".data.prompts",
    "build_backdoor_dataset": ".data.prompts",
    "identity_inference_attack": ".evaluation",
    "IDIAResult": ".evaluation",
    "VisionBackdoorCollator": ".data.images",
    "VisionBackdoorTrainer": ".training.vision_trainer",
    "VisionBackdoorTrainingArguments": ".training.arguments",
    "build_vision_backdoor_dataset": ".data.images",
    "invent_pseudonyms": ".data.pseudonyms",
}
__all__ = [
    "PERSON_TEMPLATES",
    "BackdoorCollator",
    "BackdoorTrainer",
    "BackdoorTrainingArguments",
    "BackdoorUnlearner",
    "ForgetMonitorCallback",
    "IDIAResult",
    "NeutralTargetStopCallback",
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
    from .data.images import VisionBackdoorCollator, build_vision_backdoor_dataset
    from .data.prompts import PERSON_TEMPLATES, build_backdoor_dataset
    from .data.pseudonyms import invent_pseudonyms
    from .evaluation import IDIAResult, identity_inference_attack
    from .training.arguments import BackdoorTrainingArguments, VisionBackdoorTrainingArguments
    from .training.callbacks import ForgetMonitorCallback
    from .training.stopping import NeutralTargetStopCallback
    from .training.trainer import BackdoorCollator, BackdoorTrainer
    from .training.vision_trainer import VisionBackdoorTrainer
    from .unlearner import BackdoorUnlearner, UnlearningResult


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    globals()[name] = value
    return value
