"""The model's edge kernels in pure PyTorch: what training computes with (double backward works)
and the reference the custom ops of mlffd.export.ops must reproduce (their parity tests)."""

from __future__ import annotations

import torch


def sh_degree_index(lmax: int, device: torch.device | None = None) -> torch.Tensor:
    """l(m) = floor(sqrt(m)) for each of the (lmax+1)^2 spherical-harmonic components, e3nn order.
    Built on `device` (no host-to-device copy per call on a GPU); sqrt is exact at perfect squares."""
    m = torch.arange((lmax + 1) ** 2, dtype=torch.float64, device=device)
    return torch.floor(torch.sqrt(m)).long()


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


# --- references of the fused export ops (export/ops/csrc/fused_edge.cpp) ------------------------------

def conv_scatter_h(
    radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor, lmax: int
) -> torch.Tensor:
    """mlffd::conv_scatter_h: conv_scatter of the edge weights radial * h[neighbour] (radial [E, lmax+1, C],
    h [n_nodes, C]); returns [n_nodes, C, (lmax+1)^2]."""
    weights = radial * h.index_select(0, neighbour).unsqueeze(1)
    return conv_scatter(weights, sh, centre, h.shape[0], lmax)


def edge_geometry(vec: torch.Tensor, lmax: int) -> tuple[torch.Tensor, torch.Tensor]:
    """mlffd::edge_geometry: (|vec| [E], e3nn spherical harmonics 0..lmax, normalize=True, "component" [E, M])."""
    from e3nn import o3

    sh = o3.SphericalHarmonics(list(range(lmax + 1)), True, "component")
    return torch.linalg.vector_norm(vec, dim=1), sh(vec)


def radial_mlp(length: torch.Tensor, frequencies: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
               w2: torch.Tensor, b2: torch.Tensor, prefactor: float, cutoff: float, p: float,
               n_split: int) -> list[torch.Tensor]:
    """mlffd::radial_mlp: Linear(w2, b2)(silu(Linear(w1, b1)(bessel(r)))) * envelope(r), split into n_split
    column blocks (mlffd.model.radial's BesselBasis and PolynomialCutoff formulas)."""
    r = length.unsqueeze(-1)
    basis = prefactor * torch.sin(frequencies * r) / r
    x = length / cutoff
    envelope = (
        1.0
        - (p + 1.0) * (p + 2.0) / 2.0 * torch.pow(x, p)
        + p * (p + 2.0) * torch.pow(x, p + 1.0)
        - p * (p + 1.0) / 2.0 * torch.pow(x, p + 2.0)
    ) * (x < 1.0).to(length.dtype)
    out = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(basis, w1, b1)), w2, b2)
    return list((out * envelope.unsqueeze(-1)).chunk(n_split, dim=1))


def edge_forces_virial(edge_grad: torch.Tensor, edge_vec: torch.Tensor, centre: torch.Tensor,
                       neighbour: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mlffd::edge_forces_virial: (forces [N, 3], virial [3, 3], atom_virial [N, 6] Voigt xx yy zz xy xz yz)
    from dE/d(edge vector), as in StudentPotential.forward."""
    forces = torch.zeros((n_nodes, 3), dtype=edge_grad.dtype, device=edge_grad.device)
    forces.index_add_(0, centre, edge_grad)
    forces.index_add_(0, neighbour, -edge_grad)
    edge_virial = -edge_vec.unsqueeze(2) * edge_grad.unsqueeze(1)
    voigt = edge_virial.reshape(-1, 9)[:, [0, 4, 8, 1, 2, 5]] * 0.5
    atom_virial = torch.zeros((n_nodes, 6), dtype=edge_grad.dtype, device=edge_grad.device)
    atom_virial.index_add_(0, centre, voigt)
    atom_virial.index_add_(0, neighbour, voigt)
    return forces, edge_virial.sum(0), atom_virial
