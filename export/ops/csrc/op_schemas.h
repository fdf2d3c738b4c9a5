// Schemas of the mlffd ops that have device kernels: one copy, used by the real library
// (namespace mlffd) and by the host emulation of the CUDA kernels (namespace mlffd_cuda_emulation).
#pragma once

namespace mlffd {
namespace schema {

constexpr const char* kConvScatterH =
    "conv_scatter_h(Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, int lmax) -> Tensor";
constexpr const char* kConvScatterHBackward =
    "conv_scatter_h_backward(Tensor grad_out, Tensor radial, Tensor h, Tensor sh, Tensor centre, Tensor neighbour, "
    "int lmax, bool need_h) -> (Tensor, Tensor, Tensor)";
constexpr const char* kEdgeForcesVirial =
    "edge_forces_virial(Tensor edge_grad, Tensor edge_vec, Tensor rowptr, Tensor nb_order, Tensor nb_start) "
    "-> (Tensor, Tensor, Tensor)";
constexpr const char* kEdgeGraph =
    "edge_graph(Tensor centre, Tensor neighbour, int n_nodes) -> (Tensor rowptr, Tensor nb_order, Tensor nb_start)";
constexpr const char* kRadialSpline = "radial_spline(Tensor length, Tensor table, float r_max) -> Tensor";
constexpr const char* kRadialSplineBackward =
    "radial_spline_backward(Tensor grad_out, Tensor length, Tensor table, float r_max) -> Tensor";
constexpr const char* kSplineConv =
    "spline_conv(Tensor vec, Tensor h, Tensor table, Tensor neighbour, Tensor rowptr, Tensor nb_order, "
    "Tensor nb_start, float r_max, int lmax) -> Tensor";
constexpr const char* kSplineConvBackward =
    "spline_conv_backward(Tensor grad_out, Tensor vec, Tensor h, Tensor table, Tensor neighbour, Tensor rowptr, "
    "Tensor nb_order, Tensor nb_start, float r_max, int lmax, bool need_h) -> (Tensor, Tensor)";

}  // namespace schema
}  // namespace mlffd
