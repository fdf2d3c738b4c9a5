/* pair_style mlffd: runs a frozen mlffd student (TorchScript .pt) inside LAMMPS.

   Contract (docs/artifact.md, format 3):
     out = model(edge_vec [E,3] float64, species [N], edge_index [2,E] sorted by centre, n_local)
     (edge_vec = x_j - x_i from LAMMPS's double coordinates, so precision does not depend on where
     the box is)
     out: energy [], atom_energy [n_local], forces [N,3], virial [3,3], atom_virial [N,6] (ASE Voigt
     order; format 2: LAMMPS order)

   Graph construction on each rank: the local atoms of the types mapped to elements (all types,
   or the non-NULL ones under pair_style hybrid) are the first nodes and the first centres. With L message-passing layers, a breadth-first pass over the
   LAMMPS full neighbour list (pairs closer than the model cutoff) adds the ghost atoms reached in
   1..L hops as further nodes, in hop order; the nodes reached in fewer than L hops are centres too
   (their features feed the local energies), the ones reached in exactly L hops are leaves. For
   L > 1 the ghost shell is widened to L * cutoff + skin and LAMMPS builds neighbour lists of ghost
   atoms as well (REQ_GHOST). Forces on ghost nodes are summed back to their owners by LAMMPS
   (newton on), so any number of MPI ranks gives the same result as one.
*/

#include "pair_mlffd.h"
#include "mlffd_contract.h"    // generated from export/contract.py (CMakeLists.txt)

#include "atom.h"
#include "comm.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "platform.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/cuda.h>
#include <torch/script.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <map>
#include <sstream>

using namespace LAMMPS_NS;


namespace LAMMPS_NS {
struct PairMLFFDImpl {
  torch::jit::Module model;
  bool loaded = false;
  // the model's per-atom virial is in mlffd's (ASE's) Voigt order: LAMMPS's vatom needs it permuted
  bool ase_voigt = true;
  torch::Device device{torch::kCPU};
  std::vector<torch::jit::IValue> inputs;
  // MLFFD_PROFILE=1: time in compute(), in building the graph and in the model's forward,
  // printed at the end
  bool profile = false;
  double t_compute = 0.0, t_graph = 0.0, t_forward = 0.0;
  long ncalls = 0;
};

static double wall_seconds()
{
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}    // namespace LAMMPS_NS

/* ---------------------------------------------------------------------- */

PairMLFFD::PairMLFFD(LAMMPS *lmp) : Pair(lmp)
{
  impl = new PairMLFFDImpl();
  const char *prof = std::getenv("MLFFD_PROFILE");
  impl->profile = prof && *prof && strcmp(prof, "0") != 0;
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // the virial comes from the model
  centroidstressflag = CENTROID_NOTAVAIL;
  ghostneigh = 0;                 // set to 1 for L > 1 once the model is known

  device_name = "cpu";
  cutoff = cutoffsq = 0.0;
  num_interactions = 1;
  model_double = 1;
  nmax_node_of = 0;
  fold_request = -1;
  fold_images = 1;
  ghost_centres = 0;
  owner_stamp = -1;
  owner_nlocal = owner_nall = -1;
  n_nodes = n_edges = n_centres = n_local_nodes = 0;
  has_uncertainty = -1;    // not known until the first compute
}

/* ---------------------------------------------------------------------- */

PairMLFFD::~PairMLFFD()
{
  if (copymode) return;
  if (impl->profile && impl->ncalls > 0)
    utils::logmesg(lmp,
                   "mlffd profile (rank {}): {} calls, compute {:.6f} s/call, graph {:.6f} s/call, "
                   "model forward {:.6f} s/call, plugin overhead {:.2f}%\n",
                   comm->me, impl->ncalls, impl->t_compute / impl->ncalls,
                   impl->t_graph / impl->ncalls, impl->t_forward / impl->ncalls,
                   100.0 * (impl->t_compute - impl->t_forward) / impl->t_forward);
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
    memory->destroy(cutghost);
  }
  delete impl;
}

/* ---------------------------------------------------------------------- */

void PairMLFFD::allocate()
{
  allocated = 1;
  int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  memory->create(cutghost, n, n, "pair:cutghost");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) {
      setflag[i][j] = 0;
      cutsq[i][j] = 0.0;
      cutghost[i][j] = 0.0;
    }
}

/* ---------------------------------------------------------------------- */

void PairMLFFD::check_units()
{
  if (strcmp(update->unit_style, "metal") != 0)
    error->all(FLERR,
               "Pair style mlffd requires 'units metal' (mlffd models use eV and Angstrom), "
               "but units are '{}'",
               update->unit_style);
}

/* ----------------------------------------------------------------------
   pair_style mlffd [device cpu|cuda|cuda:N]
------------------------------------------------------------------------- */

void PairMLFFD::settings(int narg, char **arg)
{
  check_units();
  const torch::Device previous_device = impl->device;
  device_name = "cpu";
  fold_request = -1;
  owner_stamp = -1;
  int iarg = 0;
  while (iarg < narg) {
    if (strcmp(arg[iarg], "device") == 0) {
      if (iarg + 1 >= narg) error->all(FLERR, "Pair style mlffd: 'device' needs a value (cpu or cuda)");
      std::string dev = arg[iarg + 1];
      if (dev != "cpu" && dev != "cuda" && !utils::strmatch(dev, "^cuda:\\d+$"))
        error->all(FLERR, "Pair style mlffd: unknown device '{}' (use cpu, cuda or cuda:N)", dev);
      device_name = dev;
      iarg += 2;
    } else if (strcmp(arg[iarg], "fold_images") == 0) {
      if (iarg + 1 >= narg) error->all(FLERR, "Pair style mlffd: 'fold_images' needs yes or no");
      fold_request = utils::logical(FLERR, arg[iarg + 1], false, lmp);
      iarg += 2;
    } else {
      error->all(FLERR,
                 "Pair style mlffd: unknown keyword '{}'. Usage: pair_style mlffd [device cpu|cuda] "
                 "[fold_images yes|no]",
                 arg[iarg]);
    }
  }

  if (device_name == "cpu") {
    impl->device = torch::Device(torch::kCPU);
  } else {
    if (!torch::cuda::is_available())
      error->all(FLERR,
                 "Pair style mlffd: device '{}' requested but this libtorch has no usable CUDA "
                 "(CPU-only build or no GPU visible)",
                 device_name);
    int index;
    if (device_name == "cuda") {
      // one GPU per rank, round robin over the visible devices
      index = comm->me % (int) torch::cuda::device_count();
    } else {
      index = std::atoi(device_name.c_str() + 5);
    }
    impl->device = torch::Device(torch::kCUDA, index);
  }
  // a different device needs the model loaded again: pair_coeff must follow
  if (impl->loaded && impl->device != previous_device) impl->loaded = false;
}

/* ----------------------------------------------------------------------
   read the flat metadata, then load the TorchScript module
------------------------------------------------------------------------- */

void PairMLFFD::load_model(const std::string &path)
{
  if (!platform::file_is_readable(path))
    error->all(FLERR, "Pair style mlffd: cannot read model file '{}'", path);

  // 1. metadata (read from the zip before loading the graph, so that foreign or newer files are
  //    refused with a clear message rather than a TorchScript error)
  std::string text;
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);
    std::string record = std::string("extra/") + MLFFD_METADATA_TXT;
    if (!reader.hasRecord(record))
      error->all(FLERR,
                 "Pair style mlffd: '{}' is not an mlffd model: it has no {} (write models with "
                 "'mlffd export')",
                 path, MLFFD_METADATA_TXT);
    auto data = reader.getRecord(record);
    text.assign(static_cast<const char *>(std::get<0>(data).get()), std::get<1>(data));
  } catch (const c10::Error &e) {
    error->all(FLERR,
               "Pair style mlffd: '{}' is not an mlffd model (not a TorchScript archive): {}",
               path, e.what_without_backtrace());
  }

  std::map<std::string, std::vector<std::string>> meta;
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    auto hash = line.find('#');
    if (hash != std::string::npos) line = line.substr(0, hash);
    std::istringstream words(line);
    std::string key, word;
    if (!(words >> key)) continue;
    std::vector<std::string> values;
    while (words >> word) values.push_back(word);
    meta[key] = values;
  }
  auto one = [&](const char *key) -> std::string {
    auto it = meta.find(key);
    if (it == meta.end() || it->second.size() != 1)
      error->all(FLERR, "Pair style mlffd: model '{}': metadata key '{}' is missing or malformed",
                 path, key);
    return it->second[0];
  };

  if (meta.count("format") == 0 || meta["format"].empty() || meta["format"][0] != MLFFD_FORMAT)
    error->all(FLERR, "Pair style mlffd: '{}' is not an mlffd model (metadata 'format' is not mlffd)",
               path);
  int version = utils::inumeric(FLERR, one("format_version"), false, lmp);
  if (version > MLFFD_FORMAT_VERSION)
    error->all(FLERR,
               "Pair style mlffd: model '{}' has format_version {}, newer than the {} this plugin "
               "reads; rebuild the plugin from a newer mlffd ('mlffd lammps build')",
               path, version, MLFFD_FORMAT_VERSION);
  if (version < MLFFD_OLDEST_FORMAT_VERSION)
    error->all(FLERR,
               "Pair style mlffd: model '{}' has format_version {} (positions as input), which this "
               "plugin no longer runs; re-export it with 'mlffd export RUN_DIR -o model.pt'",
               path, version);
  std::string units = meta.count("units") && !meta["units"].empty() ? meta["units"][0] : "metal";
  if (units != "metal")
    error->all(FLERR, "Pair style mlffd: model '{}' is in units '{}'; only metal is supported", path,
               units);
  double rc = utils::numeric(FLERR, one("cutoff"), false, lmp);
  if (!(rc > 0.0)) error->all(FLERR, "Pair style mlffd: model '{}' has cutoff {}", path, rc);
  int nint = utils::inumeric(FLERR, one("num_interactions"), false, lmp);
  if (nint < 1)
    error->all(FLERR, "Pair style mlffd: model '{}' has num_interactions {}", path, nint);
  std::string dtype = one("dtype");
  if (dtype != "float64" && dtype != "float32")
    error->all(FLERR, "Pair style mlffd: model '{}' has dtype '{}' (float32 or float64 expected)",
               path, dtype);
  if (meta.count("elements") == 0 || meta["elements"].empty())
    error->all(FLERR, "Pair style mlffd: model '{}' lists no elements", path);
  std::vector<std::string> ops = meta.count("ops") ? meta["ops"] : std::vector<std::string>();

  // 2. the TorchScript module
  try {
    impl->model = torch::jit::load(path, impl->device);
    impl->model.eval();
  } catch (const c10::Error &e) {
    std::string msg = e.what_without_backtrace();
    std::string hint;
    if (!ops.empty() || msg.find("mlffd::") != std::string::npos) {
#ifdef MLFFD_HAVE_OPS
      hint = " (the model needs custom ops; this plugin has the mlffd ops compiled in, so the "
             "model may need ops from a newer mlffd: rebuild with 'mlffd lammps build')";
#else
      hint = " (the model needs the mlffd custom ops, but this plugin was built without "
             "export/ops/csrc: rebuild it with 'mlffd lammps build')";
#endif
    }
    error->all(FLERR, "Pair style mlffd: cannot load model '{}': {}{}", path,
               msg.substr(0, msg.find('\n')), hint);
  }

  impl->loaded = true;
  impl->ase_voigt = version >= MLFFD_ASE_VOIGT_FORMAT;
  model_path = path;
  cutoff = rc;
  cutoffsq = rc * rc;
  num_interactions = nint;
  model_double = dtype == "float64" ? 1 : 0;
  model_elements = meta["elements"];

  if (comm->me == 0) {
    std::string els;
    for (const auto &e : model_elements) els += " " + e;
    utils::logmesg(lmp,
                   "mlffd: loaded '{}' (cutoff {} A, {} interaction layer(s), {}, elements{}) on "
                   "{}, torch threads {}\n",
                   path, cutoff, num_interactions, dtype, els, impl->device.str(),
                   at::get_num_threads());
  }
}

/* ----------------------------------------------------------------------
   pair_coeff * * model.pt El_1 ... El_ntypes   (El_t = NULL: type t is left to other styles)
------------------------------------------------------------------------- */

void PairMLFFD::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg < 3 || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "Pair style mlffd: usage: pair_coeff * * model.pt El_1 ... El_{} "
                      "(one element or NULL per atom type)",
               ntypes);
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "Pair style mlffd: pair_coeff got {} element(s) for {} atom type(s); usage: "
               "pair_coeff * * model.pt El_1 ... El_{} (one element or NULL per atom type, in type "
               "order)",
               narg - 3, ntypes, ntypes);

  std::string path = arg[2];
  if (!impl->loaded || path != model_path) load_model(path);

  type_species.assign(ntypes + 1, -1);
  int nmapped = 0;
  for (int t = 1; t <= ntypes; t++) {
    std::string el = arg[2 + t];
    if (el == "NULL") {    // not in the mlffd graph: another (hybrid) style handles it
      if (force->pair == this)    // not a sub-style of pair_style hybrid
        error->all(FLERR,
                   "Pair style mlffd: atom type {} is NULL in pair_coeff, but no other pair style "
                   "handles it; use pair_style hybrid (or hybrid/overlay) with a style for that type",
                   t);
      continue;
    }
    nmapped++;
    int k = -1;
    for (int m = 0; m < (int) model_elements.size(); m++)
      if (model_elements[m] == el) k = m;
    if (k < 0) {
      std::string els;
      for (const auto &e : model_elements) els += (els.empty() ? "" : " ") + e;
      error->all(FLERR,
                 "Pair style mlffd: element '{}' (atom type {}) is not known to model '{}' "
                 "(its elements: {})",
                 el, t, path, els);
    }
    type_species[t] = k;
  }
  if (nmapped == 0)
    error->all(FLERR, "Pair style mlffd: pair_coeff maps every atom type to NULL; give at least one "
                      "type an element of model '{}'",
               path);

  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = type_species[i] >= 0 && type_species[j] >= 0;
}

/* ---------------------------------------------------------------------- */

void PairMLFFD::init_style()
{
  check_units();
  if (!impl->loaded)
    error->all(FLERR, "Pair style mlffd: no model loaded; use pair_coeff * * model.pt El_1 ... "
                      "(after pair_style, and again after changing the device)");
  if (force->newton_pair == 0)
    error->all(FLERR,
               "Pair style mlffd requires 'newton on' (newton pair on): forces on ghost atoms "
               "are summed back to their owners by LAMMPS");
  // Folding finds the local atom a ghost is an image of by its atom ID. Without IDs
  // ('atom_modify id no') every ghost is a graph node of its own: the same numbers, no tags needed.
  if (atom->tag_enable == 0) {
    if (fold_request == 1)
      error->all(FLERR,
                 "Pair style mlffd: 'fold_images yes' needs atom IDs, but 'atom_modify id no' is "
                 "set; use 'fold_images no' (the default without IDs) or remove 'atom_modify id no'");
    if (comm->me == 0)
      utils::logmesg(lmp, "mlffd: no atom IDs (atom_modify id no): ghost atoms are graph nodes "
                          "of their own (fold_images no)\n");
    fold_images = 0;
  } else {
    fold_images = fold_request != 0;
  }
  owner_stamp = -1;

  // Message passing over L layers sees L * cutoff. On one rank with folded images every ghost is
  // an image of a local atom, so the local atoms are the only centres and the usual ghost shell
  // suffices. Otherwise ghosts up to L - 1 hops out are centres too: they need neighbour lists of
  // their own and a ghost shell of L * cutoff + skin.
  ghost_centres = (num_interactions > 1) && (comm->nprocs > 1 || !fold_images);
  ghostneigh = ghost_centres ? 1 : 0;
  int flags = NeighConst::REQ_FULL;
  if (ghost_centres) flags |= NeighConst::REQ_GHOST;
  neighbor->add_request(this, flags);

  if (ghost_centres) {
    double need = num_interactions * cutoff + neighbor->skin;
    if (comm->cutghostuser < need) {
      comm->cutghostuser = need;
      if (comm->me == 0)
        utils::logmesg(lmp,
                       "mlffd: {} interaction layers x cutoff {} A: ghost cutoff set to {} A "
                       "(L * cutoff + skin)\n",
                       num_interactions, cutoff, need);
    }
  }
}

/* ---------------------------------------------------------------------- */

double PairMLFFD::init_one(int i, int j)
{
  if (setflag[i][j] == 0) error->all(FLERR, "All pair coeffs are not set");
  cutghost[i][j] = cutghost[j][i] = cutoff;
  return cutoff;
}

/* ----------------------------------------------------------------------
   ghost -> local atom of the same tag, when the ghost is a periodic image of an atom this rank
   owns (all ghosts on one rank). Changes only when the neighbour lists are rebuilt.
------------------------------------------------------------------------- */

void PairMLFFD::update_owners()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  if (owner_stamp == neighbor->ncalls && owner_nlocal == nlocal && owner_nall == nall &&
      (int) owner_of.size() >= nall)
    return;
  owner_stamp = neighbor->ncalls;
  owner_nlocal = nlocal;
  owner_nall = nall;
  if ((int) owner_of.size() < nall) owner_of.resize(atom->nmax > nall ? atom->nmax : nall);
  for (int i = 0; i < nlocal; i++) owner_of[i] = i;
  if (!fold_images) {
    for (int j = nlocal; j < nall; j++) owner_of[j] = -1;
    return;
  }
  tagint *tag = atom->tag;
  local_of_tag.clear();
  local_of_tag.reserve(nlocal);
  for (int i = 0; i < nlocal; i++) local_of_tag[tag[i]] = i;
  for (int j = nlocal; j < nall; j++) {
    auto it = local_of_tag.find(tag[j]);
    owner_of[j] = it == local_of_tag.end() ? -1 : it->second;
  }
}

/* ----------------------------------------------------------------------
   breadth-first graph over local atoms and the ghosts within L hops
------------------------------------------------------------------------- */

void PairMLFFD::build_graph()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  int *type = atom->type;
  int *numneigh = list->numneigh;
  int **firstneigh = list->firstneigh;
  const double min_distsq = MLFFD_MIN_DISTANCE * MLFFD_MIN_DISTANCE;

  update_owners();
  if (nall > nmax_node_of) {
    nmax_node_of = atom->nmax > nall ? atom->nmax : nall;
    node_of.assign(nmax_node_of, -1);
  }
  atom_of_node.clear();
  // local atoms of mapped types (under pair_style hybrid the list skips the others)
  for (int ii = 0; ii < list->inum; ii++) {
    const int i = list->ilist[ii];
    if (type_species[type[i]] < 0) continue;
    node_of[i] = (int) atom_of_node.size();
    atom_of_node.push_back(i);
  }
  n_local_nodes = (int) atom_of_node.size();

  // nodes [start, end) are the centres at hop distance `depth` from the local atoms. Every
  // neighbour is written and the edge count advances only inside the cutoff: no branch on the
  // distance (about 1 in 3 list entries is an edge), so the buffers hold the whole list.
  int start = 0, end = n_local_nodes;
  int64_t E = 0;
  const int ncentre_layers = ghost_centres ? num_interactions : 1;
  for (int depth = 0; depth < ncentre_layers; depth++) {
    int64_t capacity = E;
    for (int n = start; n < end; n++) capacity += numneigh[atom_of_node[n]];
    if ((int64_t) edge_i.size() < capacity + 1) {
      const int64_t grown = capacity + capacity / 4 + 1;
      edge_i.resize(grown);
      edge_j.resize(grown);
      vec_d.resize(3 * grown);
    }
    int64_t *ei = edge_i.data(), *ej = edge_j.data();
    double *vd = vec_d.data();
    for (int n = start; n < end; n++) {
      const int i = atom_of_node[n];
      const double xi = x[i][0], yi = x[i][1], zi = x[i][2];
      const int *jlist = firstneigh[i];
      const int jnum = numneigh[i];
      for (int jj = 0; jj < jnum; jj++) {
        const int j = jlist[jj] & NEIGHMASK;
        if (type_species[type[j]] < 0) continue;
        const double dx = x[j][0] - xi, dy = x[j][1] - yi, dz = x[j][2] - zi;
        const double rsq = dx * dx + dy * dy + dz * dz;
        const bool inside = rsq < cutoffsq;
        if (rsq < min_distsq) {
          std::string ids = atom->tag_enable
              ? fmt::format(" (atom IDs {} and {})", atom->tag[i], atom->tag[j])
              : std::string();
          error->one(FLERR,
                     "Pair style mlffd: atoms overlap: two atoms are {:.3f} A apart (< {} A){}; "
                     "remove duplicated atoms or fix the structure",
                     std::sqrt(rsq), MLFFD_MIN_DISTANCE, ids);
        }
        // a local atom or an image of one is its owner's node; the edge vector is the actual one
        const int o = owner_of[j];
        int nj = node_of[o >= 0 ? o : j];
        if (nj < 0 && inside) {
          nj = (int) atom_of_node.size();
          node_of[j] = nj;
          atom_of_node.push_back(j);
        }
        vd[3 * E] = dx;
        vd[3 * E + 1] = dy;
        vd[3 * E + 2] = dz;
        ei[E] = n;
        ej[E] = nj;
        E += inside;
      }
    }
    start = end;
    end = (int) atom_of_node.size();
  }
  n_centres = start;
  n_nodes = (int) atom_of_node.size();
  if (!ghost_centres && num_interactions > 1 && n_nodes > n_local_nodes)
    error->one(FLERR, "Pair style mlffd: {} ghost atom(s) are not images of local atoms on a single "
                      "rank; use 'pair_style mlffd fold_images no'", n_nodes - n_local_nodes);
  n_edges = (int) E;

  // inputs in the model's layout (edge vectors stay float64: the model casts them once)
  const int N = n_nodes;
  species_buf.resize(N > 0 ? N : 1);
  for (int n = 0; n < N; n++) {
    const int i = atom_of_node[n];
    node_of[i] = -1;    // reset for the next step
    species_buf[n] = type_species[type[i]];
  }
  edge_buf.resize(2 * (E > 0 ? E : 1));
  if (E > 0) {
    memcpy(edge_buf.data(), edge_i.data(), sizeof(int64_t) * E);
    memcpy(edge_buf.data() + E, edge_j.data(), sizeof(int64_t) * E);
  }
}

/* ---------------------------------------------------------------------- */

void PairMLFFD::run_model(int eflag, int vflag)
{
  const int nlocal = n_local_nodes;
  const int N = n_nodes, E = n_edges;
  const bool on_cpu = impl->device.is_cpu();

  torch::Tensor vec = torch::from_blob(vec_d.data(), {E, 3}, torch::kFloat64);
  torch::Tensor species = torch::from_blob(species_buf.data(), {N}, torch::kInt64);
  torch::Tensor edge_index = torch::from_blob(edge_buf.data(), {2, E}, torch::kInt64);
  if (!on_cpu) {
    vec = vec.to(impl->device);
    species = species.to(impl->device);
    edge_index = edge_index.to(impl->device);
  }

  auto &inputs = impl->inputs;
  inputs.clear();
  inputs.emplace_back(vec);
  inputs.emplace_back(species);
  inputs.emplace_back(edge_index);
  inputs.emplace_back((int64_t) nlocal);

  c10::IValue result;
  const double t0 = impl->profile ? wall_seconds() : 0.0;
  try {
    result = impl->model.forward(inputs);
    if (impl->profile) impl->t_forward += wall_seconds() - t0;
  } catch (const std::exception &e) {
    std::string msg = e.what();
    error->one(FLERR, "Pair style mlffd: model '{}' failed ({} nodes, {} edges): {}", model_path, N,
               E, msg.substr(0, 2000));
  }
  inputs.clear();
  if (!result.isGenericDict())
    error->one(FLERR, "Pair style mlffd: model '{}' did not return a Dict[str, Tensor]", model_path);
  auto out = result.toGenericDict();

  auto get = [&](const char *key, int64_t rows, int64_t cols) -> torch::Tensor {
    auto it = out.find(std::string(key));
    if (it == out.end())
      error->one(FLERR, "Pair style mlffd: model '{}' returned no '{}'", model_path, key);
    torch::Tensor t = it->value().toTensor();
    if (t.numel() != rows * cols)
      error->one(FLERR, "Pair style mlffd: model output '{}' has {} values, expected {}", key,
                 t.numel(), rows * cols);
    return t.to(torch::kCPU, torch::kFloat64).contiguous();
  };

  // forces on every node: ghosts included (reverse communication sums them to the owners)
  {
    torch::Tensor ft = get("forces", N, 3);
    const double *fp = ft.data_ptr<double>();
    double **f = atom->f;
    for (int n = 0; n < N; n++) {
      const int i = atom_of_node[n];
      f[i][0] += fp[3 * n];
      f[i][1] += fp[3 * n + 1];
      f[i][2] += fp[3 * n + 2];
    }
  }

  // per-atom uncertainty (docs/artifact.md): empty, or absent from files exported before it existed
  {
    auto it = out.find(std::string("atom_uncertainty"));
    has_uncertainty = it != out.end() && it->value().toTensor().numel() == nlocal;
    if (has_uncertainty) {
      torch::Tensor ut = get("atom_uncertainty", nlocal, 1);
      const double *up = ut.data_ptr<double>();
      for (int n = 0; n < nlocal; n++) uncertainty[atom_of_node[n]] = up[n];
    }
  }

  if (eflag_global) eng_vdwl += get("energy", 1, 1).data_ptr<double>()[0];
  if (eflag_atom) {
    torch::Tensor ae = get("atom_energy", nlocal, 1);
    const double *ep = ae.data_ptr<double>();
    for (int n = 0; n < nlocal; n++) eatom[atom_of_node[n]] += ep[n];
  }
  if (vflag_global) {
    torch::Tensor wt = get("virial", 3, 3);
    const double *w = wt.data_ptr<double>();
    virial[0] += w[0];
    virial[1] += w[4];
    virial[2] += w[8];
    virial[3] += 0.5 * (w[1] + w[3]);
    virial[4] += 0.5 * (w[2] + w[6]);
    virial[5] += 0.5 * (w[5] + w[7]);
  }
  if (vflag_atom) {
    torch::Tensor av = get("atom_virial", N, 6);
    const double *vp = av.data_ptr<double>();
    for (int n = 0; n < N; n++) {
      double *va = vatom[atom_of_node[n]];
      for (int k = 0; k < 6; k++)
        va[k] += vp[6 * n + (impl->ase_voigt ? MLFFD_ATOM_VIRIAL_TO_LAMMPS[k] : k)];
    }
  }
}

/* ---------------------------------------------------------------------- */

void PairMLFFD::compute(int eflag, int vflag)
{
  const double t0 = impl->profile ? wall_seconds() : 0.0;
  ev_init(eflag, vflag);
  build_graph();
  if (impl->profile) impl->t_graph += wall_seconds() - t0;
  if ((int) uncertainty.size() < atom->nmax) uncertainty.resize(atom->nmax);
  std::fill(uncertainty.begin(), uncertainty.begin() + atom->nlocal, 0.0);
  if (n_local_nodes == 0) return;    // no atoms of mapped types here: no energy, no forces
  run_model(eflag, vflag);
  if (impl->profile) {
    impl->t_compute += wall_seconds() - t0;
    impl->ncalls++;
  }
}

/* ----------------------------------------------------------------------
   per-atom quantities for `fix ID group pair N mlffd uncertainty 0`: each local atom's
   uncertainty at the last compute (~1 on the training atoms; docs/artifact.md)
------------------------------------------------------------------------- */

void *PairMLFFD::extract_peratom(const char *name, int &ncol)
{
  if (strcmp(name, "uncertainty") != 0) return nullptr;
  ncol = 0;
  if (has_uncertainty == 0)
    error->one(FLERR, "Pair style mlffd: model '{}' carries no uncertainty (exported before mlffd kept "
               "descriptor statistics, or from an architecture without a descriptor): retrain and export it",
               model_path);
  if ((int) uncertainty.size() < atom->nmax) uncertainty.resize(atom->nmax, 0.0);    // before the first run
  return uncertainty.data();
}

/* ---------------------------------------------------------------------- */

double PairMLFFD::memory_usage()
{
  double bytes = Pair::memory_usage();
  bytes += sizeof(int) * (node_of.capacity() + atom_of_node.capacity());
  bytes += sizeof(int64_t) *
      (edge_i.capacity() + edge_j.capacity() + edge_buf.capacity() + species_buf.capacity());
  bytes += sizeof(double) * (vec_d.capacity() + uncertainty.capacity());
  return bytes;
}
