from mlffd.data.generate import generate_dataset
r = generate_dataset("/work/lab/b30/sio2_rs/data/train.h5", "sevennet-0", ["sio2"], 14, temperatures=[300.0],
                     md_fraction=0.0, fractions={"relaxed_strain": 1.0}, relax=True, seed=7, progress=True)
print(r)
