"""How close the twins must be, one named constant per check, each with the reason for its size.

Used by parity/run.py; `python -m parity` prints each beside the error it bounds. The error is
normwise relative per tensor: max|scratch - torch| / max|torch| (an elementwise ratio explodes
on entries near zero). Unit roundoff: 1.1e-16 in float64, 6.0e-8 in float32. "Measured" means
`python -m parity` with its defaults (784-128-64-10, lr 0.5, batch 64, seed 0) on a 2-core CPU,
or with the toolbox flags named, on the full epoch or `--steps 100 --limit 1280`.
"""

# float64, one batch: outputs, loss, every gradient, the input gradient; with batch norm the
# running statistics after the step and the eval-mode outputs. Each entry is a sum of at most
# 784 products that NumPy's BLAS and torch's add up in different orders, so the twins differ
# by rounding only: measured at most 7.2e-16 (1.7e-15 with any toolbox flags). 1e-13 leaves a
# factor of 100 for other machines and BLAS builds, and nothing for a wrong formula (those
# give 1e-2 and more).
F64_ONE_BATCH = 1e-13

# float64, every weight after every SGD step, and the K losses of the run as one (K,) tensor;
# also the momentum buffers, batch norm's running statistics, the lr under the schedule and
# the test set's eval-mode outputs. Each step feeds the last step's rounding back in, but SGD
# at a stable lr does not amplify it at float64's scale: measured at most 4.6e-15 on the
# weights and 2.9e-15 on the losses over 938 steps, 3.6e-15 with any toolbox flag over 100
# steps. 1e-12 is 200x that; a bug that changes a weight by one part in a billion fails. An
# unstable lr (0.5 with momentum 0.9) amplifies rounding step by step and fails, rightly.
F64_TRAINING = 1e-12

# float64, predicted classes on the test set after the run: with weights 1e-15 apart, a class
# could change only on a tie of two logits to 1e-15. Measured: none of 10,000 differs.
F64_PREDICTIONS_DIFFERING = 0

# float32, one batch: the same sums with 6e-8 roundoff. Measured at most 4.7e-7 (6.6e-7 with
# batch norm, dropout and AdamW); 1e-5 is 15x.
F32_ONE_BATCH = 1e-5

# float32 weights over a whole run are reported, not checked. For about 500 steps they stay
# 1e-6 apart; then a ReLU input that lies within rounding of 0 goes one way in one twin and
# the other way in the other, the runs part, and SGD at lr 0.5 amplifies the difference to
# tens of percent by the end of the epoch (measured: 18%, and 207 of 10,000 test predictions
# differ). That is the arithmetic, not a bug. What must agree is what training is for:
# both runs' test accuracy, within half a percentage point (measured: 0.25 points apart at seed 0;
# the gap depends on the seed at lr 0.5, see docs/parity.md).
# Adam's steps, which hardly depend on a gradient's size, part the float32 runs sooner (weights
# 20% apart after an epoch of --optimizer adam) and the accuracies still agree: measured at most 0.16 points
# apart over the toolbox flags (AdamW with batch norm, dropout and the cosine schedule).
TEST_ACCURACY_GAP = 0.005

# float64, Adam and AdamW: every weight, running statistic and moment after every step, the
# losses, and the test set's eval-mode outputs. Adam divides each gradient entry by its own
# RMS plus eps = 1e-8, so where a gradient entry is near 0 a step moves the weight by
# lr g / (|g| + eps): its sensitivity to g is lr / eps = 1e5 at the default lr 1e-3, and the
# gradient's rounding (a few 1e-18 absolute, sums that cancel) becomes ~1e-13 in the weight.
# Measured: at most 4.1e-13 over a 938-step MNIST epoch (W1, at the second step, with batch
# norm and dropout), 1.8e-12 over 100 steps on 1280 images (W1, at the first step); every
# other tensor 1e-12 or less. 1e-10, the target for the toolbox, is 55x the larger figure; a
# wrong Adam rule (eps inside the root, coupled decay in AdamW) moves weights by 1e-3 of their
# scale.
F64_ADAM_TRAINING = 1e-10

# float64, Adam and AdamW with batch norm: each Linear bias ahead of a batch norm, and each
# running_mean (0.1 of every batch mean, bias included). Batch norm subtracts the batch mean,
# so that bias has zero gradient in exact arithmetic; each twin computes rounding noise
# (~1e-17) instead, Adam steps on it (lr * noise / eps ~ 1e-12 a step) and the two twins'
# biases random-walk apart. Nothing downstream sees it (training outputs do not depend on
# the bias; eval outputs stay 2e-12 apart). Measured: b1 1.3e-9 and running_mean1 4.1e-11
# after a 938-step MNIST epoch (AdamW with dropout and the cosine schedule: 1.6e-9); 7e-10
# and 5e-11 after 100 steps on 1280 images. The walk grows like the square root of the
# steps; 1e-8 is 6x the epoch's figure and still catches a wrong running-statistics rule,
# which is off by 1e-2 or more. SGD steps by lr * noise, and stays within F64_TRAINING.
F64_NOISE_DRIVEN = 1e-8

# Per dtype; None: reported, not checked.
ONE_BATCH = {"float64": F64_ONE_BATCH, "float32": F32_ONE_BATCH}
TRAINING = {"float64": F64_TRAINING, "float32": None}
ADAM_TRAINING = {"float64": F64_ADAM_TRAINING, "float32": None}
NOISE_DRIVEN = {"float64": F64_NOISE_DRIVEN, "float32": None}
PREDICTIONS_DIFFERING = {"float64": F64_PREDICTIONS_DIFFERING, "float32": None}
TEST_ACCURACY = {"float64": TEST_ACCURACY_GAP, "float32": TEST_ACCURACY_GAP}
