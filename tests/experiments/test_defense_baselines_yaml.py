"""experiments/defense_baselines.yaml: empty as it stands; its commented blocks, once
uncommented, resolve (every name registered, every setting in range) and cover each
baseline of GraphProt Tables 1-2 and GCleaner Tables III and VII with the protocol's target
class and 3 seeds. Resolving loads no data and trains nothing."""

from __future__ import annotations

from pathlib import Path

from gnnbackdoor.experiments.protocol import PROTOCOL_TARGET_CLASS
from gnnbackdoor.experiments.runner import identify
from gnnbackdoor.experiments.sweep import load_sweep

PATH = Path(__file__).resolve().parents[2] / "experiments" / "defense_baselines.yaml"


def _uncommented(tmp_path: Path) -> Path:
    lines = PATH.read_text().splitlines()
    start = lines.index("# runs:")
    body = [line[2:] if line.startswith("# ") else line.lstrip("#") for line in lines[start:]]
    out = tmp_path / "baselines.yaml"
    out.write_text("\n".join(body) + "\n")
    return out


def test_the_file_runs_nothing_as_it_stands():
    assert load_sweep(PATH) == []


def test_the_commented_blocks_resolve_and_cover_the_tables(tmp_path):
    specs = load_sweep(_uncommented(tmp_path))
    cells: dict[str, set] = {}
    for spec in specs:
        identity = identify(spec)
        attack = identity.config["attack"]
        assert attack["target_class"] == PROTOCOL_TARGET_CLASS[spec.dataset], spec
        cells.setdefault(spec.defense, set()).add((spec.dataset, spec.model, spec.attack))
    graphprot = {"gnnsecurer", "fine-pruning", "randomized-smoothing"}
    gcleaner = {"abl", "prune", "randomized-smoothing", "ed", "xgbd"}
    assert set(cells) == graphprot | gcleaner
    for name in graphprot:
        for dataset in ("AIDS", "ENZYMES", "DHFR", "PROTEINS", "NCI1", "COLLAB"):
            for model in ("gcn", "sage", "gat"):
                assert (dataset, model, "gta") in cells[name], (name, dataset, model)
            for attack in ("sba", "motif-ba"):
                assert (dataset, "gcn", attack) in cells[name], (name, dataset, attack)
    for name in gcleaner:
        for dataset in ("AIDS", "Bitcoin", "Fingerprint4", "COLLAB"):
            for attack in ("sba", "motif-ba", "exp-ba", "gta"):
                assert (dataset, "gin", attack) in cells[name], (name, dataset, attack)
    assert {spec.seed for spec in specs} == {0, 1, 2}
