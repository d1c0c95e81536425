"""Numbers from the official repository, transcribed, with where each comes from.

facebookresearch/luckmatters, ssl/real-dataset/scan_snap/figure_4.log (Fig. 4 run, seed 2) and
scan_snap/figure_6_data.pkl (the aggregated table behind Fig. 6: mean ± std over seeds 1..10 of the
final "entropy"), ssl/real-dataset/joma/draw_figure_4.py (the toy's constants).
"""

from __future__ import annotations

# figure_4.log: "[t] loss: ..." (printed every save_per_minibatch=2 iterations, float32 on CUDA).
FIG4_LOSS = {0: 3.526359796524048, 2: 2.3679099082946777, 4: 0.733475387096405, 6: 0.16080491244792938,
             8: 0.04442878067493439, 10: 0.012952473945915699, 12: 0.004386259242892265,
             14: 0.0018097831634804606, 16: 0.0006407027249224484, 18: 0.0004101922386325896,
             20: 0.00020543375285342336, 50: 2.5783052478800528e-05, 98: 2.2223721316549927e-05}

# figure_6.log, job 0 (seed 1, num_last 1, lr_z 0.5, lr_y_multi_on_z 1, zero_init false).
FIG6_JOB0_LOSS = {0: 3.4548568725585938, 2: 2.876297950744629, 4: 1.758272409439087, 6: 0.7731755375862122,
                  10: 0.16166242957115173, 98: 0.0005514727672562003}

# figure_6_data.pkl: (num_last, lr_z, lr_y_multi_on_z) -> (mean, std) of the final entropy, 10 seeds.
_RATIOS = (1, 2, 5, 10)
_TABLE = {
    1: {0.5: ((1.971, .028), (2.007, .032), (2.066, .017), (2.092, .016)),
        1.0: ((1.871, .052), (1.937, .052), (2.022, .036), (2.053, .030)),
        2.0: ((1.699, .101), (1.810, .099), (1.934, .068), (1.900, .200)),
        3.0: ((1.551, .155), (1.708, .152), (1.786, .170), (1.825, .331))},
    3: {0.5: ((2.019, .010), (1.988, .012), (2.031, .007), (2.063, .005)),
        1.0: ((1.963, .015), (1.920, .018), (1.982, .009), (2.024, .008)),
        2.0: ((1.842, .024), (1.809, .027), (1.899, .018), (1.955, .020)),
        3.0: ((1.737, .032), (1.715, .038), (1.821, .030), (1.839, .100))},
    5: {0.5: ((2.026, .005), (1.994, .007), (2.020, .007), (2.055, .006)),
        1.0: ((1.995, .007), (1.931, .011), (1.971, .010), (2.014, .009)),
        2.0: ((1.906, .012), (1.816, .022), (1.884, .020), (1.926, .025)),
        3.0: ((1.817, .021), (1.718, .032), (1.802, .033), (1.831, .050))},
    10: {0.5: ((2.033, .004), (2.012, .004), (2.018, .004), (2.051, .003)),
         1.0: ((2.027, .003), (1.975, .005), (1.976, .006), (2.015, .006)),
         2.0: ((1.990, .005), (1.888, .009), (1.899, .013), (1.947, .015)),
         3.0: ((1.940, .006), (1.805, .013), (1.829, .019), (1.875, .023))},
}
FIG6_ENTROPY = {(nl, lz, r): v for nl, row in _TABLE.items() for lz, vals in row.items() for r, v in zip(_RATIOS, vals)}

# joma/draw_figure_4.py
JOMA_TOY = dict(seed=0, n=10, eta=0.02, T=3.0, v0=0.05, niter=5000)

# joma/wikitext2_multilayer_lr.pt, lr 1e-4, nlayers 3, mean over its 3 seeds of `this_entropies`
# (the per-layer attention entropy draw_figure_6.py plots); keys = training iterations 0..58000.
# Context only: WikiText-2 is not available offline, so nothing here is compared number to number.
WIKITEXT2_ENTROPY_3LAYER = {
    "layer 0": {"start": 2.511, "min": 1.271, "min_iter": 2000, "end": 1.560},
    "layer 1": {"start": 2.546, "min": 1.252, "min_iter": 3000, "end": 1.889},
    "layer 2": {"start": 2.560, "min": 1.916, "min_iter": 2000, "end": 2.323},
}
