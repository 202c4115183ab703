"""Backdoor metrics as the papers define them: ASR, AMC and BPD; the implant flag and
BackdoorBench's DER.

ASR counts only *eligible* inputs: for links, target links that the clean model predicts
absent; for graphs, test graphs whose true label is not the target class.
"""

from __future__ import annotations

import math

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


#: A graph backdoor counts as implanted when its ASR reaches this share ...
IMPLANT_MIN_ASR = 0.5
#: ... and exceeds the clean model's ASR on the same triggered graphs by this many points.
IMPLANT_MIN_MARGIN = 0.2


def backdoor_implanted(asr: float, clean_model_asr: float) -> bool:
    """Whether a backdoor implanted: ASR ≥ :data:`IMPLANT_MIN_ASR` (50 %, the threshold of
    issue 14's honest summaries) and at least :data:`IMPLANT_MIN_MARGIN` (20 points) above
    the clean model's ASR on the same triggered graphs (the developers' guide: "ASR well
    above the clean model's"). A trigger that also fools the clean model (GTA's can) does not
    count as implanted. ``False`` when either rate is ``nan``."""
    if math.isnan(asr) or math.isnan(clean_model_asr):
        return False
    return asr >= IMPLANT_MIN_ASR and asr - clean_model_asr >= IMPLANT_MIN_MARGIN - 1e-12


def defense_effectiveness_rating(
    asr_before: float, asr_after: float, acc_before: float, acc_after: float
) -> float:
    """BackdoorBench's defense effectiveness rating (Wu et al., NeurIPS 2022, Sec. 4):
    ``DER = (max(0, ΔASR) − max(0, ΔACC) + 1) / 2`` with ``Δ = before − after``; in [0, 1],
    0.5 for a defense that changes nothing, 1 for one that removes the whole ASR at no
    accuracy cost. Inputs are fractions in [0, 1]; ``nan`` when any is ``nan``."""
    values = (asr_before, asr_after, acc_before, acc_after)
    if any(math.isnan(v) for v in values):
        return float("nan")
    return (max(0.0, asr_before - asr_after) - max(0.0, acc_before - acc_after) + 1.0) / 2.0
