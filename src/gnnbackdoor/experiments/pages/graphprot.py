"""``graphprot``: GraphProt-R/T/TF against GTA, SBA and Motif-BA beside GraphProt Tables 1-2."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

from gnnbackdoor.experiments.pages import PAGES
from gnnbackdoor.experiments.pages.common import num, provenance
from gnnbackdoor.experiments.report import fmt, markdown_table, mean_std, reference_table

DATASETS = ["AIDS", "ENZYMES", "DHFR", "NCI1", "PROTEINS", "COLLAB"]
VARIANTS = {
    "graphprot-r": "GraphProt-R",
    "graphprot-t": "GraphProt-T",
    "graphprot-tf": "GraphProt-TF",
}
TABLE1_MODELS = {"gcn": "GCN", "sage": "SAGE", "gat": "GAT"}
#: Victims shown under Table 2 (GCN always; the others when they have records).
TABLE2_MODELS = ["gcn", "gin", "sage", "gat"]
TABLE2_ATTACKS = {"sba": "SBA", "motif-ba": "Motif"}
PROTOCOL = {
    "data.train_fraction": "0.6667",
    "attack.trigger_size": "5",
    "attack.target_class": "1",
}

#: The paper's own summary (abstract and Sec. 1): "average reduction 86.48%" of the ASR and
#: "average reduction 3.49%" of the accuracy; it does not say how they are averaged.
PAPER_QUOTED_ASR_REDUCTION = 86.48
PAPER_QUOTED_ACC_DROP = 3.49
TARGET_ACC_DROP = 3.5
MIN_SEEDS = 3


#: Override of the sensitivity runs whose victims were trained on random subgraphs: those
#: records sit in their own section, never in the paper's tables.
AUGMENTATION = "train.subgraph_augmentation"


#: Settings varied by the Fig. 3 ablations (experiments/graphprot_ablations.yaml): records
#: that set one of them sit in the *Ablations* section, never in the paper's tables.
ABLATION_KEYS = (
    "defense.num_subgraphs",
    "defense.sample_rate",
    "defense.feature_fraction",
    "attack.pattern",
)


def _ablated(record: dict[str, Any]) -> list[str]:
    """The ablation settings ``record`` overrides."""
    return [k for k in ABLATION_KEYS if k in (record.get("overrides") or {})]


def _ours(
    records: list[dict[str, Any]], target: str = "1", augmented: bool = False
) -> list[dict[str, Any]]:
    protocol = {**PROTOCOL, "attack.target_class": target}
    return [
        r
        for r in records
        if r.get("task") == "graph"
        and r.get("defense") in VARIANTS
        and all((r.get("overrides") or {}).get(k) == v for k, v in protocol.items())
        and (float((r.get("overrides") or {}).get(AUGMENTATION, 0)) > 0) == augmented
        and not _ablated(r)
    ]


def _index(records):
    """``{(model, attack, dataset): {defense: [records]}}``."""
    index: dict[tuple, dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        index[(r["model"], r["attack"], r["dataset"])][r["defense"]].append(r)
    return index


def _stat(runs, metric) -> tuple[float, float, int]:
    values = [r["metrics"].get(metric, float("nan")) for r in runs]
    mean, std = mean_std(values)
    return mean * 100, std * 100, len([v for v in values if not math.isnan(v)])


def _per_seed(by_defense: dict[str, list]) -> list[dict[str, Any]]:
    """One record per seed for the figures measured before the shield (identical in the
    three variants' records of a seed)."""
    seen: dict[int, dict] = {}
    for runs in by_defense.values():
        for r in runs:
            seen.setdefault(r["seed"], r)
    return [seen[s] for s in sorted(seen)]


def _text(stat: tuple[float, float, int]) -> str:
    mean, std, n = stat
    return "—" if n == 0 else f"{fmt(mean / 100, std / 100, 100, 1)} ({n})"


def _paper(rows, **keys) -> tuple[float, float]:
    for row in rows:
        if all(row.get(k) == v for k, v in keys.items()):
            return float(row["asr"]), float(row["acc"])
    return float("nan"), float("nan")


def _block(index, paper_rows, model, attack, paper_keys, summary) -> list[list[str]]:
    """Rows (backdoored, clean, R, T, TF) × datasets for one (model, attack)."""
    body = []
    for dataset in DATASETS:
        by_defense = index.get((model, attack, dataset), {})
        seeds = _per_seed(by_defense)
        bd_asr, bd_acc = _stat(seeds, "asr"), _stat(seeds, "backdoored_acc")
        cl_asr, cl_acc = _stat(seeds, "clean_model_asr"), _stat(seeds, "clean_acc")
        p_bd = _paper(paper_rows, defense="Backdoored Model", dataset=dataset, **paper_keys)
        p_cl = _paper(paper_rows, defense="Clean Model", dataset=dataset, **paper_keys)
        for label, asr, acc, paper in (
            ("Backdoored model", bd_asr, bd_acc, p_bd),
            ("Clean model", cl_asr, cl_acc, p_cl),
        ):
            body.append(
                [dataset, label, _text(asr), num(paper[0], 1), _text(acc), num(paper[1], 1), "", ""]
            )
        for defense, title in VARIANTS.items():
            runs = by_defense.get(defense, [])
            asr, acc = _stat(runs, "defended_asr"), _stat(runs, "defended_acc")
            p_def = _paper(paper_rows, defense=title, dataset=dataset, **paper_keys)
            per_graph = "—"
            if runs:
                queried = [
                    r["metrics"]["queried_graphs"]
                    / (r["metrics"]["num_eval_graphs"] + r["metrics"].get("num_triggered", 0))
                    for r in runs
                ]
                per_graph = f"{sum(queried) / len(queried):.1f}"
            removed = _stat(runs, "filter_removed_node_fraction")
            body.append(
                [
                    dataset,
                    title,
                    _text(asr),
                    num(p_def[0], 1),
                    _text(acc),
                    num(p_def[1], 1),
                    per_graph,
                    num(removed[0], 1) if removed[2] else "—",
                ]
            )
            if len(runs) >= MIN_SEEDS and bd_asr[2] >= MIN_SEEDS:  # summary: full rows only
                summary.append(
                    {
                        "variant": title,
                        "ours": (bd_asr[0], asr[0], cl_acc[0], bd_acc[0], acc[0]),
                        "paper": (p_bd[0], p_def[0], p_cl[1], p_bd[1], p_def[1]),
                    }
                )
    return body


HEADER = [
    "dataset",
    "model / defense",
    "ASR (ours)",
    "ASR (paper)",
    "ACC (ours)",
    "ACC (paper)",
    "queries/graph",
    "removed nodes %",
]


def _reduction(rows, which) -> tuple[float, float, float, int]:
    """Mean relative ASR reduction (%), mean accuracy drop vs the clean model and vs the
    backdoored model (points), over ``rows``."""
    red, drop_clean, drop_bd = [], [], []
    for row in rows:
        bd_asr, def_asr, clean_acc, bd_acc, def_acc = row[which]
        if any(math.isnan(v) for v in (bd_asr, def_asr, clean_acc, bd_acc, def_acc)):
            continue
        if bd_asr > 0:
            red.append((bd_asr - def_asr) / bd_asr * 100)
        drop_clean.append(clean_acc - def_acc)
        drop_bd.append(bd_acc - def_acc)
    if not red:
        return float("nan"), float("nan"), float("nan"), 0
    return (
        sum(red) / len(red),
        sum(drop_clean) / len(drop_clean),
        sum(drop_bd) / len(drop_bd),
        len(red),
    )


@PAGES.register("graphprot")
def render(records: list[dict[str, Any]]) -> str:
    ours = _ours(records)
    index = _index(ours)
    table1 = reference_table("graphprot_table1_models_gta.csv")
    table2 = reference_table("graphprot_table2_attacks.csv")
    summary: list[dict[str, Any]] = []
    parts = [
        "# GraphProt: black-box shield against graph backdoors",
        "",
        "GraphProt-R/T/TF (`gnnbackdoor.defenses.graphprot`) in front of victims backdoored by "
        "GTA, SBA and Motif-BA, beside GraphProt Tables 1 and 2. ASR and accuracy in points, "
        "mean ± sample std over seeds (number of seeds in brackets). Generated from records; "
        "see Provenance.",
        "",
        "**Protocol.** 2/3 of the graphs train the victim (a tenth of them held out for early "
        "stopping), 1/3 test it (`data.train_fraction=0.6667`). Training (the paper states "
        "none): the library default (at most 200 epochs, patience 40) on ENZYMES and DHFR; "
        "at most 60 epochs with patience 20 on the larger datasets, to fit our CPU budget "
        "(see *Training* below for what each dataset's records used). Triggers of 5 nodes (SBA: "
        "Erdős–Rényi; GTA: 20 bi-level epochs; Motif-BA: the rarest 5-node motif, never-seen "
        "motifs included (`motif_rule=rarest`)), "
        "injection ratio 0.1, target class 1 (the paper states neither ratio nor target; "
        "the public code of SBA (Zhang et al.) defaults to target 0 and GTA's (Xi et al.) "
        "example runs target 0, which on AIDS is the minority class: see *Sensitivity*). "
        "Shield: N = 5 subgraphs, p = 0.2, r = 0.8, filtering on, as in Sec. 5.2. ASR is "
        "measured on triggered test graphs whose label is not the target; the shield's ASR "
        "is the share of them it labels with the target. *Backdoored model* and *Clean "
        "model* rows are the undefended victims (the clean model's ASR is the trigger's "
        "effect on a victim never poisoned).",
        "",
        "**How we read Sec. 4 (checked line by line against Eq. 1-9 and Alg. 1).** Filter: "
        "spectral clustering of the adjacency into 2 clusters and a 2-component Gaussian "
        "mixture on the features; a node is removed when it is in the smaller cluster of "
        '*both* ("the overlapping segments are considered anomalous"). R: p is the share '
        '*kept* ("ratio of the sampled to all", Eq. 3: ⌊p·|V′|⌋ nodes), so p = 0.2 keeps '
        "a fifth of the filtered nodes. T: spectral clustering of the filtered graph into "
        "⌊|V′|/N⌋ clusters and one random node from each (Eq. 5-6), so a T subgraph also holds "
        "about |V′|/5 nodes and at most one node of any cluster. TF: T, then each subgraph "
        "keeps ⌈r·d⌉ random feature dimensions and zeroes the rest (Eq. 7). Every subgraph is "
        "the subgraph induced on its nodes (Eq. 4, 6). Vote: the most frequent subgraph label, "
        "ties to the smaller index (Eq. 8-9). On AIDS (15.7 nodes on average) a subgraph thus "
        "has 2-3 nodes, on DHFR about 7.",
        "",
        "**Shield decisions the paper leaves open.** Graphs under 5 nodes are not filtered; a "
        "2-way clustering with equal halves names no minority; spectral clustering as "
        "scikit-learn's `SpectralClustering(affinity='precomputed')` (normalised Laplacian, "
        "k-means), re-implemented in NumPy for speed; the feature mixture uses diagonal "
        "covariances plus 1e-3 (one-hot features); subgraphs have at least one node; the "
        "random draws of a graph are seeded by `random_state` and a hash of the graph. "
        "All subgraphs of a batch go to the model in one query (*queries/graph* counts "
        "subgraphs sent per input graph).",
        "",
        "## Table 1: GTA against GCN, SAGE and GAT",
        "",
    ]
    for model, title in TABLE1_MODELS.items():
        rows = [r for r in table1 if r["model"] == title]
        body = _block(index, rows, model, "gta", {"model": title}, summary)
        parts += [f"### {title}", "", markdown_table(HEADER, body), ""]
    parts += [
        "## Table 2: SBA and Motif",
        "",
        "Table 2 does not name its victim model; GCN is measured on every dataset, and the "
        "other models wherever the sweep reached them, each beside the same paper rows.",
        "",
    ]
    for attack, title in TABLE2_ATTACKS.items():
        rows = [r for r in table2 if r["attack"] == title]
        for model in TABLE2_MODELS:
            if model != "gcn" and not any(key[:2] == (model, attack) for key in index):
                continue
            body = _block(index, rows, model, attack, {"attack": title}, summary)
            parts += [f"### {title}, {model.upper()}", "", markdown_table(HEADER, body), ""]

    ours_all = _reduction(summary, "ours")
    paper_all = _reduction(summary, "paper")
    lines = []
    for variant in [*VARIANTS.values(), None]:
        rows = [s for s in summary if variant is None or s["variant"] == variant]
        o, p = _reduction(rows, "ours"), _reduction(rows, "paper")
        lines.append(
            [
                variant or "all",
                o[3],
                num(o[0], 1),
                num(p[0], 1),
                num(o[1], 2),
                num(p[1], 2),
                num(o[2], 2),
                num(p[2], 2),
            ]
        )
    met_asr = not math.isnan(ours_all[0]) and ours_all[0] >= PAPER_QUOTED_ASR_REDUCTION
    met_acc = not math.isnan(ours_all[1]) and ours_all[1] <= TARGET_ACC_DROP
    parts += [
        "## Summary: ASR reduction and accuracy drop",
        "",
        "The paper quotes an *average ASR reduction of 86.48 %* and an *average accuracy "
        "reduction of 3.49 %* without defining either. We define, over every (model, attack, "
        "dataset, variant) row measured here with at least 3 seeds: **ASR reduction** = mean of "
        "(ASR<sub>backdoored</sub> − ASR<sub>shielded</sub>) / ASR<sub>backdoored</sub>, in %; "
        "**accuracy drop** = mean of ACC<sub>clean model</sub> − ACC<sub>shielded</sub>, in "
        "points (also shown against the backdoored model's accuracy, which is what the shield "
        "itself costs). Applied to the paper's own tables, the same definitions give the "
        "*paper* columns below (over the same rows); over all 90 rows of its Tables 1-2 they "
        "give 79.98 % and 3.74 points, so the quoted 86.48 % / 3.49 % follow some other "
        "averaging that no combination we tried reproduces.",
        "",
        markdown_table(
            [
                "variant",
                "rows",
                "ASR reduction % (ours)",
                "(paper)",
                "acc drop vs clean (ours)",
                "(paper)",
                "acc drop vs backdoored (ours)",
                "(paper)",
            ],
            lines,
        ),
        "",
        f"Target: ASR reduction ≥ {PAPER_QUOTED_ASR_REDUCTION} % — "
        f"{'met' if met_asr else 'not met'} ({num(ours_all[0], 1)} %); accuracy drop ≤ "
        f"{TARGET_ACC_DROP} points — {'met' if met_acc else 'not met'} "
        f"({num(ours_all[1], 2)} points). Paper tables over the same rows: "
        f"{num(paper_all[0], 1)} % and {num(paper_all[1], 2)} points.",
        "",
        "**Reading the rows.** (1) AIDS: class 1 is the majority (1,600 of 2,000 graphs) and "
        "the target; its active (class 0) molecules have almost four times as many nodes as the "
        "others, and subgraphs of a fifth of the nodes look like small, inactive ones to a "
        "mean-pooling GCN, so the shielded labels fall to class 1 and the shielded ASR stays "
        "high whatever the trigger; the *Sensitivity* section attacks class 0 instead. "
        "(2) GTA's trigger fools the clean victims as well (see the clean-model ASR): it acts "
        "as an adversarial perturbation that survives subgraph sampling. (3) ENZYMES: the "
        "victims see the 3 one-hot node labels and the 18 node attributes, standardised "
        "(`data.node_attributes=true`; with the labels alone they stayed near 30 % "
        "accuracy, records in `results/archive/graphprot_enzymes_labels_only.jsonl`). "
        "(4) The *Diagnosis* section below measures what the shield does to the trigger and "
        "to the victims, run by run.",
        "",
        *_diagnosis(records),
        _training(ours),
        "",
        _coverage(index),
        "",
        *_sensitivity(records),
        *_augmented_victims(records),
        "The Fig. 3 ablations (N, trigger size and pattern, p, r) are on "
        "[graphprot_ablations.md](graphprot_ablations.md), from the same records file.",
        "",
        provenance(
            ours
            + _ours(records, "0")
            + _ours(records, "1", augmented=True)
            + _ours(records, "0", augmented=True),
            [
                "export GNNBACKDOOR_DATA_MIRROR=../shared/datasets",
                "export GNNBACKDOOR_CLEAN_CACHE=/tmp/clean-cache  # optional",
                "export GNNBACKDOOR_STAGE_CACHE=/tmp/stage-cache  # optional",
                "gnnbackdoor sweep experiments/graphprot.yaml --out results/graphprot --threads 1",
                "gnnbackdoor report results/graphprot --page graphprot "
                "--out docs/reproduction/graphprot.md",
            ],
        ),
    ]
    return "\n".join(parts) + "\n"


def _training(records) -> str:
    caps: dict[str, set] = defaultdict(set)
    for r in records:
        train = (r.get("config") or {}).get("train") or {}
        epochs, patience = train.get("max_epochs", "?"), train.get("patience", "?")
        caps[r["dataset"]].add(f"≤ {epochs} (patience {patience})")
    if not caps:
        return ""
    text = "; ".join(f"{d}: {', '.join(sorted(c))}" for d, c in sorted(caps.items()))
    return f"**Training** (epochs, from the records): {text}."


def _coverage(index) -> str:
    wanted = [(m, "gta", d) for m in TABLE1_MODELS for d in DATASETS]
    wanted += [("gcn", a, d) for a in TABLE2_ATTACKS for d in DATASETS]
    missing, partial = [], []
    for key in wanted:
        by_defense = index.get(key, {})
        counts = [len(by_defense.get(v, [])) for v in VARIANTS]
        label = f"{key[0]}/{key[1]}/{key[2]}"
        if not any(counts):
            missing.append(label)
        elif min(counts) < 3:
            partial.append(f"{label} ({'/'.join(map(str, counts))} seeds R/T/TF)")
    lines = ["## Coverage", ""]
    lines.append(
        f"{len(wanted) - len(missing)} of {len(wanted)} (model, attack, dataset) rows measured."
    )
    if partial:
        lines.append("Fewer than 3 seeds: " + ", ".join(partial) + ".")
    if missing:
        lines.append(
            "Not run (CPU time; the sweep resumes where it stopped): " + ", ".join(missing) + "."
        )
    return "\n".join(lines)


def _sensitivity(records) -> list[str]:
    """Rows of the same protocol with target class 0 (AIDS: the minority class)."""
    index = _index(_ours(records, "0"))
    if not index:
        return []
    body, summary = [], []
    for (model, attack, dataset), by_defense in sorted(index.items()):
        seeds = _per_seed(by_defense)
        bd_asr, cl_acc, bd_acc = (
            _stat(seeds, "asr")[0],
            _stat(seeds, "clean_acc")[0],
            _stat(seeds, "backdoored_acc")[0],
        )
        for defense in VARIANTS:
            runs = by_defense.get(defense, [])
            if runs:
                summary.append(
                    {
                        "ours": (
                            bd_asr,
                            _stat(runs, "defended_asr")[0],
                            cl_acc,
                            bd_acc,
                            _stat(runs, "defended_acc")[0],
                        )
                    }
                )
        row = [
            dataset,
            model,
            attack,
            _text(_stat(seeds, "asr")),
            _text(_stat(seeds, "clean_model_asr")),
            _text(_stat(seeds, "backdoored_acc")),
        ]
        for defense in VARIANTS:
            runs = by_defense.get(defense, [])
            row.append(
                f"{_text(_stat(runs, 'defended_asr'))} / {_text(_stat(runs, 'defended_acc'))}"
            )
        body.append(row)
    reduced = _reduction(summary, "ours")
    return [
        "## Sensitivity: target class 0",
        "",
        "The same victims and triggers with `attack.target_class=0` (on AIDS the minority "
        "class: 400 of 2,000 graphs), and a GIN victim (sum pooling) under the same SBA. A "
        "shield whose subgraph votes fall to the majority class scores a high ASR when the "
        "target is the majority class and a low one when it is not; comparing the two tells "
        "that effect apart from removing the trigger.",
        "",
        markdown_table(
            [
                "dataset",
                "model",
                "attack",
                "ASR backdoored",
                "ASR clean model",
                "ACC backdoored",
                *(f"{t} ASR / ACC" for t in VARIANTS.values()),
            ],
            body,
        ),
        "",
        "Over these rows (same definitions as the summary): ASR reduction "
        f"{num(reduced[0], 1)} %, accuracy drop {num(reduced[1], 2)} points vs the clean "
        f"model ({reduced[3]} rows).",
        "",
    ]


def _variant_sorted(groups: dict[tuple, list]) -> list[tuple[tuple, list]]:
    """Items of ``{(..., defense): runs}`` sorted by the key's other parts, then with the
    variants in :data:`VARIANTS` order."""
    order = list(VARIANTS)
    return sorted(groups.items(), key=lambda kv: (*kv[0][:-1], order.index(kv[0][-1])))


AUGMENTED_COLUMNS = [
    ("clean_acc", "ACC clean model"),
    ("backdoored_acc", "ACC backdoored"),
    ("subgraph_acc", "ACC per subgraph"),
    ("defended_acc", "ACC shielded"),
    ("clean_model_asr", "ASR clean model"),
    ("asr", "ASR backdoored"),
    ("defended_asr", "ASR shielded"),
    ("defended_target_no_trigger", "no-trigger rate shielded"),
]


def _augmented_victims(records) -> list[str]:
    """The same runs with victims trained on random subgraphs half the time, beside the
    plain victims of the same rows: can a victim that has seen such subgraphs classify
    them?"""
    augmented = _ours(records, "1", augmented=True) + _ours(records, "0", augmented=True)
    if not augmented:
        return []
    rows = {
        (r["dataset"], r["model"], r["attack"], r["overrides"]["attack.target_class"])
        for r in augmented
    }
    plain = _ours(records, "1") + _ours(records, "0")
    groups: dict[tuple, list] = defaultdict(list)
    for r in augmented + plain:
        row = (r["dataset"], r["model"], r["attack"], r["overrides"]["attack.target_class"])
        if row in rows:
            share = r["overrides"].get(AUGMENTATION, "0")
            groups[(*row, share, r["defense"])].append(r)
    body = []
    for (dataset, model, attack, target, share, defense), runs in _variant_sorted(groups):
        body.append(
            [
                dataset,
                model,
                attack,
                target,
                share,
                VARIANTS[defense],
                *(_text(_stat(runs, key)) for key, _ in AUGMENTED_COLUMNS),
            ]
        )
    return [
        "## Sensitivity: victims trained on subgraphs",
        "",
        "GraphProt's accuracy needs victims that classify node-sampled subgraphs of a fifth of "
        "a graph; ours vote the majority class on them (*Diagnosis*). These runs train the "
        f"clean and the backdoored victims with `{AUGMENTATION}=0.5`: each epoch, each "
        "training graph is replaced with probability 0.5 by the subgraph induced on a random "
        "20 % of its nodes (GraphProt's sample rate). Not the paper's protocol: it asks "
        "whether a victim that has seen such subgraphs can classify them, and what that does "
        "to the backdoor. *augmentation* 0 rows are the plain victims of the same rows. "
        "Read *ASR shielded* against *ASR clean model*: a trigger that also fools a victim "
        "never poisoned acts as an adversarial perturbation, which no vote over clean-looking "
        "subgraphs is meant to remove.",
        "",
        markdown_table(
            [
                "dataset",
                "model",
                "attack",
                "target",
                "augmentation",
                "variant",
                *(title for _, title in AUGMENTED_COLUMNS),
            ],
            body,
        ),
        "",
    ]


DIAGNOSIS_COLUMNS = [
    ("backdoored_acc", "ACC backdoored"),
    ("subgraph_acc", "ACC per subgraph"),
    ("defended_acc", "ACC shielded"),
    ("asr", "ASR backdoored"),
    ("subgraph_asr", "ASR per subgraph"),
    ("defended_asr", "ASR shielded"),
    ("subgraph_target_no_trigger", "no-trigger rate per subgraph"),
    ("defended_target_no_trigger", "no-trigger rate shielded"),
    ("trigger_filter_trigger_removed", "trigger nodes removed"),
    ("trigger_filter_other_removed", "other nodes removed"),
    ("trigger_subgraph_two_trigger", "subgraphs with ≥ 2 trigger nodes"),
    ("trigger_subgraph_full_trigger", "subgraphs with the full trigger"),
]


def _diagnosis(records) -> list[str]:
    """Per-subgraph vote rates and trigger coverage, from records that carry them."""
    rows = [
        r
        for r in _ours(records, "1") + _ours(records, "0")
        if "subgraph_acc" in (r.get("metrics") or {})
    ]
    if not rows:
        return []
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        target = r["overrides"]["attack.target_class"]
        groups[(r["dataset"], r["model"], r["attack"], target, r["defense"])].append(r)
    body = []
    for (dataset, model, attack, target, defense), runs in _variant_sorted(groups):
        mean_nodes = _stat(runs, "trigger_subgraph_trigger_nodes")
        body.append(
            [
                dataset,
                model,
                attack,
                target,
                VARIANTS[defense],
                *(_text(_stat(runs, key)) for key, _ in DIAGNOSIS_COLUMNS),
                fmt(mean_nodes[0] / 100, mean_nodes[1] / 100) if mean_nodes[2] else "—",
            ]
        )
    return [
        "## Diagnosis: what the subgraphs and the filter do",
        "",
        "From the same runs, without extra queries. *ACC per subgraph*: share of the "
        "subgraph votes on clean test graphs that name the graph's true label. *ASR per "
        "subgraph*: share of the votes on triggered graphs that name the target. *No-trigger "
        "rate*: share of the votes (per subgraph) and of the shielded labels (shielded) that "
        "name the target on the *clean* test graphs of the other classes, i.e. the ASR the "
        "shield would score if the trigger did nothing; a shield has neutralised the trigger "
        "when its ASR is no higher than that. The vote only aggregates the votes graph by "
        "graph: where most subgraphs of a graph are wrong, so is the shield. *Trigger nodes "
        "removed* and *other nodes removed*: the filter's removal rates on the triggered "
        "graphs (it is meant to remove the first, not the second); the last three columns "
        "count trigger nodes inside the sampled subgraphs. Points, mean ± "
        "std over seeds (records without a column show —); the last column is a mean count.",
        "",
        markdown_table(
            [
                "dataset",
                "model",
                "attack",
                "target",
                "variant",
                *(title for _, title in DIAGNOSIS_COLUMNS),
                "trigger nodes per subgraph",
            ],
            body,
        ),
        "",
        *_findings(groups),
    ]


def _group_mean(runs, metric) -> float:
    return _stat(runs, metric)[0]


def _findings(groups: dict[tuple, list]) -> list[str]:
    """What the SBA and Motif-BA diagnosis rows show, worded from the numbers (nothing
    typed by hand); GTA rows stay in the table only (its trigger is being reworked)."""
    lines = []
    groups = {key: runs for key, runs in groups.items() if key[2] in TABLE2_ATTACKS}
    removal = [
        (
            _group_mean(runs, "trigger_filter_trigger_removed"),
            _group_mean(runs, "trigger_filter_other_removed"),
        )
        for runs in groups.values()
    ]
    removal = [(t, o) for t, o in removal if not (math.isnan(t) or math.isnan(o))]
    if removal:
        fewer = sum(t < o for t, o in removal)
        lines.append(
            f"*Filter (SBA, Motif-BA).* In {fewer} of {len(removal)} rows the filter removed "
            f"a smaller share of the trigger's nodes than of the other nodes (trigger nodes "
            f"{min(t for t, _ in removal):.1f}-{max(t for t, _ in removal):.1f} %, others "
            f"{min(o for _, o in removal):.1f}-{max(o for _, o in removal):.1f} %): SBA and "
            "Motif-BA triggers keep the host's node features, so the feature mixture does not "
            "single them out, and the trigger nodes keep their edges to the rest of the "
            "graph, so the spectral 2-way split seldom puts them on its small side."
        )
    structure = [
        (
            _group_mean(runs, "trigger_subgraph_two_trigger"),
            _group_mean(runs, "trigger_subgraph_full_trigger"),
        )
        for (_, _, _, _, defense), runs in groups.items()
        if defense != "graphprot-r"
    ]
    structure = [(t, f) for t, f in structure if not (math.isnan(t) or math.isnan(f))]
    if structure:
        lines.append(
            "*Sampling (SBA, Motif-BA).* T and TF subgraphs hold at most one node of any "
            "spectral cluster, and a dense trigger tends to form one cluster: at most "
            f"{max(t for t, _ in structure):.1f} % of their subgraphs hold two or more trigger "
            f"nodes and at most {max(f for _, f in structure):.1f} % the full trigger (R: see "
            "the table)."
        )
    near = []
    for runs in groups.values():
        asr = _group_mean(runs, "defended_asr")
        base = _group_mean(runs, "defended_target_no_trigger")
        if not (math.isnan(asr) or math.isnan(base)):
            near.append(asr - base)
    if near:
        verdict = (
            "so the shield's ASR is essentially the rate at which it names the target for "
            "clean graphs too: what is left of the ASR is not the trigger"
            if max(near) <= 10
            else "so in some rows the trigger still adds to the shield's ASR"
        )
        lines.append(
            "*Victims (SBA, Motif-BA).* Shielded ASR minus the shielded no-trigger rate ranges "
            f"over {min(near):+.1f} to {max(near):+.1f} points across {len(near)} rows, {verdict}. "
            "The victims were trained on whole graphs and label subgraphs of a fifth of the "
            "nodes mostly with one class (compare *ACC per subgraph* with the majority share "
            "of the test set, 80 % on AIDS); the vote then returns that class for most graphs, "
            "which scores a high ASR when it is the target and costs the accuracy of the other "
            "classes either way."
        )
    return [*(f"{line}\n" for line in lines)]
