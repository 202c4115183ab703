"""Metric functions. Every metric returns a fraction in [0, 1] (BPD: a difference of two
fractions); reports multiply by 100 to show points."""

from gnnbackdoor.metrics.backdoor import (
    attack_success_rate,
    average_misclassification_confidence,
    backdoor_implanted,
    benign_performance_drop,
    defense_effectiveness_rating,
)
from gnnbackdoor.metrics.classification import accuracy
from gnnbackdoor.metrics.collapse import (
    already_target_share,
    class_histogram,
    collapsed,
    majority_share,
)
from gnnbackdoor.metrics.detection import detection_scores
from gnnbackdoor.metrics.gcleaner import trigger_embedding_cosine
from gnnbackdoor.metrics.ranking import average_precision, evaluate_links, roc_auc

__all__ = [
    "accuracy",
    "already_target_share",
    "attack_success_rate",
    "average_misclassification_confidence",
    "average_precision",
    "backdoor_implanted",
    "benign_performance_drop",
    "class_histogram",
    "collapsed",
    "defense_effectiveness_rating",
    "detection_scores",
    "evaluate_links",
    "majority_share",
    "roc_auc",
    "trigger_embedding_cosine",
]
