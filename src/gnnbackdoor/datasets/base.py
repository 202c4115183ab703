"""The dataset base class and its registry.

A dataset class knows where PyG finds its raw files and how to turn them into the toolkit's
inputs: one ``Data`` graph for link prediction, a list of ``Data`` graphs (each with ``y`` of
shape ``[1]``) for graph classification. Loading goes through :func:`load_dataset`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from torch_geometric.data import Data

from gnnbackdoor.datasets.mirror import (
    MIRROR_ENV,
    default_cache_dir,
    default_mirror_dir,
    stage_raw_files,
)
from gnnbackdoor.errors import DatasetNotFoundError, UserError
from gnnbackdoor.registry import Registry
from gnnbackdoor.utils.files import locked


@dataclass(frozen=True)
class DataLocation:
    """Where datasets come from and go to.

    Attributes:
        cache_dir: Writable root that PyG reads and processes in.
        mirror_dir: Read-only offline mirror of PyG raw layouts, or ``None``.
        allow_download: Let PyG download files that neither cache nor mirror holds. Defaults to
            ``True`` only when no mirror is given.
        mirror_given_by: How the user named the mirror, for error lines: the option
            (``"--data-mirror"``) or the environment variable (the default).
    """

    cache_dir: Path = field(default_factory=default_cache_dir)
    mirror_dir: Path | None = field(default_factory=default_mirror_dir)
    allow_download: bool | None = None
    mirror_given_by: str = MIRROR_ENV

    @property
    def downloads_allowed(self) -> bool:
        if self.allow_download is not None:
            return self.allow_download
        return self.mirror_dir is None


class GraphDataset(ABC):
    """A registered dataset.

    Class attributes:
        task: ``"link"`` or ``"graph"``.
        folder: PyG's folder name under its root (``None`` for generated datasets).
        raw_files: Raw file names PyG reads from ``<folder>/raw``.
        feature_note: How node features are made (shown by ``gnnbackdoor list``).
        reference: Where the dataset comes from.
    """

    task: ClassVar[str]
    folder: ClassVar[str | None] = None
    raw_files: ClassVar[list[str]] = []
    feature_note: ClassVar[str] = "as PyG loads it"
    reference: ClassVar[str] = ""
    registered_name: ClassVar[str]
    #: Graphs without nodes in the raw files (shown by ``gnnbackdoor list``; a graph with no
    #: node has no readout and no place for a trigger, so :meth:`fetch` drops them).
    empty_graphs: ClassVar[int] = 0
    #: How many graphs without nodes the last :meth:`fetch` dropped (recorded in each run as
    #: ``num_empty_graphs_dropped`` when not 0).
    dropped_empty_graphs: int = 0

    def stage(self, location: DataLocation) -> Path:
        """Copy raw files from the mirror into the cache when needed; return the PyG root."""
        assert self.folder is not None
        return stage_raw_files(
            self.folder,
            list(self.raw_files),
            location.cache_dir,
            location.mirror_dir,
            location.downloads_allowed,
            mirror_given_by=location.mirror_given_by,
        )

    @abstractmethod
    def load(self, location: DataLocation) -> Data | list[Data]:
        """Load the dataset (see the module docstring for what each task returns)."""

    def fetch(self, location: DataLocation) -> Data | list[Data]:
        """:meth:`load`, with a failed download (no network, unknown host) reported as one
        line that names the mirror variable.

        Graph-classification datasets lose their graphs with no nodes here (TU Fingerprint
        holds 651): no pooled readout, trigger or subgraph exists for them, and keeping them
        would make every batch that ends in one yield one row too few. The count is kept in
        :attr:`dropped_empty_graphs`.

        A dataset kept on disk is loaded under an exclusive lock on
        ``<cache_dir>/.<folder>.lock``: parallel workers of a sweep that share a cache copy the
        raw files and let PyG process them once, and none reads a half-written file.

        Raises:
            DatasetNotFoundError: the files could not be loaded.
            UserError: a graph dataset with no graph that has a node.
        """
        try:
            if self.folder is None:
                loaded = self.load(location)
            else:
                lock = Path(location.cache_dir) / f".{self.folder}.lock"
                with locked(lock, best_effort=True):
                    loaded = self.load(location)
        except OSError as error:
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise DatasetNotFoundError(
                f"could not load {self.registered_name} ({reason}); set {MIRROR_ENV} (or "
                "--data-mirror) to an offline mirror of PyG raw files"
            ) from None
        if isinstance(loaded, Data):
            return loaded
        graphs = [g for g in loaded if g.num_nodes]
        self.dropped_empty_graphs = len(loaded) - len(graphs)
        if not graphs:
            raise UserError(f"{self.registered_name} holds no graph with a node")
        return graphs


DATASETS: Registry[type[GraphDataset]] = Registry("dataset")


def load_dataset(name: str, location: DataLocation | None = None) -> Data | list[Data]:
    """Load the registered dataset ``name`` (matched without regard to case)."""
    dataset_cls = DATASETS.get(name)
    return dataset_cls().fetch(location or DataLocation())
