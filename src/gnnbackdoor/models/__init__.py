"""Victim models: link predictors and graph classifiers, their registry, trainers and files."""

from gnnbackdoor.models import gic, graph, link, node2vec  # noqa: F401  (registers the models)
from gnnbackdoor.models.base import MODELS, GraphClassifier, LinkPredictor, ModelSpec

__all__ = ["MODELS", "GraphClassifier", "LinkPredictor", "ModelSpec"]
