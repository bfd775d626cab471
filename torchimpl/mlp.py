"""The default MLP with PyTorch: the whole training step of 784-128-64-10 on one screen.

Twin: scratch/mlp.py, the same program by hand in NumPy: read the two side by side. Here
nn.Linear draws its own weights, autograd writes the backward pass, torch.optim.SGD updates.
Run it: python -m torchimpl.mlp [--epochs 20 --hidden 128 64 --lr 0.5 --batch-size 64 --seed 0]
Notation: N batch, D in (784 pixels), H_i width of layer i, C classes (10 digits).
"""

import time

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

from common import cli
from common.errors import run_cli
from torchimpl.data import load_mnist

# ----------------------------------------------------------------------------- the network

def init_model(layer_sizes, dtype=torch.float32):
    """nn.Sequential(Linear, ReLU, Linear, ReLU, ..., Linear) giving logits (N, C).

    Each nn.Linear(fan_in, fan_out) draws its weight (H_i, H_{i-1}) and bias (H_i,) from
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)) itself, from torch's global generator (torch.manual_seed).
    """
    layers = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out, dtype=dtype), nn.ReLU()]
    return nn.Sequential(*layers[:-1])  # no ReLU after the last layer: it gives the logits


# ----------------------------------------------------------------------------- the loss

# F.cross_entropy(logits, y): the mean over the batch of -log softmax(logits)[y], max-shifted.

# ----------------------------------------------------------------------------- the backward pass

# loss.backward(): autograd walks the graph from the loss back to every parameter's .grad.

# ----------------------------------------------------------------------------- the optimizer

# torch.optim.SGD(model.parameters(), lr): p -= lr * p.grad, for every parameter.

# ----------------------------------------------------------------------------- minibatches, one epoch, evaluation

def train_epoch(model, optimizer, batches):
    """One pass of forward, loss, backward and SGD step per batch; the mean loss per example."""
    total, n = 0.0, 0
    model.train()
    for xb, yb in batches:
        logits = model(xb)  # B, C
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad()  # .grad accumulates: clear the last step's
        loss.backward()  # every p.grad; X needs no gradient, so dL/dX is never computed
        optimizer.step()
        total, n = total + loss.item() * len(yb), n + len(yb)
    return total / n

@torch.no_grad()  # no graph to record: nothing will be differentiated
def evaluate(model, batches):
    """The fraction of examples whose largest logit is the label's."""
    correct, n = 0, 0
    model.eval()
    for xb, yb in batches:
        logits = model(xb)  # B, C
        correct, n = correct + int((logits.argmax(dim=1) == yb).sum()), n + len(yb)
    return correct / n


# ----------------------------------------------------------------------------- the program

def main(argv=None):
    args = cli.parse_args(cli.core_parser("python -m torchimpl.mlp", __doc__.splitlines()[0]), argv)
    (X, y), test = cli.limited(load_mnist(args.data_dir, "train"), args.limit), load_mnist(args.data_dir, "test")
    torch.manual_seed(args.seed)  # draws the weights; the loader's generator draws the shuffles
    model = init_model(cli.layer_sizes(args))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    print(cli.describe_run("torchimpl.mlp", args, len(X), len(test[0])), flush=True)
    loader = DataLoader(TensorDataset(X, y), args.batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(args.seed))
    for epoch in range(1, args.epochs + 1):
        start = time.perf_counter()
        loss = train_epoch(model, optimizer, loader)
        seconds = time.perf_counter() - start
        train_acc = evaluate(model, DataLoader(TensorDataset(X, y), cli.EVAL_BATCH))
        test_acc = evaluate(model, DataLoader(TensorDataset(*test), cli.EVAL_BATCH))
        cli.report_epoch(cli.epoch_record(epoch, loss, train_acc, test_acc, seconds), args.epochs, False)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main, "python -m torchimpl.mlp"))
