"""The graphprot page renders from records alone: ours beside GraphProt Tables 1-2, the
summary's ASR reduction and accuracy drop computed from the rows shown."""

from __future__ import annotations

from gnnbackdoor.experiments.pages import PAGES, load_pages
from gnnbackdoor.experiments.pages.common import nested

SETTINGS = {
    "data.train_fraction": 0.6667,
    "attack.trigger_size": 5,
    "attack.target_class": 0,
    "model.norm": "batch_norm",
    "train.max_epochs": 60,
    "train.patience": 20,
    "defense.num_subgraphs": 5,
    "defense.sample_rate": 0.2,
    "defense.feature_fraction": 0.8,
}


def record(seed: int, defense: str, defended_asr: float) -> dict:
    return {
        "task": "graph",
        "dataset": "AIDS",
        "model": "gcn",
        "attack": "gta",
        "defense": defense,
        "seed": seed,
        "overrides": {"train.max_epochs": "60"},  # information only
        "metrics": {
            "clean_acc": 0.9,
            "backdoored_acc": 0.88,
            "asr": 1.0,
            "clean_model_asr": 0.2,
            "defended_acc": 0.85,
            "defended_asr": defended_asr,
            "num_eval_graphs": 10,
            "num_triggered": 5,
            "queried_graphs": 75,
            "filter_removed_node_fraction": 0.1,
        },
        "config": nested(SETTINGS),
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


def test_page_rows_summary_and_coverage():
    load_pages()
    records = [
        record(seed, defense, asr)
        for seed in range(3)
        for defense, asr in [("graphprot-r", 0.3), ("graphprot-t", 0.2), ("graphprot-tf", 0.1)]
    ]
    text = PAGES.get("graphprot")(records)
    lines = text.splitlines()
    backdoored = next(line for line in lines if line.startswith("| AIDS | Backdoored model"))
    assert "100.0 ± 0.0 (3)" in backdoored and "| 99.8 |" in backdoored  # paper, GCN GTA
    tf = next(line for line in lines if line.startswith("| AIDS | GraphProt-TF | 10.0"))
    assert "| 5.3 |" in tf and "85.0 ± 0.0 (3)" in tf and "| 5.0 |" in tf  # 75/15 queries
    summary = next(line for line in lines if line.startswith("| all | ours | 3 |"))
    # relative and absolute: 100 - mean(30, 20, 10); clean 90 - shielded 85; 88 - 85;
    # DER: mean of (0.7 - 0.03 + 1) / 2, (0.8 - 0.03 + 1) / 2, (0.9 - 0.03 + 1) / 2
    assert summary.endswith("| 80.0 | 80.0 | 5.00 | 3.00 | 88.5 |")
    assert "†" not in text.split("## Table 1")[1].split("## Summary")[0]
    assert "1 of 30 (model, attack, dataset) rows of Tables 1-2 measured" in text
    assert "AIDS: ≤ 60 (patience 20)" in text
    other = dict(records[0], config=nested({**SETTINGS, "data.train_fraction": 0.8}))
    assert PAGES.get("graphprot")([*records, other]).count("(3)") == text.count("(3)")


def test_diagnosis_table_only_from_records_that_carry_the_diagnostics():
    load_pages()
    plain = [record(0, "graphprot-r", 0.3)]
    assert "## Diagnosis" not in PAGES.get("graphprot")(plain)
    diagnosed = []
    for seed, removed in enumerate([0.01, 0.03]):
        r = dict(record(seed, "graphprot-t", 0.2), attack="sba")
        r["metrics"] = {
            **r["metrics"],
            "subgraph_acc": 0.8,
            "subgraph_asr": 0.25,
            "trigger_filter_trigger_removed": removed,
            "trigger_filter_other_removed": 0.1,
            "trigger_subgraph_trigger_nodes": 0.5 + seed,
            "trigger_subgraph_two_trigger": 0.1,
            "trigger_subgraph_full_trigger": 0.0,
            "defended_target_no_trigger": 0.15,
        }
        diagnosed.append(r)
    text = PAGES.get("graphprot")(plain + diagnosed)
    assert "## Diagnosis" in text
    row = next(line for line in text.splitlines() if line.startswith("| AIDS | gcn | sba | 0 |"))
    assert (
        "GraphProt-T" in row
        and "GraphProt-R" not in text.split("## Diagnosis")[1].split("\n## ")[0]
    )
    assert "80.0 ± 0.0 (2)" in row and "25.0 ± 0.0 (2)" in row
    assert "2.0 ± 1.4 (2)" in row  # trigger nodes removed: 1 % and 3 %
    assert row.rstrip(" |").endswith("1.00 ± 0.71")  # 0.5 and 1.5 trigger nodes per subgraph
    assert "In 1 of 1 rows the filter removed a smaller share" in text
    assert "at most 10.0 % of their subgraphs hold two or more trigger nodes" in text
    assert "ranges over +5.0 to +5.0 points across 1 rows, so the shield's ASR is" in text
    gta = [dict(r, attack="gta") for r in diagnosed]
    assert "In 1 of 1 rows" not in PAGES.get("graphprot")(plain + gta)  # findings: SBA/Motif


def ablated(seed: int, defense: str, defended_asr: float, **settings) -> dict:
    r = record(seed, defense, defended_asr)
    r["config"] = nested({**SETTINGS, **settings})
    return r


def test_ablation_records_stay_out_of_the_paper_tables_and_fill_their_own_page():
    load_pages()
    protocol = [record(seed, "graphprot-r", 0.3) for seed in range(3)]
    n_one = [ablated(s, "graphprot-r", 0.9, **{"defense.num_subgraphs": 1}) for s in range(3)]
    p_one = [ablated(s, "graphprot-r", 0.5, **{"defense.sample_rate": 1.0}) for s in range(2)]
    main = PAGES.get("graphprot")(protocol)
    assert PAGES.get("graphprot")([*protocol, *n_one, *p_one]) == main

    page = PAGES.get("graphprot-ablations")([*protocol, *n_one, *p_one])
    panel_n = page.split("### (a)")[1].split("###")[0]
    rows = [line for line in panel_n.splitlines() if line.startswith("| 0 |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "5 (protocol)"]
    assert "90.0 ± 0.0 (3)" in rows[0] and "30.0 ± 0.0 (3)" in rows[1]
    ends = "Target 0, from `defense.num_subgraphs` = 1 to 5: GraphProt-R ASR 90.0 → 30.0"
    assert ends in panel_n
    panel_p = page.split("### (d) Sample rate")[1].split("###")[0]
    assert "50.0 ± 0.0 (2)" in panel_p and "0.2 (protocol)" in panel_p
    assert "### (b)" not in page  # the protocol's size alone is no ablation
    assert "from 8 records" in page


def test_ablation_page_without_records_says_so():
    load_pages()
    assert "No ablation records." in PAGES.get("graphprot-ablations")(
        [record(0, "graphprot-r", 0.3)]
    )


def test_majority_target_rows_go_to_sensitivity_and_old_victims_are_marked():
    load_pages()
    majority = [
        ablated(s, d, 0.9, **{"attack.target_class": 1})
        for s in range(3)
        for d in ("graphprot-r", "graphprot-t", "graphprot-tf")
    ]
    text = PAGES.get("graphprot")(majority)
    main = text.split("## Summary")[0]
    assert "100.0 ± 0.0 (3)" not in main  # no row of the main tables
    sensitivity = text.split("## Sensitivity: majority target")[1].split("\n## ")[0]
    assert "AIDS (class 1)" in sensitivity
    assert "| all | ours | 3 | 10.0 | 10.0 | 5.00 | 3.00 |" in sensitivity

    old = [
        ablated(s, "graphprot-r", 0.5, **{"model.norm": "none"})
        for s in range(3)  # victims before issue 14
    ]
    text = PAGES.get("graphprot")(old)
    assert "| AIDS† | Backdoored model |" in text and "(1 of 1 (model, attack, dataset)" in text
    assert "with the protocol's target class, 1 of them on victims before issue 14" in text
    assert "AIDS: ≤ 60 (patience 20) †" in text
    new = [record(s, "graphprot-r", 0.3) for s in range(3)]
    text = PAGES.get("graphprot")(old + new)
    assert "AIDS†" not in text and "| AIDS | GraphProt-R | 30.0 ± 0.0 (3) |" in text


def test_sensitivity_sections_without_records_say_how_to_measure_them():
    load_pages()
    text = PAGES.get("graphprot")([record(s, "graphprot-r", 0.3) for s in range(3)])
    for heading in ("majority target", "victims trained on subgraphs"):
        section = text.split(f"## Sensitivity: {heading}")[1].split("\n## ")[0]
        assert "*No records yet.*" in section
        assert "gnnbackdoor sweep experiments/graphprot.yaml" in section


def test_rows_that_did_not_implant_are_listed_not_averaged():
    load_pages()
    runs = [record(s, "graphprot-r", 0.3) for s in range(3)]
    for r in runs[:2]:
        r["metrics"] = {**r["metrics"], "asr": 0.3}  # below 50 % in two seeds
    text = PAGES.get("graphprot")(runs)
    assert "| all | ours | 0 |" in text
    assert "| AIDS | gcn | gta | implanted in 1 of 3 seeds |" in text


def clean_run(
    seed: int,
    rate: float,
    acc: float,
    dataset: str = "AIDS",
    model: str = "gcn",
    pool: str | None = None,
) -> dict:
    settings = {k: v for k, v in SETTINGS.items() if not k.startswith("attack.")}
    if pool is not None:
        settings["model.pool"] = pool
    return {
        "task": "graph",
        "dataset": dataset,
        "model": model,
        "attack": None,
        "defense": "graphprot-r",
        "seed": seed,
        "metrics": {"clean_acc": 0.9, "defended_acc": acc},
        "config": {**nested({**settings, "defense.sample_rate": rate}), "attack": None},
        "versions": {"git_commit": "abc", "torch": "t", "torch_geometric": "p"},
    }


def test_accuracy_section_per_rate_with_the_best_operating_point():
    load_pages()
    empty = PAGES.get("graphprot")([record(0, "graphprot-r", 0.3)])
    section = empty.split("## GraphProt's accuracy on clean victims")[1].split("\n## ")[0]
    assert "*No records yet.*" in section
    assert "gnnbackdoor sweep experiments/graphprot_accuracy.yaml" in section

    runs = [
        clean_run(s, p, acc)
        for s in range(3)
        for p, acc in [(0.1, 0.5), (0.2, 0.6), (0.5, 0.885), (0.9, 0.89), (1.0, 0.9)]
    ]
    runs += [clean_run(s, 0.2, 0.4, dataset="DHFR") for s in range(3)]
    text = PAGES.get("graphprot")(runs)
    assert "(3)" not in text.split("## Summary")[0]  # no attack: not in the paper's tables
    section = text.split("## GraphProt's accuracy on clean victims")[1].split("\n## ")[0]
    aids = next(line for line in section.splitlines() if line.startswith("| AIDS |"))
    cells = aids.split(" | ")
    assert cells[2] == "90.0 ± 0.0" and cells[3] == "50.0 ± 0.0" and cells[4] == "60.0 ± 0.0"
    assert cells[-2] == "0.5" and cells[-1].startswith("92.4")  # paper: GCN clean, AIDS
    dhfr = next(line for line in section.splitlines() if line.startswith("| DHFR |"))
    assert "| 0.2 (none within 2) |" in dhfr
    nci1 = next(line for line in section.splitlines() if line.startswith("| NCI1 |"))
    assert "no records yet" in nci1
    assert "Of 2 (dataset, model) victims measured with their registered readout, 1 have" in section
    assert "and 0 at the paper's p = 0.2" in section


def test_accuracy_section_names_a_victim_with_another_readout_and_compares_the_two():
    load_pages()
    runs = [
        clean_run(s, p, acc, dataset="PROTEINS", model="gin", pool=pool)
        for s in range(3)
        for pool, accs in [("sum", (0.4, 0.9)), ("mean", (0.8, 0.9))]
        for p, acc in zip((0.2, 1.0), accs, strict=True)
    ]
    text = PAGES.get("graphprot")(runs)
    section = text.split("## GraphProt's accuracy on clean victims")[1].split("\n## ")[0]
    gin = section.split("### GIN\n")[1].split("###")[0]
    mean = section.split("### GIN (MEAN READOUT)\n")[1].split("**Readout.**")[0]
    assert "| PROTEINS | 3 | 90.0 ± 0.0 | — | 40.0 ± 0.0 |" in gin
    assert "| PROTEINS | 3 | 90.0 ± 0.0 | — | 80.0 ± 0.0 |" in mean
    assert "no records yet" in gin and "no records yet" not in mean  # variant: measured only
    # the variant stays out of the registered victims' count
    assert "Of 1 (dataset, model) victims measured with their registered readout" in section
    line = next(x for x in section.splitlines() if x.startswith("| PROTEINS | GIN |"))
    assert line.split(" | ")[2:] == [
        "sum", "mean", "90.0 ± 0.0", "40.0 ± 0.0", "50.0",
        "90.0 ± 0.0", "80.0 ± 0.0", "10.0 |",
    ]  # fmt: skip
    assert "Of 1 (dataset, model) victims compared" in section
    assert "more than 2 points smaller than the registered readout's on 1, within" in section
    alike = [
        clean_run(s, p, acc, dataset="DHFR", model="gin", pool=pool)
        for s in range(3)
        for pool, accs in [("sum", (0.5, 0.9)), ("mean", (0.51, 0.9))]
        for p, acc in zip((0.2, 1.0), accs, strict=True)
    ]
    both = PAGES.get("graphprot")(runs + alike)
    assert "Of 2 (dataset, model) victims compared" in both
    assert "smaller than the registered readout's on 1, within 2 points on 1 and" in both
    without = PAGES.get("graphprot")([r for r in runs if r["config"]["model"]["pool"] == "sum"])
    assert "**Readout.**" not in without and "MEAN READOUT" not in without
