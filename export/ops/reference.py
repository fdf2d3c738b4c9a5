"""Pure-PyTorch reference of the custom ops. Training uses these (they support double backward);
export swaps in the fused C++/CUDA kernels, which must give the same numbers."""

from __future__ import annotations

import torch


def sh_degree_index(lmax: int, device: torch.device | None = None) -> torch.Tensor:
    """l(m) for each of the (lmax+1)^2 spherical-harmonic components, e3nn order."""
    return torch.cat([torch.full((2 * l + 1,), l, dtype=torch.long) for l in range(lmax + 1)]).to(device)


def conv_scatter(
    weights: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, n_nodes: int, lmax: int
) -> torch.Tensor:
    """Edge tensor product of scalar messages with spherical harmonics, summed per centre atom.

    weights: [E, lmax+1, C]   per edge, per degree l, per channel (radial weight x neighbour feature)
    sh:      [E, (lmax+1)^2]  spherical harmonics of the edge direction (e3nn order and norm)
    centre:  [E] int64        centre atom of each edge, sorted ascending
    returns  [n_nodes, C, (lmax+1)^2] with
             out[i, c, m] = sum_{e: centre[e] = i} weights[e, l(m), c] * sh[e, m]
    """
    l_of_m = sh_degree_index(lmax, weights.device)
    messages = weights.index_select(1, l_of_m).transpose(1, 2) * sh.unsqueeze(1)  # [E, C, M]
    out = torch.zeros(
        (n_nodes, weights.shape[2], sh.shape[1]), dtype=weights.dtype, device=weights.device
    )
    return out.index_add_(0, centre, messages)
