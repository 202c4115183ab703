"""Backdoor metrics as the papers define them: ASR, AMC and BPD.

ASR counts only *eligible* inputs: for links, target links that the clean model predicts
absent; for graphs, test graphs whose true label is not the target class.
"""

from __future__ import annotations

from torch import Tensor


def attack_success_rate(hit: Tensor, eligible: Tensor | None = None) -> float:
    """ASR (Link-Backdoor Eq. 12; GTA/GraphProt ASR): successful attacks over eligible inputs.

    Args:
        hit: Bool ``[B]``, whether the triggered input got the attacker's chosen output (link
            predicted existing; graph classified as the target class).
        eligible: Bool ``[B]``, which inputs count (default: all). Returns ``nan`` if none do.
    """
    hit = hit.view(-1).bool()
    mask = hit.new_ones(hit.shape) if eligible is None else eligible.view(-1).bool()
    count = int(mask.sum())
    if count == 0:
        return float("nan")
    return float((hit & mask).sum()) / count


def average_misclassification_confidence(
    confidence: Tensor, hit: Tensor, eligible: Tensor | None = None
) -> float:
    """AMC (Link-Backdoor Sec. 5.1.3, after GTA): mean confidence the model puts on the
    attacker's chosen output, over the successfully attacked eligible inputs.

    Args:
        confidence: ``[B]`` probability of the attacker's chosen output (link existence
            probability, or the target class's softmax probability).
        hit: Bool ``[B]`` as in :func:`attack_success_rate`.
        eligible: Bool ``[B]`` or ``None``. Returns ``nan`` if no eligible input was hit.
    """
    mask = hit.view(-1).bool()
    if eligible is not None:
        mask = mask & eligible.view(-1).bool()
    if int(mask.sum()) == 0:
        return float("nan")
    return float(confidence.view(-1)[mask].float().mean())


def benign_performance_drop(clean_score: float, backdoored_score: float) -> float:
    """BPD (Link-Backdoor Sec. 5.1.3): the clean model's benign score (AUC or accuracy) minus
    the backdoored model's, on the same clean test inputs. Positive means the backdoor cost
    accuracy."""
    return clean_score - backdoored_score
