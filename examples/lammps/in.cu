# FCC copper with an exported mlffd model: NVT at 600 K, then NVE.
#   mlffd lammps build                      # once: builds pair_style mlffd, lmp loads it itself
#   lmp -in in.cu -var model /path/to/model.pt
#   mpirun -np 4 lmp -in in.cu -var model /path/to/model.pt
# The model must know Cu (`mlffd info model.pt` lists its elements).

variable model     index model.pt
variable temp      index 500.0
variable nvt_steps index 2000
variable nve_steps index 2000
variable cells     index 3

units           metal
atom_style      atomic
boundary        p p p

lattice         fcc 3.615
region          box block 0 ${cells} 0 ${cells} 0 ${cells}
create_box      1 box
create_atoms    1 box
mass            1 63.546

pair_style      mlffd
pair_coeff      * * ${model} Cu

neighbor        1.0 bin
neigh_modify    every 1 delay 0 check yes

velocity        all create ${temp} 4928459 mom yes rot yes dist gaussian
timestep        0.001

compute         pe all pe/atom
thermo_style    custom step time temp pe ke etotal press vol
thermo          100

fix             nvt all nvt temp ${temp} ${temp} 0.1
run             ${nvt_steps}
unfix           nvt

fix             nve all nve
run             ${nve_steps}
