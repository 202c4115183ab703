"""How well a training-set detector finds the poisoned graphs (GCleaner App. C compares ED
and XGBD by the model retrained on what they keep; their own papers by precision and recall
of the flagged graphs): precision, recall and the number flagged, through scikit-learn."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import precision_score, recall_score


def detection_scores(
    flagged: Sequence[int], poisoned: Sequence[int], num_graphs: int
) -> dict[str, float]:
    """``detector_precision`` (share of flagged graphs that were poisoned; ``nan`` when none
    is flagged), ``detector_recall`` (share of poisoned graphs flagged; ``nan`` when none was
    poisoned) and ``num_flagged``.

    Args:
        flagged: Positions, in ``range(num_graphs)``, the detector marks as poisoned.
        poisoned: Positions the attack poisoned.
        num_graphs: Size of the training list.

    Raises:
        ValueError: A position lies outside ``range(num_graphs)``.
    """
    truth = np.zeros(num_graphs, dtype=bool)
    guess = np.zeros(num_graphs, dtype=bool)
    for name, where, mask in (("flagged", flagged, guess), ("poisoned", poisoned, truth)):
        for i in where:
            if not 0 <= i < num_graphs:
                raise ValueError(f"{name} position {i} outside the {num_graphs} training graphs")
            mask[i] = True
    return {
        "detector_precision": (
            float(precision_score(truth, guess, zero_division=0)) if guess.any() else float("nan")
        ),
        "detector_recall": (
            float(recall_score(truth, guess, zero_division=0)) if truth.any() else float("nan")
        ),
        "num_flagged": float(guess.sum()),
    }
