"""Graph InfoClust (GIC; Mavromatis & Karypis, PAKDD 2021) as a link-prediction victim.

PyG has no GIC. We build it from PyG's ``DeepGraphInfomax`` (the graph-level mutual-information
term) plus the cluster-level term of the GIC paper, written here:

* soft k-means on the L2-normalised embeddings (``beta`` is the inverse temperature): ten
  detached iterations from the last centres, then one differentiable iteration, giving
  responsibilities ``r [N, K]`` and centres ``mu [K, d]``;
* the cluster summary of node ``i`` is ``c_i = sigmoid(sum_k r_ik mu_k)``, scored by the
  discriminator ``D_K(z_i, c_i) = sigmoid(z_i^T c_i)`` (Link-Backdoor Eq. 10) against embeddings
  of a corrupted graph (features shuffled across nodes);
* the GIC objective is ``alpha * L_graph + (1 - alpha) * L_cluster``.

Link-Backdoor describes GIC "based on GAE" with the inner-product decoder, so that
``sigmoid(z_u · z_v)`` is a link probability; we therefore add the GAE reconstruction loss with
weight ``recon_weight`` (default 1; 0 gives the unsupervised GIC of the original paper).
Encoder: two GCN layers, 32 -> 32, with PReLU (as DGI and GIC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn import GAE, DeepGraphInfomax, GCNConv

from gnnbackdoor.models.base import MODELS, LinkPredictor, ModelSpec
from gnnbackdoor.settings import NonNegativeFloat, PositiveFloat, PositiveInt, Probability


class GICEncoder(nn.Module):
    """Two GCN layers with PReLU: ``[N, F] -> [N, hidden] -> [N, out]``."""

    def __init__(self, in_channels: int, hidden: int, out: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden)
        self.act1 = nn.PReLU(hidden)
        self.conv2 = GCNConv(hidden, out)
        self.act2 = nn.PReLU(out)

    def forward(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        h = self.act1(self.conv1(x, edge_index, edge_weight))
        return self.act2(self.conv2(h, edge_index, edge_weight))


def soft_kmeans(
    z: Tensor, init: Tensor, beta: float, detached_iterations: int = 10
) -> tuple[Tensor, Tensor, Tensor]:
    """Differentiable soft k-means (ClusterNet style) on row-normalised ``z``.

    Args:
        z: Embeddings ``[N, d]``.
        init: Initial centres ``[K, d]``.
        beta: Inverse temperature of the soft assignment.
        detached_iterations: Iterations run without gradient before the final one.

    Returns:
        ``(mu [K, d], r [N, K], mu_detached [K, d])``: centres and responsibilities of the final
        (differentiable) iteration, and the centres to start from next time.
    """
    data = F.normalize(z, dim=1)
    mu = init
    with torch.no_grad():
        for _ in range(detached_iterations):
            r = torch.softmax(beta * data @ F.normalize(mu, dim=1).t(), dim=1)
            mu = (r.t() @ data) / r.sum(0).clamp_min(1e-8).unsqueeze(1)
    r = torch.softmax(beta * data @ F.normalize(mu, dim=1).t(), dim=1)
    mu_new = (r.t() @ data) / r.sum(0).clamp_min(1e-8).unsqueeze(1)
    return mu_new, r, mu_new.detach()


class GICLinkPredictor(LinkPredictor):
    """GIC encoder trained with the graph- and cluster-level objectives (+ reconstruction)."""

    def __init__(
        self,
        in_channels: int,
        hidden: int,
        out: int,
        num_clusters: int,
        beta: float,
        alpha: float,
        recon_weight: float,
    ) -> None:
        super().__init__()
        self.dgi = DeepGraphInfomax(
            hidden_channels=out,
            encoder=GICEncoder(in_channels, hidden, out),
            summary=lambda z, *args, **kwargs: torch.sigmoid(z.mean(dim=0)),
            corruption=_shuffle_features,
        )
        self.beta = beta
        self.alpha = alpha
        self.recon_weight = recon_weight
        self.register_buffer("centres", torch.rand(num_clusters, out))
        self._gae = GAE(nn.Identity())  # only for its recon_loss

    def encode(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        return self.dgi.encoder(x, edge_index, edge_weight)

    def cluster_logits(self, z: Tensor, z_corrupt: Tensor) -> tuple[Tensor, Tensor]:
        """Logits ``z_i^T c_i`` for real and corrupted nodes against the cluster summaries."""
        mu, r, mu_next = soft_kmeans(z, self.centres, self.beta)
        if self.training:
            self.centres.copy_(mu_next)
        summary = torch.sigmoid(r @ mu)
        return (z * summary).sum(-1), (z_corrupt * summary).sum(-1)

    def training_loss(self, x, edge_index, pos_pairs, neg_pairs, edge_weight=None):
        z, z_corrupt, graph_summary = self.dgi(x, edge_index, edge_weight)
        graph_term = self.dgi.loss(z, z_corrupt, graph_summary)
        real, fake = self.cluster_logits(z, z_corrupt)
        cluster_term = F.binary_cross_entropy_with_logits(
            real, torch.ones_like(real)
        ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        loss = self.alpha * graph_term + (1 - self.alpha) * cluster_term
        if self.recon_weight > 0:
            loss = loss + self.recon_weight * self._gae.recon_loss(z, pos_pairs, neg_pairs)
        return loss, z


def _shuffle_features(x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None):
    """DGI's corruption: the same graph with node features permuted across nodes."""
    return x[torch.randperm(x.size(0), device=x.device)], edge_index, edge_weight


@MODELS.register("gic")
@dataclass
class GICSpec(ModelSpec):
    """Graph InfoClust; defaults from the GIC paper's link-prediction script (K=128,
    beta=100, alpha=0.5) and Link-Backdoor's 32-32 encoder."""

    hidden_channels: PositiveInt = 32
    out_channels: PositiveInt = 32
    num_clusters: PositiveInt = 128
    beta: PositiveFloat = 100.0  # inverse temperature of the soft k-means
    alpha: Probability = 0.5  # weight of the graph-level term, 1 - alpha the cluster-level one
    recon_weight: NonNegativeFloat = 1.0  # weight of the reconstruction term (0: none)
    task: ClassVar[str] = "link"
    reference: ClassVar[str] = (
        "Mavromatis & Karypis, Graph InfoClust: Maximizing Coarse-Grain Mutual Information "
        "in Graphs, PAKDD 2021"
    )

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        return GICLinkPredictor(
            in_channels,
            self.hidden_channels,
            self.out_channels,
            self.num_clusters,
            self.beta,
            self.alpha,
            self.recon_weight,
        )
