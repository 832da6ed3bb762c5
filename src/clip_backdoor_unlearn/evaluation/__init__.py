"""Measuring unlearning: the identity inference attack, embedding similarities and zero-shot utility."""

from .idia import (
    IDIAResult,
    PersonResult,
    embed_people,
    embed_prompts,
    evaluation_mode,
    identity_inference_attack,
    majority_vote,
    predict_candidates,
    unlearning_report,
)
from .similarity import sim_backdoor, sim_clean, sim_clean_images, sim_to_target
from .templates import IDIA_TEMPLATES, ZERO_SHOT_TEMPLATES
from .variant_leakage import leakage_table, variant_leakage
from .zero_shot import zero_shot_accuracy, zero_shot_classifier

__all__ = [
    "IDIA_TEMPLATES",
    "ZERO_SHOT_TEMPLATES",
    "IDIAResult",
    "PersonResult",
    "embed_people",
    "embed_prompts",
    "evaluation_mode",
    "identity_inference_attack",
    "leakage_table",
    "majority_vote",
    "predict_candidates",
    "sim_backdoor",
    "sim_clean",
    "sim_clean_images",
    "sim_to_target",
    "unlearning_report",
    "variant_leakage",
    "zero_shot_accuracy",
    "zero_shot_classifier",
]
