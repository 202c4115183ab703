"""GCleaner's trigger-recovery measure: Table IV's similarity between the original and the
recovered trigger (Zhang et al., 2024, Sec. 5.3, "Effectiveness of trigger recovery").

The paper: "we measure the cosine similarity between the features of the backdoored model
when embedding the original trigger and the recovered trigger samples". Our reading: for
each defender graph ``G``, the backdoored model's graph embedding ``f_b`` (the pooled
readout before the MLP head, the features Eq. 7 compares) of ``G`` with the attack's trigger
and of ``G`` with the recovered trigger; their cosine, averaged over the graphs. Plain
embeddings, not centred (the paper centres nothing; GCleaner's own centred Eq. 8 score is a
different number, recorded as ``gc_recovery_similarity``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Batch, Data

from gnnbackdoor.models.base import GraphClassifier


@torch.no_grad()
def _embeddings(model: GraphClassifier, graphs: Sequence[Data], batch_size: int) -> Tensor:
    parts = []
    for start in range(0, len(graphs), batch_size):
        batch = Batch.from_data_list(
            [Data(x=g.x, edge_index=g.edge_index) for g in graphs[start : start + batch_size]]
        )
        parts.append(model.embed(batch.x, batch.edge_index, batch.batch))
    return torch.cat(parts)


def trigger_embedding_cosine(
    model: GraphClassifier,
    original_triggered: Sequence[Data],
    recovered_triggered: Sequence[Data],
    batch_size: int = 256,
) -> float:
    """Table IV's similarity: mean over ``i`` of ``cos(f_b(G_i ⊕ g_orig), f_b(G_i ⊕ g_rec))``.

    Args:
        model: The backdoored classifier (eval mode is used and restored).
        original_triggered: The defender's graphs with the attack's trigger.
        recovered_triggered: The same graphs, in the same order, with the recovered trigger.
        batch_size: Graphs per forward pass.

    Returns:
        A cosine in ``[-1, 1]``; ``nan`` for no graphs.

    Raises:
        ValueError: the two lists differ in length.
    """
    if len(original_triggered) != len(recovered_triggered):
        raise ValueError(
            f"{len(original_triggered)} original-trigger graphs against "
            f"{len(recovered_triggered)} recovered-trigger graphs: pair them graph by graph"
        )
    if not original_triggered:
        return float("nan")
    was_training = model.training
    model.eval()
    try:
        original = _embeddings(model, list(original_triggered), batch_size)
        recovered = _embeddings(model, list(recovered_triggered), batch_size)
    finally:
        model.train(was_training)
    return float(F.cosine_similarity(original, recovered, dim=-1).mean())
