/* pair_style mlffd: runs a frozen mlffd student (TorchScript .pt, docs/artifact.md) in LAMMPS.

   The torch types live behind a pointer (struct PairMLFFDImpl) so that only pair_mlffd.cpp
   includes the libtorch headers. */

#ifdef PAIR_CLASS
// clang-format off
PairStyle(mlffd,PairMLFFD);
// clang-format on
#else

#ifndef LMP_PAIR_MLFFD_H
#define LMP_PAIR_MLFFD_H

#include "pair.h"

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

struct PairMLFFDImpl;

class PairMLFFD : public Pair {
 public:
  PairMLFFD(class LAMMPS *);
  ~PairMLFFD() override;

  void compute(int, int) override;
  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  double memory_usage() override;
  void *extract_peratom(const char *, int &) override;

 protected:
  void allocate();
  void load_model(const std::string &path);
  void check_units();
  void update_owners();
  void build_graph();
  void run_model(int eflag, int vflag);

  PairMLFFDImpl *impl;

  // metadata of the loaded model
  std::string model_path;
  std::string device_name;       // as given by the user ("cpu", "cuda", "cuda:1")
  double cutoff, cutoffsq;
  int num_interactions;          // L message-passing layers
  int model_double;              // 1: float64 model, 0: float32
  int fold_request;              // pair_style's fold_images: 1 yes, 0 no, -1 not given
  int fold_images;               // in use (init_style): 1: ghosts that are periodic images of
                                 //    local atoms become the local atom's node plus an edge shift
                                 //    (needs atom IDs); 0: ghosts are nodes of their own
  std::vector<std::string> model_elements;
  std::vector<int64_t> type_species;    // per LAMMPS type (1..ntypes): species index, -1: NULL

  // graph buffers, reused between steps (grown, never shrunk)
  int nmax_node_of;
  std::vector<int> node_of;         // LAMMPS atom index -> graph node, -1 if not a node
  std::vector<int> atom_of_node;    // graph node -> LAMMPS atom index
  std::vector<int64_t> edge_i, edge_j;    // centre node, neighbour node (sorted by centre); sized
                                          // to the neighbour list, the first n_edges in use
  std::vector<int64_t> edge_buf;          // [2, E] contiguous copy handed to the model
  std::vector<int64_t> species_buf;       // [N]
  std::vector<double> vec_d;              // [n_edges, 3] edge vectors x_j - x_i (float64, any model dtype)
  int ghost_centres;             // 1: ghosts up to L-1 hops out are centres (ghost neighbour lists)
  int n_nodes, n_edges, n_centres;
  int n_local_nodes;             // the first nodes: local atoms of mapped types (the model's n_local)

  // per-atom uncertainty of the last compute (model output atom_uncertainty), for `fix pair`;
  // 0 for atoms of NULL types; has_uncertainty: the model returned one (0: exported without)
  std::vector<double> uncertainty;
  int has_uncertainty;

  // LAMMPS atom -> local atom with the same tag (periodic image on this rank), -1 if owned elsewhere;
  // recomputed after each neighbour list build
  std::vector<int> owner_of;
  std::unordered_map<tagint, int> local_of_tag;
  bigint owner_stamp;
  int owner_nlocal, owner_nall;
};

}    // namespace LAMMPS_NS

#endif
#endif
