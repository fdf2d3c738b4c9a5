// Schemas of the mlffd ops that have device kernels: one copy, used by the real library
// (namespace mlffd) and by the host emulation of the CUDA kernels (namespace mlffd_cuda_emulation).
#pragma once

namespace mlffd {
namespace schema {

constexpr const char* kConvScatter = "conv_scatter(Tensor weights, Tensor sh, Tensor centre, int n_nodes, int lmax) -> Tensor";
constexpr const char* kConvScatterBackward =
    "conv_scatter_backward(Tensor grad_out, Tensor weights, Tensor sh, Tensor centre, int lmax) -> (Tensor, Tensor)";
constexpr const char* kConvScatterH =
    "conv_scatter_h(Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, int lmax) -> Tensor";
constexpr const char* kConvScatterHBackward =
    "conv_scatter_h_backward(Tensor grad_out, Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, "
    "int lmax, bool need_h) -> (Tensor, Tensor, Tensor)";
constexpr const char* kEdgeGeometry = "edge_geometry(Tensor vec, int lmax) -> (Tensor, Tensor)";
constexpr const char* kEdgeGeometryBackward =
    "edge_geometry_backward(Tensor grad_length, Tensor grad_sh, Tensor vec, int lmax) -> Tensor";
constexpr const char* kEdgeForcesVirial =
    "edge_forces_virial(Tensor edge_grad, Tensor edge_vec, Tensor centre, Tensor neighbour, int n_nodes) "
    "-> (Tensor, Tensor, Tensor)";

}  // namespace schema
}  // namespace mlffd
