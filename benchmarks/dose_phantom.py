"""The +50 HU water-phantom numbers and figure of docs/dose.md (the geometry of tests/dose/test_dose.py).

    OMP_NUM_THREADS=1 python -m benchmarks.dose_phantom      # from the repository root (it imports the test's phantom)

needs medgan[dose]; writes docs/figures/dose_phantom_plus50.png
"""
import time

import numpy as np

import tests.dose.test_dose as T
from medgan.dose import DoseOptions, run_dose
from medgan.dose.backend import relative_stopping_power
from medgan.dose.recompute import summary_line
from medgan.dose.report import dose_figure

ct, body = T.phantom()
soft = body & (ct.array > -100) & (ct.array < 100)
images = {"sCT": ct.with_array(np.where(soft, ct.array + 50.0, ct.array).astype(np.float32))}
for modality, opts in (("proton", dict(proton_angles=(90, 270))), ("photon", dict(photon_angles=(0, 120, 240)))):
    t0 = time.time()
    res = run_dose(ct, images, T.TARGET, None, DoseOptions(modality=modality, site="abdomen", dose_grid_mm=4.0,
                                                           bixel_mm=8.0, gamma_subset=None, **opts))
    print(modality, "seconds", round(time.time() - t0, 1), res.modalities[modality].seconds)
    row = res.rows[0]
    print(summary_line(row))
    print({k: round(v, 3) for k, v in row.items() if isinstance(v, float)})
    if modality == "proton":
        rsp0, rsp1 = relative_stopping_power([0.0, 50.0])
        pred = []
        for beam in res.modalities["proton"].ranges["sCT"]:
            for o, t in zip(beam["origin"], beam["t_ref"], strict=True):
                pred.append(-(t - T.ellipse_entry(o, beam["direction"])) * (1 - rsp0 / rsp1))
        print("predicted mean shift", np.mean(pred), "measured", row["range_shift_mean_mm"], "ratio",
              row["range_shift_mean_mm"] / np.mean(pred))
        dose_figure(res, "docs/figures/dose_phantom_plus50.png")
