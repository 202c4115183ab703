"""Link-prediction metrics: AUC and average precision of positive vs. negative pair scores."""

from __future__ import annotations

import torch
from sklearn.metrics import average_precision_score, roc_auc_score
from torch import Tensor
from torch_geometric.data import Data

from gnnbackdoor.models.base import LinkPredictor
from gnnbackdoor.models.train_link import split_scores


def _labels_and_scores(pos: Tensor, neg: Tensor) -> tuple:
    scores = torch.cat([pos, neg]).detach().cpu().double().numpy()
    labels = torch.cat([torch.ones(len(pos)), torch.zeros(len(neg))]).numpy()
    return labels, scores


def roc_auc(pos_scores: Tensor, neg_scores: Tensor) -> float:
    """AUC (Link-Backdoor Eq. 13): the probability that a random existing link scores above a
    random non-link, ties counting one half.

    Args:
        pos_scores: Scores ``[P]`` of existing links (any monotone score: logits or probs).
        neg_scores: Scores ``[Q]`` of non-links.
    """
    return float(roc_auc_score(*_labels_and_scores(pos_scores, neg_scores)))


def average_precision(pos_scores: Tensor, neg_scores: Tensor) -> float:
    """Average precision of ranking existing links (``[P]``) above non-links (``[Q]``)."""
    return float(average_precision_score(*_labels_and_scores(pos_scores, neg_scores)))


def evaluate_links(model: LinkPredictor, split: Data, with_ap: bool = True) -> dict[str, float]:
    """``auc`` (and ``ap`` unless ``with_ap`` is false) of ``model`` on
    ``split.pos_edge_label_index`` vs ``split.neg_edge_label_index``."""
    pos, neg = split_scores(model, split)
    result = {"auc": roc_auc(pos, neg)}
    if with_ap:
        result["ap"] = average_precision(pos, neg)
    return result
