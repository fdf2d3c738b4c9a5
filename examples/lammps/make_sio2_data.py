"""Write sio2.data (alpha quartz unit cell, 9 atoms, types 1 = Si, 2 = O) for in.sio2.

    python make_sio2_data.py            # uses mlffd's built-in `sio2` structure
"""

from mlffd.data.systems import BUILTIN_SYSTEMS
from mlffd.lammps_plugin.runner import lower_triangular, write_data

builder = BUILTIN_SYSTEMS["sio2"][0]
atoms = lower_triangular(builder())
write_data(atoms, "sio2.data", ["Si", "O"])
print(f"wrote sio2.data: {len(atoms)} atoms, cell\n{atoms.cell.array}")
