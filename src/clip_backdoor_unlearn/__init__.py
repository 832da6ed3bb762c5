"""Remove named people from CLIP models with student-teacher backdoors (Hintersdorf, Struppek et al., arXiv 2310.08320)."""

__version__ = "0.1.0"

from .config import BackdoorTrainingArguments
from .prompts import PERSON_TEMPLATES, build_backdoor_dataset
from .trainer import BackdoorCollator, BackdoorTrainer
from .unlearner import BackdoorUnlearner, UnlearningResult

__all__ = [
    "BackdoorCollator",
    "BackdoorTrainer",
    "BackdoorTrainingArguments",
    "BackdoorUnlearner",
    "PERSON_TEMPLATES",
    "UnlearningResult",
    "build_backdoor_dataset",
]
