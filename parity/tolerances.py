"""How close the twins must be, one named constant per check, each with the reason for its size.

Used by parity/compare.py and parity/run.py; `python -m parity` prints every one beside the error
it bounds. The error measure is normwise relative: max|scratch - torch| / max|torch| per tensor
(an elementwise ratio explodes on entries near zero). Unit roundoff is 1.1e-16 in float64 and
6.0e-8 in float32.
"""

# float64, one batch (logits, loss, every gradient, the input gradient). Each entry is a dot
# product of at most 784 terms, summed in a different order by NumPy's BLAS and torch's, so
# the two differ by a few hundred ulps at the very worst: measured about 1e-15. 1e-13 leaves
# two orders of magnitude for rounding and none for a wrong formula (those give 1e-2 and up).
F64_ONE_BATCH = 1e-13

# float64, every weight and every step's loss over a run of SGD (938 steps for one epoch).
# Rounding differences are fed back through each step, but float64 starts 1e-16 apart and a
# plain vectorised loop ends about 1e-15 apart after an epoch; 1e-12 is 1000x that margin.
F64_TRAINING = 1e-12

# float64, test-set predictions after the run: with weights 1e-15 apart a class can only
# change on a near tie of two logits at 1e-15, which the 10,000 MNIST test images do not hold.
F64_PREDICTIONS_DIFFERING = 0

# float32, one batch. Summation order differences of a few ulps at 6e-8 each, over sums of up
# to 784 terms with cancellation, give about 1e-7..1e-6 normwise; 1e-5 is ten times that.
F32_ONE_BATCH = 1e-5

# float32, a whole run: the weights are NOT checked. SGD amplifies rounding differences (a
# ReLU that flips, a step that goes a little elsewhere) until the two runs are several percent
# apart: that is the arithmetic, not a bug, and it is reported step by step. What must agree is
# what training is for: both runs' test accuracy, within half a percentage point.
F32_TEST_ACCURACY = 0.005

# Step and training tolerance per dtype; None: reported, not checked.
ONE_BATCH = {"float64": F64_ONE_BATCH, "float32": F32_ONE_BATCH}
TRAINING = {"float64": F64_TRAINING, "float32": None}
PREDICTIONS_DIFFERING = {"float64": F64_PREDICTIONS_DIFFERING, "float32": None}
TEST_ACCURACY = {"float64": F32_TEST_ACCURACY, "float32": F32_TEST_ACCURACY}
