"""experiments/defense_baselines.yaml: every run resolves (names registered, settings in
range) with the protocol's target class and 3 seeds, the blocks cover each baseline of
GraphProt Tables 1-2 and GCleaner Tables III and VII, and each baseline runs on exactly the
victims its paper's own defense was judged on: a run of experiments/graphprot.yaml (the
GraphProt baselines) or experiments/gcleaner.yaml (the GCleaner baselines) with the same
dataset, model, attack and seed resolves to equal data, model, training and attack settings,
so the stage cache (stage_cache.cache_path hashes those) shares the victims. Resolving loads
no data and trains nothing."""

from __future__ import annotations

import json
from pathlib import Path

from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS
from gnnbackdoor.experiments.runner import RunSpec, identify
from gnnbackdoor.experiments.sweep import load_sweep

EXPERIMENTS = Path(__file__).resolve().parents[2] / "experiments"
PATH = EXPERIMENTS / "defense_baselines.yaml"
GRAPHPROT = {"gnnsecurer", "fine-pruning", "randomized-smoothing"}
GCLEANER = {"abl", "prune", "randomized-smoothing", "ed", "xgbd"}
#: The victims' sections of a run's identity (the stage cache's key covers exactly these).
VICTIM = ("data", "model", "train", "attack")


def _victims(sweep: Path) -> dict[tuple, set[str]]:
    """``(dataset, model, attack, seed) -> {canonical JSON of the victim sections}`` over the
    attacked runs of ``sweep`` (one identify per distinct spelling)."""
    found: dict[tuple, set[str]] = {}
    seen: set[tuple] = set()
    for spec in load_sweep(sweep):
        if spec.attack is None:
            continue
        victim_only = {k: v for k, v in spec.overrides.items() if not k.startswith("defense.")}
        spelling = (
            spec.dataset,
            spec.model,
            spec.attack,
            spec.seed,
            tuple(sorted(victim_only.items())),
        )
        if spelling in seen:
            continue
        seen.add(spelling)
        found.setdefault(spelling[:4], set()).add(_victim_of(spec))
    return found


def _victim_of(spec: RunSpec) -> str:
    config = identify(spec, runtime={"threads": 1}).config
    return json.dumps({k: config[k] for k in VICTIM}, sort_keys=True, default=str)


def test_every_run_resolves_and_the_blocks_cover_the_tables():
    specs = load_sweep(PATH)
    assert specs, "defense_baselines.yaml has no runs"
    cells: dict[str, set] = {}
    for spec in specs:
        attack = identify(spec).config["attack"]
        assert attack["target_class"] == PROTOCOL_TARGET_CLASS[spec.dataset], spec
        cells.setdefault(spec.defense, set()).add((spec.dataset, spec.model, spec.attack))
    assert set(cells) == GRAPHPROT | GCLEANER
    for name in GRAPHPROT:
        for dataset in ("AIDS", "ENZYMES", "DHFR", "PROTEINS", "NCI1", "COLLAB"):
            for model in ("gcn", "sage", "gat"):
                assert (dataset, model, "gta") in cells[name], (name, dataset, model)
            for attack in ("sba", "motif-ba"):
                assert (dataset, "gcn", attack) in cells[name], (name, dataset, attack)
    for name in GCLEANER:
        for dataset in ("AIDS", "Bitcoin", "Fingerprint4", "COLLAB"):
            for attack in ("sba", "motif-ba", "exp-ba", "gta"):
                assert (dataset, "gin", attack) in cells[name], (name, dataset, attack)
    assert {spec.seed for spec in specs} == {0, 1, 2}
    assert len({spec.key() for spec in specs}) == len(specs), "a run is listed twice"


def test_the_first_blocks_are_graphprots_gcn_rows_on_aids_and_dhfr_then_gcleaners_aids():
    specs = load_sweep(PATH)
    first = [(s.dataset, s.model) for s in specs[:54]]
    assert set(first) == {("AIDS", "gcn"), ("DHFR", "gcn")}
    following = {(s.dataset, s.model, s.defense) for s in specs[54 : 54 + 60]}
    assert {(d, m) for d, m, _ in following} == {("AIDS", "gin")}
    assert {d for _, _, d in following} == GCLEANER
    tail = [s.dataset for s in specs]
    first_collab = tail.index("COLLAB")
    assert set(tail[first_collab:]) == {"COLLAB"}, "COLLAB comes last"


def test_each_baseline_runs_on_its_papers_victims():
    specs = load_sweep(PATH)
    papers = {"graphprot": _victims(EXPERIMENTS / "graphprot.yaml")}
    papers["gcleaner"] = _victims(EXPERIMENTS / "gcleaner.yaml")
    checked: dict[tuple, str] = {}
    for spec in specs:
        cell = (spec.dataset, spec.model, spec.attack, spec.seed)
        paper = "gcleaner" if spec.model == "gin" else "graphprot"
        # GraphProt's baselines on its Table 1-2 victims (GCN, SAGE, GAT); GCleaner's on GIN
        assert spec.defense in (GCLEANER if paper == "gcleaner" else GRAPHPROT), spec
        victim = checked.get((*cell, paper)) or _victim_of(spec)
        checked[(*cell, paper)] = victim
        assert victim in papers[paper].get(cell, set()), (
            f"{spec.dataset} {spec.model} {spec.attack} seed {spec.seed} ({spec.defense}): no "
            f"run of {paper}.yaml trains this victim"
        )


def test_the_victim_comparison_sees_a_changed_setting():
    """The check above can fail: a training cap the papers' sweeps no longer use is a
    different victim."""
    spec = load_sweep(PATH)[0]
    papers = _victims(EXPERIMENTS / "graphprot.yaml")
    cell = (spec.dataset, spec.model, spec.attack, spec.seed)
    assert _victim_of(spec) in papers[cell]
    capped = RunSpec(
        spec.task,
        spec.dataset,
        spec.model,
        spec.attack,
        spec.defense,
        spec.seed,
        {**spec.overrides, "train.max_epochs": "60", "train.patience": "20"},
    )
    assert _victim_of(capped) not in papers[cell]
