"""Link-prediction victims on PyG's autoencoders: GAE, VGAE, ARGA, ARVGA.

All use a two-layer GCN encoder (32 -> 16 by default, as in Link-Backdoor Sec. 5.1.2) and the
inner-product decoder; the variational ones score with the mean in eval mode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor, nn
from torch_geometric.nn import ARGA, ARGVA, GAE, VGAE, GCNConv
from torch_geometric.utils import negative_sampling

from gnnbackdoor.models.base import MODELS, LinkPredictor, ModelSpec
from gnnbackdoor.settings import PositiveInt


class GCNEncoder(nn.Module):
    """Two GCN layers, ``in -> hidden -> out`` with ReLU between; variational when asked
    (then ``forward`` returns ``(mu, logstd)``)."""

    def __init__(self, in_channels: int, hidden: int, out: int, variational: bool) -> None:
        super().__init__()
        self.conv1 = GCNConv(in_channels, hidden)
        self.conv_mu = GCNConv(hidden, out)
        self.conv_logstd = GCNConv(hidden, out) if variational else None

    def forward(
        self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None
    ) -> Tensor | tuple[Tensor, Tensor]:
        h = self.conv1(x, edge_index, edge_weight).relu()
        mu = self.conv_mu(h, edge_index, edge_weight)
        if self.conv_logstd is None:
            return mu
        return mu, self.conv_logstd(h, edge_index, edge_weight)


class Discriminator(nn.Module):
    """ARGA's MLP discriminator ``D = ReLU(ReLU(x W0) W1) W2`` (Link-Backdoor Eq. 11)."""

    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_channels, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class AutoencoderLinkPredictor(LinkPredictor):
    """Wraps one of PyG's ``GAE``/``VGAE``/``ARGA``/``ARGVA`` as a :class:`LinkPredictor`.

    ``training_loss`` is the reconstruction loss on given positive/negative pairs, plus the KL
    term (scaled by ``1/N``) for the variational ones and the adversarial regulariser for the
    adversarial ones.
    """

    def __init__(self, autoencoder: GAE) -> None:
        super().__init__()
        self.autoencoder = autoencoder
        self.variational = isinstance(autoencoder, VGAE | ARGVA)
        self.adversarial = isinstance(autoencoder, ARGA)

    @property
    def has_discriminator(self) -> bool:  # type: ignore[override]
        return self.adversarial

    def encode(self, x: Tensor, edge_index: Tensor, edge_weight: Tensor | None = None) -> Tensor:
        return self.autoencoder.encode(x, edge_index, edge_weight)

    def training_loss(self, x, edge_index, pos_pairs, neg_pairs, edge_weight=None):
        z = self.encode(x, edge_index, edge_weight)
        loss = self.autoencoder.recon_loss(z, pos_pairs, neg_pairs)
        if self.variational:
            loss = loss + self.autoencoder.kl_loss() / x.size(0)
        if self.adversarial:
            loss = loss + self.autoencoder.reg_loss(z)
        return loss, z

    def discriminator_loss(self, z: Tensor) -> Tensor:
        return self.autoencoder.discriminator_loss(z)

    def discriminator_parameters(self) -> list[nn.Parameter]:
        if not self.adversarial:
            return []
        return list(self.autoencoder.discriminator.parameters())


@dataclass
class _AutoencoderSpec(ModelSpec):
    hidden_channels: PositiveInt = 32
    out_channels: PositiveInt = 16
    task: ClassVar[str] = "link"
    variational: ClassVar[bool] = False

    def _encoder(self, in_channels: int) -> GCNEncoder:
        return GCNEncoder(in_channels, self.hidden_channels, self.out_channels, self.variational)


@MODELS.register("gae")
@dataclass
class GAESpec(_AutoencoderSpec):
    """Graph autoencoder (Kipf & Welling, 2016) with PyG's ``GAE``."""

    reference: ClassVar[str] = "Kipf & Welling, Variational Graph Auto-Encoders, 2016"

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        return AutoencoderLinkPredictor(GAE(self._encoder(in_channels)))


@MODELS.register("vgae")
@dataclass
class VGAESpec(_AutoencoderSpec):
    """Variational graph autoencoder (Kipf & Welling, 2016) with PyG's ``VGAE``."""

    reference: ClassVar[str] = "Kipf & Welling, Variational Graph Auto-Encoders, 2016"
    variational: ClassVar[bool] = True

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        return AutoencoderLinkPredictor(VGAE(self._encoder(in_channels)))


@MODELS.register("arga")
@dataclass
class ARGASpec(_AutoencoderSpec):
    """Adversarially regularised graph autoencoder (Pan et al., 2018) with PyG's ``ARGA``."""

    discriminator_hidden: PositiveInt = 64
    reference: ClassVar[str] = "Pan et al., Adversarially Regularized Graph Autoencoder, 2018"

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        disc = Discriminator(self.out_channels, self.discriminator_hidden)
        return AutoencoderLinkPredictor(ARGA(self._encoder(in_channels), disc))


@MODELS.register("arvga")
@dataclass
class ARVGASpec(ARGASpec):
    """Adversarially regularised variational graph autoencoder (Pan et al., 2018), PyG's
    ``ARGVA``."""

    variational: ClassVar[bool] = True

    def build(self, in_channels: int, out_channels: int | None = None) -> LinkPredictor:
        disc = Discriminator(self.out_channels, self.discriminator_hidden)
        return AutoencoderLinkPredictor(ARGVA(self._encoder(in_channels), disc))


def sample_negative_pairs(edge_index: Tensor, num_nodes: int, num: int) -> Tensor:
    """``[2, num]`` node pairs that are not edges of ``edge_index`` (PyG's sampler, using the
    global torch RNG, so seeded runs repeat)."""
    return negative_sampling(edge_index, num_nodes=num_nodes, num_neg_samples=num)
