"""The NumPy toolbox, built on scratch/mlp.py: more layers, losses, optimizers and schedules.

layers.py (activations, dropout, batch norm), losses.py (BCE, BCE with logits, MSE), optim.py
(SGD with momentum and weight decay, Adam, AdamW), schedules.py (cosine annealing) and
model.py, the configurable network that wires them together for python -m scratch.train.
"""
