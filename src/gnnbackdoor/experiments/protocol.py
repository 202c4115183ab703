"""The graph-classification protocol of issue 14, in one place: which class each dataset's
backdoor targets, and what a victim built as its paper builds it looks like in a record.

The sweep YAMLs state their target classes (``attack.target_class``); a test checks them
against :data:`PROTOCOL_TARGET_CLASS`, and the pages select protocol rows and
majority-target (sensitivity) rows with :func:`protocol_target`.

Target classes. The developers' guide: a target is not the majority class of the training
graphs unless a sensitivity study says otherwise (a shield or a collapsed model that falls
back on the majority class would otherwise score as attack success). GCleaner's Table II
uses class 1 throughout and GraphProt states none, so the rule is: **class 1 where it is not
the majority; else class 0**. Shares of the whole dataset (the stratified training split
keeps them within a graph or two):

=============  ==========================================  ======
dataset        class shares                                target
=============  ==========================================  ======
AIDS           0: 20.0 %, 1: 80.0 %                        0
DHFR           0: 39.0 %, 1: 61.0 %                        0
NCI1           0: 49.95 %, 1: 50.05 % (2,053 / 2,057)      0
PROTEINS       0: 59.6 %, 1: 40.4 %                        1
ENZYMES        six classes of 16.7 %                       1
COLLAB         0: 52.0 %, 1: 15.5 %, 2: 32.5 %             1
Bitcoin        0: 72.0 %, 1: 28.0 %                        1
Fingerprint4   0: 32.4 %, 1: 31.1 %, 2: 6.6 %, 3: 29.9 %   1
=============  ==========================================  ======

Every attacked record also carries ``target_train_share`` and ``target_is_majority``
(measured on the run's own training split), so a page never has to trust this table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

#: Each graph dataset's protocol target class (see the module docstring for the rule).
PROTOCOL_TARGET_CLASS: dict[str, int] = {
    "AIDS": 0,
    "DHFR": 0,
    "NCI1": 0,
    "PROTEINS": 1,
    "ENZYMES": 1,
    "COLLAB": 1,
    "Bitcoin": 1,
    "Fingerprint4": 1,
}

#: The victim as issue 14 builds it (batch norm; recorded under ``config.model``): a
#: record whose model section lacks it was trained before the protocol landed.
PROTOCOL_VICTIM: dict[str, Any] = {"model.norm": "batch_norm"}


def protocol_target(dataset: str) -> int | None:
    """The protocol's target class for ``dataset`` (``None``: not a protocol dataset, e.g.
    the generated Motifs set, whose runs state their own)."""
    return PROTOCOL_TARGET_CLASS.get(dataset)


def is_protocol_target(record: Mapping[str, Any]) -> bool:
    """Whether an attacked record targets its dataset's protocol class (else it belongs to
    a majority-target sensitivity section). Records of datasets outside the table count as
    protocol rows."""
    target = protocol_target(str(record.get("dataset")))
    attack = (record.get("config") or {}).get("attack") or {}
    return target is None or attack.get("target_class") == target
