"""``evaluate`` modules shipped with the package, loadable offline by path:

    import evaluate
    from clip_backdoor_unlearn.evaluation.metrics import IDIA_METRIC_PATH, ZERO_SHOT_METRIC_PATH

    idia = evaluate.load(IDIA_METRIC_PATH)          # rows from evaluation.idia.attack_predictions
    zero_shot = evaluate.load(ZERO_SHOT_METRIC_PATH)  # rows from evaluation.zero_shot.zero_shot_rankings

Each gives the same figures as the package's functions (it votes and scores with them).
"""

from pathlib import Path

_HERE = Path(__file__).parent
IDIA_METRIC_PATH = str(_HERE / "idia" / "idia.py")
ZERO_SHOT_METRIC_PATH = str(_HERE / "zero_shot" / "zero_shot.py")
