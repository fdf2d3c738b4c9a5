// Host-side plumbing the CPU op files share (fused_edge.cpp, spline_edge.cpp): the first-order-only
// message, the OpenMP grain size, and calls through the dispatcher.
#pragma once

#include <ATen/core/dispatch/Dispatcher.h>

#include <algorithm>
#include <cstdint>

namespace mlffd {

constexpr const char* kFirstOrderOnly =
    ": only first-order gradients are implemented (export-only fused op); double backward / "
    "create_graph=True needs the reference modules (training path)";

// Items per OpenMP task so that each task does at least ~16k multiply-adds.
inline int64_t grain(int64_t work_per_item) {
  return std::max<int64_t>(1, 16384 / std::max<int64_t>(1, work_per_item));
}

// Calls through the dispatcher, so that the kernel of the tensors' device runs.
template <typename Signature>
c10::TypedOperatorHandle<Signature> find_op(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Signature>();
}

}  // namespace mlffd
