"""The core pair on one batch: scratch/mlp.py against torchimpl/mlp.py, every tensor by name.

Start reading parity/ here. The scratch core draws the weights, the torch core gets a bit-exact
copy, one batch goes through both (float64, TF32 off, one thread), and each named tensor is
compared: logits, loss, dW_i, db_i, dX, then the weights after one SGD step. Try it:
    python -c "from parity.core import check_core, mnist_batch; print(check_core(*mnist_batch()))"
"""

import numpy as np
import torch
from torch.nn import functional as F

import scratch.mlp as ours  # looked up at call time: a test can swap in a wrong formula
import torchimpl.mlp as theirs
from parity.compare import compare
from parity.run import full_precision_one_thread
from parity.tolerances import ONE_BATCH
from scratch.data import load_mnist


def mnist_batch(n=64, data_dir=None):
    """The first n training images (n, 784) float32 and their labels (n,): the same every run."""
    X, y = load_mnist(data_dir, "train")
    return X[:n], y[:n]


def copy_weights(model, net):
    """Scratch's W_i, b_i into net[2*(i-1)].weight and .bias, both (out, in): no transpose, and the
    same numbers bit for bit in the same dtype. load_state_dict refuses a missing layer or a shape."""
    net.load_state_dict({f"{2 * (i - 1)}.{attr}": torch.from_numpy(model[f"{kind}{i}"])
                         for i in range(1, len(model) // 2 + 1)
                         for kind, attr in (("W", "weight"), ("b", "bias"))})
    return net


def by_scratch_name(net):
    """{"W1": net[0].weight, "b1": net[0].bias, "W2": net[2].weight, ...}: the Parameters themselves."""
    return {f"{kind}{i}": getattr(linear, attr) for i, linear in enumerate(net[::2], start=1)
            for kind, attr in (("W", "weight"), ("b", "bias"))}


def check_core(X, y, layer_sizes=(784, 128, 64, 10), seed=0, dtype="float64", lr=0.5):
    """Records (parity.compare.Record: name, max_abs_err, max_rel_err, tolerance, ok, ...) for the
    core pair started from the same weights (drawn from seed) on one batch X (N, D), y (N,): the
    batch's tensors, then the weights after one SGD step, unless a gradient's shape is wrong."""
    dtype = np.dtype(dtype).name
    tol, X, y = ONE_BATCH[dtype], np.asarray(X, dtype=dtype), np.asarray(y, dtype=np.int64)
    with full_precision_one_thread():
        model = ours.init_model(layer_sizes, np.random.default_rng(seed), np.dtype(dtype))
        logits, caches = ours.forward(model, X)  # N, C
        loss, dlogits = ours.softmax_cross_entropy(logits, y)
        grads, dX = ours.backward(dlogits, caches, input_grad=True)  # dX: N, D

        net = copy_weights(model, theirs.init_model(layer_sizes, getattr(torch, dtype)))
        X_t = torch.from_numpy(X).requires_grad_()  # so that autograd computes dL/dX too
        logits_t = net(X_t)  # N, C
        loss_t = F.cross_entropy(logits_t, torch.from_numpy(y))
        loss_t.backward()
        params_t = by_scratch_name(net)

        # forward pass went well
        records = [compare("one batch", "logits", logits, logits_t, tol, dtype),
                   compare("one batch", "loss", loss, loss_t, tol, dtype)]
        # backward pass went well
        records += [compare("one batch", f"d{name}", grads.get(name), p.grad, tol, dtype)
                    for name, p in params_t.items()]
        records.append(compare("one batch", "dX", dX, X_t.grad, tol, dtype))
        if any(r.note for r in records):  # compare notes a shape mismatch: SGD cannot apply it
            return records

        # one SGD step went well
        ours.SGD(model, lr).step(grads)
        torch.optim.SGD(net.parameters(), lr=lr).step()
        records += [compare("one SGD step", name, model[name], p, tol, dtype) for name, p in params_t.items()]
    return records
