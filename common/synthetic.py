"""The chapters' small data sets, generated in pure Python so that both twins get the same numbers.

Every generator returns nested lists of Python floats (float64); each twin turns them into its
own arrays (np.array / torch.tensor), so the two twins train on bit-identical data in float64
and, rounded the same way, in float32. Randomness comes from random.Random seeded with a
string ("edges 0"): Python hashes string seeds with SHA-512, the same on every platform and
run. Try it:
    python -c "from common.synthetic import edges; X, Y, _, _ = edges(0); print(len(X), Y[:3])"
"""

import math
import random

EDGE_SIDE = 5  # 5 x 5 patches, flattened row by row into 25 inputs
SUM_FEATURES = 10

# ----------------------------------------------------------------------------- edge detector (nn04)


def edges(seed, n_train=200, n_test=50):
    """(X_train, Y_train, X_test, Y_test): 5x5 patches with or without an edge, one-hot labels.

    Each patch is 25 floats (row by row); its label is one-hot [no edge, edge], as the chapter's
    make_data gives it (the programs convert it with argmax, as the chapter does). The training
    set is drawn first, then the test set, from one stream seeded by "edges {seed}"; within
    each set, exactly half the patches have an edge, in a shuffled order.

    - No edge: a flat patch at a level drawn from U(0, 1).
    - Edge: a straight step between two flat regions, vertical or horizontal (equally likely),
      between rows (or columns) k - 1 and k for k drawn from 1..4; the dark side's level is
      drawn from U(0, 0.2), the bright side's from U(0.8, 1); which side is bright is a coin
      flip.
    - Every pixel then gets independent noise from U(-0.1, 0.1).

    The weakest edge (contrast 0.6) stands well above the noise (at most 0.2 between two
    pixels), so a patch's label is always recoverable; as a flat patch can sit at any level,
    no single pixel's brightness gives the label away: the network must compare pixels.
    """
    rng = random.Random(f"edges {seed}")
    train = _edge_set(rng, n_train)
    test = _edge_set(rng, n_test)
    return train[0], train[1], test[0], test[1]


def _edge_set(rng, n):
    labels = [i % 2 for i in range(n)]  # half without an edge (0), half with one (1)
    rng.shuffle(labels)
    X, Y = [], []
    for label in labels:
        X.append(_edge_patch(rng) if label else _flat_patch(rng))
        Y.append([0.0, 1.0] if label else [1.0, 0.0])
    return X, Y


def _flat_patch(rng):
    level = rng.random()
    return [level + rng.uniform(-0.1, 0.1) for _ in range(EDGE_SIDE * EDGE_SIDE)]


def _edge_patch(rng):
    vertical = rng.random() < 0.5
    k = rng.randint(1, EDGE_SIDE - 1)  # the edge lies between index k - 1 and k
    dark, bright = rng.uniform(0.0, 0.2), rng.uniform(0.8, 1.0)
    first, second = (dark, bright) if rng.random() < 0.5 else (bright, dark)
    patch = []
    for row in range(EDGE_SIDE):
        for col in range(EDGE_SIDE):
            position = col if vertical else row
            patch.append((first if position < k else second) + rng.uniform(-0.1, 0.1))
    return patch


# ----------------------------------------------------------------------------- pass or fail (student)

STUDENTS_X = [[5.0, 7.0], [1.0, 2.0], [10.0, 6.0], [2.0, 8.0]]  # hours studied, hours slept
STUDENTS_Y = [[1.0], [0.0], [1.0], [0.0]]  # passed: targets shaped (4, 1) like the outputs


def students():
    """(X, y): the chapter's four students, X (4, 2) and y (4, 1) of 0.0 / 1.0 (copies)."""
    return [row[:] for row in STUDENTS_X], [row[:] for row in STUDENTS_Y]


# ----------------------------------------------------------------------------- y = sum(x) (cs336)


def sum_rows(seed, part, n):
    """(X, y): n rows of x ~ U(-1, 1)^10, independently drawn, and y = sum(x) shaped (n, 1).

    `part` names the stream: "test" for the fixed test rows, or an epoch number for that
    epoch's fresh training rows (seeded "sum {seed} {part}"), so every epoch trains on rows no
    earlier epoch has seen and no training row is a test row. y is summed exactly (math.fsum)
    in float64 here, so the twins' targets do not depend on their summation order.
    """
    rng = random.Random(f"sum {seed} {part}")
    X = [[2.0 * rng.random() - 1.0 for _ in range(SUM_FEATURES)] for _ in range(n)]
    return X, [[math.fsum(row)] for row in X]
