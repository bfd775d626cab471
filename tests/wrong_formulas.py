"""Deliberately wrong backward formulas that the parity tests swap into scratch.mlp, to show
that parity names exactly the tensors a bug breaks."""

import numpy as np

import scratch.mlp

LINEAR_BACKWARD = scratch.mlp.linear_backward  # the right one, before any test swaps it


def relu_mask_on_the_wrong_side(dout, x):
    return np.where(x < 0, dout, 0)


def bias_gradient_over_the_wrong_axis(dout, cache, need_dx=True):
    dx, dW, _ = LINEAR_BACKWARD(dout, cache, need_dx)
    return dx, dW, dout.sum(axis=1)  # N: summed over the units instead of the batch
