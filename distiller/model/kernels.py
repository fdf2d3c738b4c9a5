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


def conv_padded(radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, neighbour: torch.Tensor,
                neighbours_per_atom: int) -> torch.Tensor:
    """conv_scatter_h for edges laid out atom by atom, K = neighbours_per_atom per atom (edge i*K + s is
    atom i's s-th; padding edges carry zero radial weight; mlffd.training.graphs.pad_edges): one batched
    matmul per degree over each atom's K neighbours, [N, C, K] x [N, K, 2l+1], instead of [E, C, M]
    messages and a scatter. What training computes with: about half the time of a step
    (benchmarks/NOTES.md, issue 29). Returns [n_nodes, C, (lmax+1)^2]."""
    n_nodes, k = h.shape[0], neighbours_per_atom
    neighbour_h = h.index_select(0, neighbour).view(n_nodes, k, -1)
    sh = sh.view(n_nodes, k, -1)
    # unbind, not radial[:, l]: a slice's backward writes a zero tensor of radial's full size per degree
    blocks = [torch.bmm((r.reshape(n_nodes, k, -1) * neighbour_h).transpose(1, 2), sh[:, :, l * l:(l + 1) * (l + 1)])
              for l, r in enumerate(radial.unbind(1))]
    return torch.cat(blocks, dim=2)


# --- references of the fused export ops (export/ops/csrc/fused_edge.cpp) ------------------------------

def conv_scatter_h(
    radial: torch.Tensor, h: torch.Tensor, sh: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor, lmax: int
) -> torch.Tensor:
    """mlffd::conv_scatter_h: conv_scatter of the edge weights radial * h[neighbour] (radial [E, lmax+1, C],
    h [n_nodes, C]); returns [n_nodes, C, (lmax+1)^2]."""
    weights = radial * h.index_select(0, neighbour).unsqueeze(1)
    return conv_scatter(weights, sh, centre, h.shape[0], lmax)


def radial_spline(length: torch.Tensor, table: torch.Tensor, r_max: float) -> torch.Tensor:
    """mlffd::radial_spline: the cubic pieces of a radial table [n_int, 4, K] at `length` [E] -> [E, K]
    (R = a + t (b + t (c + t d)), t = length n_int / r_max - k on interval k; zero from r_max on)."""
    n_int = table.shape[0]
    x = length * (n_int / r_max)
    k = x.detach().floor().clamp(0, n_int - 1).long()
    t = (x - k.to(x.dtype)).unsqueeze(1)
    co = table.index_select(0, k)
    value = co[:, 0] + t * (co[:, 1] + t * (co[:, 2] + t * co[:, 3]))
    return value * (x < n_int).to(length.dtype).unsqueeze(1)


def spline_conv(vec: torch.Tensor, h: torch.Tensor, table: torch.Tensor, centre: torch.Tensor, neighbour: torch.Tensor,
                r_max: float, lmax: int) -> torch.Tensor:
    """mlffd::spline_conv: conv_scatter_h of the radial table at |vec| with e3nn's spherical harmonics of vec,
    in the op's layout [(lmax+1)^2, n_nodes, C]."""
    from e3nn import o3

    sh = o3.SphericalHarmonics(list(range(lmax + 1)), True, "component")(vec)
    radial = radial_spline(torch.linalg.vector_norm(vec, dim=1), table, r_max).view(-1, lmax + 1, h.shape[1])
    return conv_scatter_h(radial, h, sh, centre, neighbour, lmax).permute(2, 0, 1)


def interaction_node(h: torch.Tensor, basis: torch.Tensor, mix: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                     w2: torch.Tensor, b2: torch.Tensor, residual: bool) -> torch.Tensor:
    """mlffd::interaction_node: basis [M, N, C] -> per degree U | V = basis_l @ mix[l] (mix [L, C, 2P]),
    invariants [h, basis_0, sum_m U V / sqrt(2l+1)], then the update MLP (+ h when residual)."""
    p = mix.shape[2] // 2
    parts = [h, basis[0]]
    for l in range(mix.shape[0]):
        mixed = basis[l * l:(l + 1) * (l + 1)] @ mix[l]
        parts.append((mixed[..., :p] * mixed[..., p:]).sum(0) / (2 * l + 1) ** 0.5)
    out = torch.nn.functional.linear(torch.nn.functional.silu(torch.nn.functional.linear(torch.cat(parts, 1), w1, b1)),
                                     w2, b2)
    return out + h if residual else out


def edge_forces_virial(edge_grad: torch.Tensor, edge_vec: torch.Tensor, centre: torch.Tensor,
                       neighbour: torch.Tensor, n_nodes: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mlffd::edge_forces_virial: (forces [N, 3], virial [3, 3], atom_virial [N, 6] in mlffd.voigt's order)
    from dE/d(edge vector), as in StudentPotential.forward."""
    forces = torch.zeros((n_nodes, 3), dtype=edge_grad.dtype, device=edge_grad.device)
    forces.index_add_(0, centre, edge_grad)
    forces.index_add_(0, neighbour, -edge_grad)
    edge_virial = -edge_vec.unsqueeze(2) * edge_grad.unsqueeze(1)
    # mlffd.voigt.FLAT_INDEX, written out: TorchScript reads no module-level tuple (test_student checks the order)
    voigt = edge_virial.reshape(-1, 9)[:, [0, 4, 8, 5, 2, 1]] * 0.5
    atom_virial = torch.zeros((n_nodes, 6), dtype=edge_grad.dtype, device=edge_grad.device)
    atom_virial.index_add_(0, centre, voigt)
    atom_virial.index_add_(0, neighbour, voigt)
    return forces, edge_virial.sum(0), atom_virial
