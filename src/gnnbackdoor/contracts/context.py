"""What a pipeline hands to attacks and defenses: data, the clean model, the acting stage's
random generator, and ways to build and train more victims with the run's settings (so an
attack never re-implements training).

The pipeline sets ``generator`` to the generator of the stage currently acting (see
:mod:`gnnbackdoor.utils.seeding`): the attack's while the attack fits, poisons and activates,
the defense's while the defense acts. A component keeps the generator it was handed at
``fit`` if it draws later (e.g. trigger positions at activation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import torch
from torch_geometric.data import Data

from gnnbackdoor.datasets.splits import GraphSplit, LinkSplit
from gnnbackdoor.models.base import MODELS, GraphClassifier, LinkPredictor, ModelSpec
from gnnbackdoor.models.train_graph import GraphEpochCallback, GraphTrainConfig, train_graph_model
from gnnbackdoor.models.train_link import (
    EpochCallback,
    LinkTrainConfig,
    TrainReport,
    train_link_model,
)


@dataclass
class LinkContext:
    """A link-prediction run.

    Attributes:
        graph: The whole dataset graph.
        split: Train/val/test edges (``split.train.edge_index`` is the clean training graph).
        model_spec: The victim's specification.
        train_config: Training settings shared by every model of the run.
        seed: The run's seed, for naming and records only: components draw from
            ``generator``, never from a seed of their own derived from it.
        generator: The acting stage's generator; every random draw of a component.
        clean_model: The victim trained on clean data (set before the attack is fitted).
        timings: Extra seconds (or seconds per step) the attack wants recorded.
    """

    graph: Data
    split: LinkSplit
    model_spec: ModelSpec
    train_config: LinkTrainConfig
    seed: int
    generator: torch.Generator
    clean_model: LinkPredictor | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_features(self) -> int:
        return int(self.graph.x.size(1))

    def build_model(self, name: str | None = None) -> LinkPredictor:
        """A fresh victim: the run's model, or another registered link model by ``name``
        (with its default hyper-parameters), e.g. a black-box surrogate."""
        spec = self.model_spec if name is None else MODELS.get(name)()
        return spec.build(self.num_features)

    def train_model(
        self,
        model: LinkPredictor,
        train: Data,
        callback: EpochCallback | None = None,
        desc: str = "train",
    ) -> TrainReport:
        """Train ``model`` on ``train`` with the run's settings, early-stopping on the clean
        validation split."""
        return train_link_model(model, train, self.split.val, self.train_config, callback, desc)


@dataclass
class GraphContext:
    """A graph-classification run (see :class:`LinkContext` for the shared attributes).

    Attributes:
        split: Stratified train/val/test graphs.
        clean_model: The victim trained on clean training graphs.
    """

    split: GraphSplit
    model_spec: ModelSpec
    train_config: GraphTrainConfig
    seed: int
    generator: torch.Generator
    clean_model: GraphClassifier | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return self.split.num_classes

    @property
    def num_features(self) -> int:
        return self.split.num_features

    def build_model(self, name: str | None = None) -> GraphClassifier:
        """A fresh victim: the run's model, or another registered graph model by ``name``."""
        spec = self.model_spec if name is None else MODELS.get(name)()
        return spec.build(self.num_features, self.num_classes)

    def train_model(
        self,
        model: GraphClassifier,
        graphs: Sequence[Data],
        callback: GraphEpochCallback | None = None,
        desc: str = "train",
        val: Sequence[Data] | None = None,
    ) -> TrainReport:
        """Train ``model`` on ``graphs`` with the run's settings, early-stopping on ``val``
        (default: the clean validation graphs); mini-batches are shuffled with
        ``generator``."""
        val = self.split.val if val is None else val
        return train_graph_model(
            model, graphs, val, self.train_config, self.generator, callback, desc
        )

    def train_new_model(
        self, graphs: Sequence[Data], desc: str = "train", val: Sequence[Data] | None = None
    ) -> GraphClassifier:
        """A fresh victim trained on ``graphs``, early-stopping on ``val`` (default: clean)."""
        model = self.build_model()
        self.train_model(model, graphs, desc=desc, val=val)
        return model


@runtime_checkable
class LinkTrainer(Protocol):
    """What a link attack may ask of its context besides data: fresh victims, trained with the
    run's settings (:class:`LinkContext` is the implementation the pipeline hands over)."""

    generator: torch.Generator

    def build_model(self, name: str | None = None) -> LinkPredictor: ...

    def train_model(
        self,
        model: LinkPredictor,
        train: Data,
        callback: EpochCallback | None = None,
        desc: str = "train",
    ) -> TrainReport: ...


@runtime_checkable
class GraphTrainer(Protocol):
    """The graph-classification counterpart of :class:`LinkTrainer` (implemented by
    :class:`GraphContext`)."""

    generator: torch.Generator

    @property
    def num_classes(self) -> int: ...

    @property
    def num_features(self) -> int: ...

    def build_model(self, name: str | None = None) -> GraphClassifier: ...

    def train_model(
        self,
        model: GraphClassifier,
        graphs: Sequence[Data],
        callback: GraphEpochCallback | None = None,
        desc: str = "train",
        val: Sequence[Data] | None = None,
    ) -> TrainReport: ...

    def train_new_model(
        self, graphs: Sequence[Data], desc: str = "train", val: Sequence[Data] | None = None
    ) -> GraphClassifier: ...
