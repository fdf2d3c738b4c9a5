"""The frozen student on the custom ops (what `mlffd export` freezes by default; export only).

`use_fused_ops(model)` turns a trained `StudentPotential` into a `FusedStudentPotential` in place:
same parameters and state_dict, plus non-persistent buffers derived from them here, at export:

- `radial_tables` [T, n_intervals, 4, (lmax+1) C]: each layer's radial function (Bessel basis ->
  MLP -> cutoff envelope, evaluated through the model's own modules in float64) divided by
  avg_num_neighbors, as a cubic Hermite spline on equal intervals of [0, cutoff) (values and
  first derivatives of the network at the knots, so value and force are both continuous).
  Beyond the cutoff the ops return exactly zero, like the envelope.
- `mix_matrix` [lmax+1, C, 2P] per interaction: its e3nn `o3.Linear`, read off by feeding unit
  vectors through it (one matrix per degree l; checked against the module on random input).

Per layer the graph is then two ops: `mlffd::spline_conv` (spherical harmonics, radial table,
product with the neighbour states and the sum per centre, one pass over the edges) and
`mlffd::interaction_node` (o3.Linear, invariant products, update MLP); the CSR of the edge list is
built once per call (`mlffd::edge_graph`) and reused by every op, and forces and virials come from
`mlffd::edge_forces_virial`. First-order gradients only: training keeps the reference modules.
"""

from __future__ import annotations

import copy
from typing import Dict, Optional

import torch
from e3nn.util.jit import compile_mode

from mlffd.errors import MLFFDError
from mlffd.model.potential import energy_gradient
from mlffd.model.student import StudentPotential

# 1024 intervals over a 5 A cutoff (h = 4.9 mA): the table matches the float64 network to ~5e-10 of
# its largest value and its derivative to ~3e-7 (benchmarks/NOTES.md), below float32 rounding of
# the forces; 4 x 48 coefficients per interval for the `fast` preset (0.8 MB in float32).
RADIAL_TABLE_INTERVALS = 1024
# The first knot: the Bessel basis sin(f r) / r is 0/0 at r = 0 (its limit there is finite).
_R0 = 1e-9


def radial_network(model: StudentPotential, r: torch.Tensor) -> torch.Tensor:
    """The model's radial functions at lengths r, [len(r), T, lmax+1, C] (the training graph's
    `radial` of StudentPotential.atom_energy), in r's dtype."""
    radial = model.radial(model.basis(r)) * model.envelope(r).unsqueeze(-1)
    return radial.view(-1, model.num_interactions, model.lmax + 1, model.channels)


def fit_radial_tables(model: StudentPotential, n_intervals: int = RADIAL_TABLE_INTERVALS) -> torch.Tensor:
    """Cubic Hermite tables [T, n_intervals, 4, (lmax+1) C] (float64) of the model's radial
    functions times 1/avg_num_neighbors, fitted on [0, cutoff]: table[t, k, :, q] are the
    coefficients (a, b, c, d) of R(r) = a + b u + c u^2 + d u^3 on interval k, u = r / h - k."""
    if n_intervals < 1:
        raise MLFFDError(f"n_intervals must be >= 1, got {n_intervals}")
    net = copy.deepcopy(model).double()  # float64 samples of the (possibly float32) weights
    h = model.cutoff / n_intervals
    r = torch.arange(n_intervals + 1, dtype=torch.float64) * h
    r[0] = _R0
    r.requires_grad_(True)
    with torch.enable_grad():
        y = radial_network(net, r).flatten(1)  # [n + 1, T (L C)]
        dy = torch.stack([torch.autograd.grad(y[:, q].sum(), r, retain_graph=True)[0] for q in range(y.shape[1])], 1)
    scale = torch.tensor([i.inv_avg_num_neighbors for i in model.interactions], dtype=torch.float64)
    n_layers, width = model.num_interactions, (model.lmax + 1) * model.channels
    y = y.detach().view(-1, n_layers, width) * scale[:, None]
    dy = dy.view(-1, n_layers, width) * (h * scale[:, None])  # d/du
    y0, y1, d0, d1 = y[:-1], y[1:], dy[:-1], dy[1:]
    coefficients = torch.stack([y0, d0, 3 * (y1 - y0) - 2 * d0 - d1, 2 * (y0 - y1) + d0 + d1], dim=1)
    return coefficients.permute(2, 0, 1, 3).contiguous()  # [T, n, 4, L C]


def mixing_matrices(interaction) -> torch.Tensor:
    """[lmax+1, C, 2P] (float64): the interaction's o3.Linear as one matrix per degree l,
    mixed_l[n, c', k] = sum_c basis_l[n, c, k] M[l, c, c'] (channel-major e3nn blocks)."""
    mix = copy.deepcopy(interaction.mix).double()
    c, p, lmax = interaction.channels, interaction.products, interaction.lmax
    dims = [2 * l + 1 for l in range(lmax + 1)]
    offsets_in = [c * sum(dims[:l]) for l in range(lmax + 1)]
    offsets_out = [2 * p * sum(dims[:l]) for l in range(lmax + 1)]
    matrices = []
    with torch.no_grad():
        for l in range(lmax + 1):
            x = torch.zeros(c, mix.irreps_in.dim, dtype=torch.float64)
            x[torch.arange(c), offsets_in[l] + torch.arange(c) * dims[l]] = 1.0  # unit vector, component 0
            out = mix(x)
            matrices.append(out[:, offsets_out[l] + torch.arange(2 * p) * dims[l]])
        matrix = torch.stack(matrices)
        # the block structure assumed above: the reconstruction must reproduce the module
        probe = torch.randn(3, mix.irreps_in.dim, dtype=torch.float64)
        rebuilt = torch.cat([
            torch.einsum("ncm,cd->ndm", probe[:, offsets_in[l]:offsets_in[l] + c * dims[l]].view(3, c, dims[l]),
                         matrix[l]).reshape(3, -1)
            for l in range(lmax + 1)], dim=1)
        if not torch.allclose(rebuilt, mix(probe), rtol=1e-10, atol=1e-12):
            raise MLFFDError("the e3nn o3.Linear of the interaction is not one C x 2P matrix per degree: "
                             "this e3nn version is not supported by the fused export (use --no-ops)")
    return matrix


@compile_mode("script")
class FusedStudentPotential(StudentPotential):
    """StudentPotential on the custom ops (export only; made by `use_fused_ops`). Same contract and
    numbers within the radial table's interpolation error (below float32 rounding)."""

    def forward(
        self,
        edge_vec: torch.Tensor,
        species: torch.Tensor,
        edge_index: torch.Tensor,
        n_local: int,
    ) -> Dict[str, torch.Tensor]:
        vec = self.edge_vectors(edge_vec)
        centre = edge_index[0]
        neighbour = edge_index[1]
        n_nodes = species.shape[0]
        graph = torch.ops.mlffd.edge_graph(centre, neighbour, n_nodes)
        rowptr = graph[0]
        nb_order = graph[1]
        nb_start = graph[2]
        h = self.embedding.index_select(0, species)
        sh: Optional[torch.Tensor] = None
        if self.lmax > 3:  # beyond the fused kernels' spherical harmonics: e3nn's, radial table, conv_scatter_h
            sh = self.spherical_harmonics(vec)
        descriptor = h.new_zeros((0, 0))
        t = 0
        last = len(self.interactions) - 1
        for interaction in self.interactions:
            table = self.radial_tables[t]
            if sh is None:
                basis = torch.ops.mlffd.spline_conv(vec, h, table, neighbour, rowptr, nb_order, nb_start,
                                                    self.cutoff, self.lmax)
            else:
                radial = torch.ops.mlffd.radial_spline(torch.linalg.vector_norm(vec, dim=1), table, self.cutoff)
                basis = torch.ops.mlffd.conv_scatter_h(radial.view(-1, self.lmax + 1, self.channels), h, sh, centre,
                                                       neighbour, self.lmax).permute(2, 0, 1)
            if t == last:  # only the local atoms' energies are summed: skip the ghosts' last node update
                h = h[:n_local]
                basis = basis[:, :n_local]
            if t == last and self.descriptor_precision.numel() > 0:
                # the hidden features (the descriptor) through an identity readout, then the energy readout
                descriptor = torch.ops.mlffd.interaction_node(h, basis, interaction.mix_matrix,
                                                              interaction.update[0].weight, interaction.update[0].bias,
                                                              self.identity_readout, self.zero_readout_bias, False)
                h = torch.nn.functional.linear(descriptor, interaction.update[2].weight, interaction.update[2].bias)
            else:
                h = torch.ops.mlffd.interaction_node(h, basis, interaction.mix_matrix, interaction.update[0].weight,
                                                     interaction.update[0].bias, interaction.update[2].weight,
                                                     interaction.update[2].bias, interaction.residual)
            t += 1
        atom_energy = h.squeeze(-1) * self.energy_scale + self.atomic_energies.index_select(0, species[:n_local])
        edge_grad = energy_gradient(atom_energy.sum(), vec, False)
        if self.pair_repulsion:
            wall = self.repulsion.energy_and_edge_gradient(vec.detach(), species, centre, neighbour, n_local)
            atom_energy = atom_energy + wall[0]
            edge_grad = edge_grad.index_add(0, wall[1], wall[2])
        energy = atom_energy.sum()
        out = torch.ops.mlffd.edge_forces_virial(edge_grad, vec.detach(), rowptr, nb_order, nb_start)
        return {
            "energy": energy.detach(),
            "atom_energy": atom_energy.detach(),
            "forces": out[0],
            "virial": out[1],
            "atom_virial": out[2],
            "atom_uncertainty": self.atom_uncertainty(descriptor),
        }


def use_fused_ops(model: StudentPotential, n_intervals: int = RADIAL_TABLE_INTERVALS) -> StudentPotential:
    """Switch a StudentPotential to the custom ops, in place (export only: the tables and matrices
    are computed from the current weights, and the ops differentiate w.r.t. the edges only).
    Parameters and state_dict keys are unchanged; the derived buffers are not in the state_dict."""
    dtype = model.atomic_energies.dtype
    tables = fit_radial_tables(model, n_intervals).to(dtype)
    for interaction in model.interactions:
        interaction.register_buffer("mix_matrix", mixing_matrices(interaction).to(dtype), persistent=False)
    model.register_buffer("radial_tables", tables, persistent=False)
    hidden = model.interactions[-1].update[0].out_features
    model.register_buffer("identity_readout", torch.eye(hidden, dtype=dtype), persistent=False)
    model.register_buffer("zero_readout_bias", torch.zeros(hidden, dtype=dtype), persistent=False)
    if type(model) is StudentPotential:
        model.__class__ = FusedStudentPotential
    return model


def radial_table_error(model: StudentPotential, n_intervals: int = RADIAL_TABLE_INTERVALS,
                       samples: int = 20000, r_min: float = 0.5) -> dict:
    """Max error of the tables against the float64 network over r in [r_min, cutoff), relative to
    the network's largest value (and derivative) there: {"value": ..., "derivative": ...}."""
    net = copy.deepcopy(model).double()
    tables = fit_radial_tables(model, n_intervals)
    r = torch.linspace(r_min, model.cutoff, samples + 1, dtype=torch.float64)[:-1].requires_grad_(True)
    scale = torch.tensor([i.inv_avg_num_neighbors for i in model.interactions], dtype=torch.float64)
    with torch.enable_grad():
        want = radial_network(net, r).flatten(2) * scale[:, None]  # [S, T, K]
        got = torch.stack([torch.ops.mlffd.radial_spline(r, tables[t], model.cutoff) for t in range(len(scale))], 1)
        weights = torch.randn_like(want)
        (d_want,) = torch.autograd.grad((want * weights).sum(), r, retain_graph=True)
        (d_got,) = torch.autograd.grad((got * weights).sum(), r)
    got, want = got.detach(), want.detach()
    return {"value": float((got - want).abs().max() / want.abs().max()),
            "derivative": float((d_got - d_want).abs().max() / d_want.abs().max())}
