"""The source digest that keys the clean and stage caches."""

from __future__ import annotations

import importlib.util
import sys

from gnnbackdoor.utils.sources import own_classes, source_digest


def _module(path, name):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_the_digest_follows_the_file_on_disk(tmp_path, monkeypatch):
    path = tmp_path / "shaping.py"
    path.write_text("WIDTH = 1\n")
    module = _module(path, "shaping_probe")
    monkeypatch.delitem(sys.modules, "shaping_probe")
    first = source_digest([module])
    assert source_digest([module]) == first and len(first) == 16
    path.write_text("WIDTH = 2\n")
    assert source_digest([module]) != first


def test_order_counts_and_objects_without_a_file_count_by_repr():
    import gnnbackdoor.utils.files as a
    import gnnbackdoor.utils.timing as b

    assert source_digest([a, b]) != source_digest([b, a])
    assert source_digest([len]) == source_digest([len]) != source_digest([abs])


def test_own_classes_stop_at_the_package():
    from gnnbackdoor.datasets.base import GraphDataset
    from gnnbackdoor.datasets.fingerprint4 import Fingerprint4
    from gnnbackdoor.datasets.graph import Fingerprint

    classes = own_classes(Fingerprint4)
    assert classes[0] is Fingerprint4 and Fingerprint in classes and GraphDataset in classes
    assert all(c.__module__.startswith("gnnbackdoor.") for c in classes)
