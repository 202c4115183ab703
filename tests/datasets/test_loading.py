"""Dataset loading: generated defaults offline, the mirror (copy, ``.xz``, never written),
clear errors; and a smoke test that loads every dataset of the real mirror."""

from __future__ import annotations

import lzma
import os
from pathlib import Path

import pytest
import torch

from gnnbackdoor.datasets import DATASETS, DataLocation, load_dataset
from gnnbackdoor.datasets import mirror as mirror_module
from gnnbackdoor.datasets.mirror import stage_raw_files
from gnnbackdoor.errors import ConfigError, DatasetNotFoundError


def test_generated_defaults_need_no_files(offline_location):
    sbm = load_dataset("SBM", offline_location)
    assert sbm.num_nodes == 240 and sbm.x.shape == (240, 32)
    assert torch.equal(sbm.edge_index, load_dataset("sbm", offline_location).edge_index)
    motifs = load_dataset("Motifs", offline_location)
    assert len(motifs) == 300
    assert {int(g.y) for g in motifs} == {0, 1, 2}
    assert all(g.x.shape[1] == 8 for g in motifs)


def test_mirror_is_copied_and_xz_decompressed_without_writing_into_it(tmp_path):
    mirror = tmp_path / "mirror"
    (mirror / "Toy" / "raw").mkdir(parents=True)
    (mirror / "Toy" / "raw" / "plain.txt").write_text("1,2\n")
    with lzma.open(mirror / "Toy" / "raw" / "big.txt.xz", "wt") as handle:
        handle.write("3,4\n")
    before = sorted(p.name for p in (mirror / "Toy" / "raw").iterdir())
    os.chmod(mirror / "Toy" / "raw", 0o555)
    try:
        root = stage_raw_files("Toy", ["plain.txt", "big.txt"], tmp_path / "cache", mirror, False)
    finally:
        os.chmod(mirror / "Toy" / "raw", 0o755)
    assert (root / "Toy" / "raw" / "big.txt").read_text() == "3,4\n"
    assert (root / "Toy" / "raw" / "plain.txt").read_text() == "1,2\n"
    assert sorted(p.name for p in (mirror / "Toy" / "raw").iterdir()) == before


def _toy_mirror(tmp_path: Path) -> Path:
    mirror = tmp_path / "mirror"
    (mirror / "Toy" / "raw").mkdir(parents=True)
    (mirror / "Toy" / "raw" / "plain.txt").write_text("1,2\n")
    with lzma.open(mirror / "Toy" / "raw" / "big.txt.xz", "wt") as handle:
        handle.write("3,4\n")
    return mirror


def test_two_writers_staging_one_dataset_at_once_both_succeed(tmp_path, monkeypatch):
    # Two sweeps started together on a fresh cache both copy the raw files: here the second
    # copies a file completely while the first is half-way through the same file. Each must
    # write its own temporary file, so neither renames the other's away.
    mirror = _toy_mirror(tmp_path)
    copy = mirror_module.shutil.copyfileobj
    interleaved: list[str] = []

    def copy_with_a_second_writer(src, dst, length=0):
        if not interleaved:
            interleaved.append("second writer ran")
            stage_raw_files("Toy", ["plain.txt", "big.txt"], tmp_path / "cache", mirror, False)
        copy(src, dst, length)

    monkeypatch.setattr(mirror_module.shutil, "copyfileobj", copy_with_a_second_writer)
    root = stage_raw_files("Toy", ["plain.txt", "big.txt"], tmp_path / "cache", mirror, False)
    assert interleaved == ["second writer ran"]
    raw = root / "Toy" / "raw"
    assert (raw / "plain.txt").read_text() == "1,2\n"
    assert (raw / "big.txt").read_text() == "3,4\n"
    assert sorted(p.name for p in raw.iterdir()) == ["big.txt", "plain.txt"]  # no temp left


def test_a_copy_that_fails_is_one_line_naming_mirror_and_cache(tmp_path, monkeypatch):
    # An unreadable mirror file or a full disk: an OSError while copying (root reads any
    # file, so the failure is injected rather than made with chmod).
    mirror = _toy_mirror(tmp_path)

    def refuse(src, dst, length=0):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mirror_module.shutil, "copyfileobj", refuse)
    with pytest.raises(DatasetNotFoundError) as info:
        stage_raw_files("Toy", ["plain.txt", "big.txt"], tmp_path / "cache", mirror, False)
    message = str(info.value)
    assert "plain.txt" in message and str(mirror) in message and "Permission denied" in message
    assert "\n" not in message
    assert list((tmp_path / "cache" / "Toy" / "raw").iterdir()) == []  # no temporary file left


def test_missing_files_name_the_mirror_variable_and_expected_files(offline_location):
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("Cora", offline_location)
    message = str(info.value)
    assert "GNNBACKDOOR_DATA_MIRROR" in message and "ind.cora.x" in message
    assert "\n" not in message


def test_no_mirror_and_no_download_is_a_clear_error(tmp_path):
    location = DataLocation(cache_dir=tmp_path, mirror_dir=None, allow_download=False)
    with pytest.raises(DatasetNotFoundError, match="GNNBACKDOOR_DATA_MIRROR"):
        load_dataset("AIDS", location)


LINK_DATASETS = {"Cora": 2708, "CiteSeer": 3327, "Cora_ML": 2995, "Cora_ML_LCC": 2810, "CS": 18333}
GRAPH_DATASETS = {
    "AIDS": 2000,
    "ENZYMES": 600,
    "DHFR": 756,
    "NCI1": 4110,
    "PROTEINS": 1113,
    "Fingerprint": 2149,  # 2,800 in the files, less the 651 without nodes (dropped at load)
    "MUTAG": 188,
    "Bitcoin": 1174,
    "COLLAB": 5000,
}


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "num_nodes"), sorted(LINK_DATASETS.items()))
def test_every_link_dataset_of_the_mirror_loads(real_location, name, num_nodes):
    graph = load_dataset(name, real_location)
    assert graph.num_nodes == num_nodes
    assert graph.x.size(0) == num_nodes and graph.edge_index.size(0) == 2


@pytest.mark.realdata
@pytest.mark.parametrize(("name", "num_graphs"), sorted(GRAPH_DATASETS.items()))
def test_every_graph_dataset_of_the_mirror_loads(real_location, name, num_graphs):
    graphs = load_dataset(name, real_location)
    assert len(graphs) == num_graphs
    widths = {g.x.size(1) for g in graphs}
    assert len(widths) == 1 and widths.pop() > 0
    assert all(g.y.shape == (1,) and g.x.dtype == torch.float for g in graphs[:50])


@pytest.mark.realdata
def test_node_attributes_are_appended_on_request(real_location):
    labels_only = load_dataset("ENZYMES", real_location)
    with_attributes = DATASETS.get("ENZYMES")().with_node_attributes().load(real_location)
    assert labels_only[0].x.shape[1] == 3 and with_attributes[0].x.shape[1] == 21
    assert torch.equal(with_attributes[0].x[:, -3:], labels_only[0].x)


def test_node_attributes_of_a_dataset_without_them_is_an_error():
    with pytest.raises(ConfigError, match="no node attributes"):
        DATASETS.get("NCI1")().with_node_attributes()


@pytest.mark.realdata
def test_fingerprint4_has_gcleaners_class_counts(real_location):
    graphs = load_dataset("Fingerprint4", real_location)
    counts = torch.bincount(torch.tensor([int(g.y) for g in graphs])).tolist()
    assert counts == [538, 517, 109, 497]
    assert all(g.num_nodes > 0 for g in graphs)


@pytest.mark.realdata
def test_pubmed_is_reported_missing_from_the_mirror(real_location):
    if (Path(real_location.mirror_dir) / "PubMed").exists():
        pytest.skip("this mirror has PubMed")
    with pytest.raises(DatasetNotFoundError, match="PubMed"):
        load_dataset("PubMed", real_location)


def test_registered_dataset_tasks():
    assert {c.task for _, c in DATASETS.items()} == {"link", "graph"}
    for name in ("SBM", "Cora", "CiteSeer", "PubMed", "Cora_ML", "Cora_ML_LCC", "CS"):
        assert DATASETS.get(name).task == "link"
    for name in (
        "Motifs",
        "AIDS",
        "ENZYMES",
        "DHFR",
        "NCI1",
        "PROTEINS",
        "COLLAB",
        "Fingerprint",
        "MUTAG",
        "Bitcoin",
    ):
        assert DATASETS.get(name).task == "graph"


def test_a_failed_download_is_one_line_naming_the_mirror(offline_location):
    from gnnbackdoor.datasets.base import GraphDataset

    class Unreachable(GraphDataset):
        task = "graph"
        registered_name = "Unreachable"

        def load(self, location):
            raise OSError("Cannot connect to host example.invalid:443")

    with pytest.raises(DatasetNotFoundError) as info:
        Unreachable().fetch(offline_location)
    message = str(info.value)
    assert "Unreachable" in message and "GNNBACKDOOR_DATA_MIRROR" in message
    assert "\n" not in message
