"""Measuring unlearning: the identity inference attack, image-to-image retrieval, similarities, zero-shot utility."""

from .idia import (
    IDIAResult,
    PersonResult,
    attack_predictions,
    embed_people,
    embed_prompts,
    evaluation_mode,
    identity_inference_attack,
    majority_vote,
    predict_candidates,
    unlearning_report,
)
from .image_retrieval import ImageRetrievalResult, image_retrieval_attack
from .protocol import IDIA_PROTOCOLS, IDIAProtocol, default_candidate_pool
from .similarity import sim_backdoor, sim_clean, sim_clean_images, sim_to_target
from .templates import IDIA_TEMPLATES, OPENAI_IMAGENET_TEMPLATES, ZERO_SHOT_TEMPLATES
from .variant_leakage import leakage_table, variant_leakage
from .zero_shot import (
    paired_accuracy_change,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_hits,
    zero_shot_rankings,
    zero_shot_topk_accuracy,
)

__all__ = [
    "IDIA_PROTOCOLS",
    "IDIA_TEMPLATES",
    "OPENAI_IMAGENET_TEMPLATES",
    "ZERO_SHOT_TEMPLATES",
    "IDIAProtocol",
    "IDIAResult",
    "ImageRetrievalResult",
    "PersonResult",
    "attack_predictions",
    "default_candidate_pool",
    "embed_people",
    "embed_prompts",
    "evaluation_mode",
    "identity_inference_attack",
    "image_retrieval_attack",
    "leakage_table",
    "majority_vote",
    "paired_accuracy_change",
    "predict_candidates",
    "sim_backdoor",
    "sim_clean",
    "sim_clean_images",
    "sim_to_target",
    "unlearning_report",
    "variant_leakage",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_hits",
    "zero_shot_rankings",
    "zero_shot_topk_accuracy",
]
