"""Metrics on hand-computed cases."""

from __future__ import annotations

import math

import pytest
import torch

from gnnbackdoor.metrics import (
    accuracy,
    attack_success_rate,
    average_misclassification_confidence,
    average_precision,
    benign_performance_drop,
    roc_auc,
)


def test_auc_counts_pairs_and_half_ties():
    # positives 0.9, 0.4; negatives 0.4, 0.1 -> pairs: (0.9>0.4) (0.9>0.1) (0.4=0.4) (0.4>0.1)
    auc = roc_auc(torch.tensor([0.9, 0.4]), torch.tensor([0.4, 0.1]))
    assert auc == pytest.approx((3 + 0.5) / 4)


def test_average_precision_hand_case():
    # ranking: pos(0.9), neg(0.8), pos(0.7) -> AP = (1/1 + 2/3) / 2
    ap = average_precision(torch.tensor([0.9, 0.7]), torch.tensor([0.8]))
    assert ap == pytest.approx((1 + 2 / 3) / 2)


def test_accuracy():
    assert accuracy(torch.tensor([0, 1, 1, 2]), torch.tensor([0, 1, 2, 2])) == 0.75
    assert accuracy(torch.tensor([]), torch.tensor([])) == 0.0


def test_asr_counts_only_eligible_inputs():
    hit = torch.tensor([True, True, False, True])
    eligible = torch.tensor([True, False, True, False])
    assert attack_success_rate(hit, eligible) == 0.5  # 1 hit of 2 eligible
    assert attack_success_rate(hit) == 0.75
    assert math.isnan(attack_success_rate(hit, torch.zeros(4, dtype=torch.bool)))


def test_amc_averages_confidence_of_successful_eligible_attacks():
    confidence = torch.tensor([0.9, 0.8, 0.3, 0.7])
    hit = torch.tensor([True, True, False, True])
    eligible = torch.tensor([True, False, True, True])
    assert average_misclassification_confidence(confidence, hit, eligible) == pytest.approx(0.8)
    assert math.isnan(
        average_misclassification_confidence(confidence, torch.zeros(4, dtype=torch.bool))
    )


def test_bpd_is_clean_minus_backdoored():
    assert benign_performance_drop(0.91, 0.88) == pytest.approx(0.03)
    assert benign_performance_drop(0.88, 0.91) == pytest.approx(-0.03)


def test_subgraph_vote_rate_counts_votes_not_graphs():
    from gnnbackdoor.metrics.shield import subgraph_vote_rate

    details = [{"subgraph_votes": [1, 1, 0]}, {"subgraph_votes": [0]}]
    assert subgraph_vote_rate(details, [1, 0]) == pytest.approx(3 / 4)
    assert subgraph_vote_rate(details, [0, 1]) == pytest.approx(1 / 4)
    assert math.isnan(subgraph_vote_rate([], []))
    with pytest.raises(ValueError):
        subgraph_vote_rate(details, [1])


def test_trigger_coverage_on_hand_made_details():
    from gnnbackdoor.metrics.shield import trigger_coverage

    # graph 1: 10 nodes, trigger {0, 1, 2}; the filter removed 2 (trigger) and 7, 8 (others)
    # graph 2: 6 nodes, trigger {3, 4, 5}; nothing removed
    details = [
        {"removed_nodes": [2, 7, 8], "kept_nodes": 7, "subgraph_nodes": [[0, 1], [3, 4]]},
        {"removed_nodes": [], "kept_nodes": 6, "subgraph_nodes": [[3, 4, 5], [0, 5]]},
    ]
    out = trigger_coverage(details, [[0, 1, 2], [3, 4, 5]])
    assert out["filter_trigger_removed"] == pytest.approx(1 / 6)
    assert out["filter_other_removed"] == pytest.approx(2 / 10)
    assert out["subgraph_trigger_nodes"] == pytest.approx((2 + 0 + 3 + 1) / 4)
    assert out["subgraph_trigger_share"] == pytest.approx((1 + 0 + 1 + 0.5) / 4)
    assert out["subgraph_two_trigger"] == pytest.approx(2 / 4)
    assert out["subgraph_full_trigger"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError):
        trigger_coverage(details, [[0]])


def test_shield_diagnostics_reads_the_no_trigger_baseline_from_the_clean_graphs():
    from gnnbackdoor.defenses.base import ShieldResult
    from gnnbackdoor.metrics.shield import shield_diagnostics

    # three clean graphs of classes 0, 0, 1; target 1
    clean = ShieldResult(
        torch.tensor([1, 0, 1]),
        [
            {"subgraph_votes": [1, 1, 0]},
            {"subgraph_votes": [0, 0, 1]},
            {"subgraph_votes": [1, 1, 1]},
        ],
    )
    triggered = ShieldResult(
        torch.tensor([1]),
        [
            {
                "subgraph_votes": [1, 0],
                "removed_nodes": [4],
                "kept_nodes": 4,
                "subgraph_nodes": [[0, 1], [2, 3]],
            }
        ],
    )
    out = shield_diagnostics(clean, [0, 0, 1], triggered, 1, [[0, 4]])
    assert out["subgraph_acc"] == pytest.approx((1 + 2 + 3) / 9)
    assert out["subgraph_target_no_trigger"] == pytest.approx(3 / 6)  # graphs 0 and 1 only
    assert out["defended_target_no_trigger"] == pytest.approx(1 / 2)
    assert out["subgraph_asr"] == pytest.approx(1 / 2)
    assert out["trigger_filter_trigger_removed"] == pytest.approx(1 / 2)
    assert set(shield_diagnostics(clean, [0, 0, 1], None, None, None)) == {"subgraph_acc"}
    # no clean graph of another class: no floor, subgraph accuracy alone
    assert shield_diagnostics(clean, [1, 1, 1], None, 1, None) == {
        "subgraph_acc": pytest.approx(6 / 9)
    }


def test_shield_diagnostics_gives_any_shield_its_no_trigger_rate():
    """A shield without subgraph votes (GNNsecurer, Prune) still reports the floor; a
    rejection is no target prediction (issue 17: every defense report gives the floor)."""
    from gnnbackdoor.defenses.base import ShieldResult
    from gnnbackdoor.defenses.shielding import REJECTED
    from gnnbackdoor.metrics.shield import shield_diagnostics

    # four clean graphs of classes 0, 0, 0, 1; target 1; one class-0 graph rejected
    plain = ShieldResult(torch.tensor([1, REJECTED, 0, 1]), [{"votes": {"0": 1}}] * 4)
    out = shield_diagnostics(plain, [0, 0, 0, 1], None, 1, None)
    assert out == {"defended_target_no_trigger": pytest.approx(1 / 3)}
    assert shield_diagnostics(plain, [0, 0, 0, 1], None, None, None) == {}
    assert shield_diagnostics(plain, [1, 1, 1, 1], None, 1, None) == {}
