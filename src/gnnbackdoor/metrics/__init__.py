"""Metric functions. Every metric returns a fraction in [0, 1] (BPD: a difference of two
fractions); reports multiply by 100 to show points."""

from gnnbackdoor.metrics.backdoor import (
    attack_success_rate,
    average_misclassification_confidence,
    benign_performance_drop,
)
from gnnbackdoor.metrics.classification import accuracy
from gnnbackdoor.metrics.ranking import average_precision, evaluate_links, roc_auc

__all__ = [
    "accuracy",
    "attack_success_rate",
    "average_misclassification_confidence",
    "average_precision",
    "benign_performance_drop",
    "evaluate_links",
    "roc_auc",
]
