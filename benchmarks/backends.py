"""The timed backends, except the CUDA graph (benchmarks/cudagraph.py): one training loop each.

Part of `python -m benchmarks`. Every backend is built from the same NumPy arrays and the same
scratch parameters (copied into torch through parity.convert.load_params_into), trains with
plain SGD and cross-entropy in float32, and offers the same methods:

    epoch()          one shuffled pass over the data; the summed loss stays where it was computed
    sync()           wait until the device has finished (a no-op on the CPU)
    epoch_loss()     the mean training loss of the last epoch, as a Python float (syncs)
    step(idx)        one training step on the examples idx (a NumPy index array); returns the loss
    get_params()     the weights as scratch params (NumPy arrays)
    set_params(p)    overwrite the weights in place (tensors keep their storage)

and the torch backends a dict `record_fields` that the runner adds to their result record (which
SGD variant ran; the compiled backends' compile time). The peers live apart: scikit-learn in
benchmarks/peers.py, torch.compile in benchmarks/compiled.py.

Loss is summed on the device inside the loop and read once per epoch: an .item() per step would
make the CPU wait for the GPU at every step and hide the launch overhead being measured.
"""

import inspect

import numpy as np
import torch
from torch import nn

from benchmarks.machine import check_device
from parity.convert import load_params_into, state_dict_to_params
from scratch import mlp
from scratch.toolbox.model import layer_sizes_of
from torchimpl.data import make_loader
from torchimpl.toolbox.model import MLP

# N examples, D features, B batch

# ----------------------------------------------------------------------------- numpy


class NumpyBackend:
    """The core's step (scratch/mlp.py: forward, softmax_cross_entropy, backward, SGD) over the
    core's shuffled batches; benchmarks/references.py holds the loops it is measured against."""

    name, device = "numpy", "cpu"

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        self.X, self.y, self.batch_size, self.lr = X, y, batch_size, lr  # N, D and N
        self.params = {k: np.array(v, copy=True) for k, v in params.items()}
        self.optimizer = mlp.SGD(self.params, lr=lr)
        self.rng = np.random.default_rng(seed)
        self.total = 0.0

    def _train(self, xb, yb):
        logits, caches = mlp.forward(self.params, xb)  # B, C
        loss, dlogits = mlp.softmax_cross_entropy(logits, yb)
        grads, _ = mlp.backward(dlogits, caches)  # no dL/dX: training does not use it
        self.optimizer.step(grads)
        return loss

    def epoch(self):
        self.total = 0.0
        for xb, yb in mlp.iterate_minibatches(self.X, self.y, self.batch_size, self.rng):
            self.total += float(self._train(xb, yb)) * len(yb)

    def sync(self):
        pass

    def epoch_loss(self):
        return self.total / len(self.X)

    def step(self, idx):
        return self._train(self.X[idx], self.y[idx])

    def get_params(self):
        return {k: v.copy() for k, v in self.params.items()}

    def set_params(self, params):
        for name, p in self.params.items():
            p[...] = params[name]


# ----------------------------------------------------------------------------- torch, shared

# SGD(fused=True) came after the oldest torch the package admits (torch>=2.1 has no such argument):
# ask for it only where this torch's SGD takes it, and record which variant ran.
SGD_HAS_FUSED = "fused" in inspect.signature(torch.optim.SGD.__init__).parameters


def sgd_options(device, fused):
    """SGD's keyword arguments: fused=True where it is wanted, on CUDA, and this torch's SGD has it."""
    return {"fused": True} if fused and SGD_HAS_FUSED and device.type == "cuda" else {}


def sgd_variant(optimizer):
    """'fused', 'foreach' or 'for-loop': the implementation torch.optim.SGD runs for these parameters."""
    if optimizer.defaults.get("fused"):
        return "fused"
    foreach = optimizer.defaults.get("foreach")
    if foreach is None:  # torch's default: resolved at the first step from where the parameters live
        params = [p for group in optimizer.param_groups for p in group["params"]]
        try:
            from torch.optim.optimizer import _default_to_fused_or_foreach
            foreach = _default_to_fused_or_foreach(params, differentiable=False, use_fused=False)[1]
        except (ImportError, TypeError):  # a torch without the helper: foreach on CUDA tensors alone
            foreach = all(p.device.type == "cuda" for p in params)
    return "foreach" if foreach else "for-loop"


class _TorchBackend:
    """What the torch backends share: the model, the optimizer, the step, the loss on the device."""

    name = None
    set_to_none = True  # optimizer.zero_grad()'s default: backward allocates fresh gradients

    def __init__(self, X, y, params, batch_size, lr, device, **sgd_options):
        self.device, self.batch_size, self.n = check_device(device), batch_size, len(X)
        self.model = MLP(layer_sizes_of(params)).to(self.device)
        load_params_into(self.model, params)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=lr, **sgd_options)
        self.loss_fn = nn.CrossEntropyLoss()
        self.total = torch.zeros((), dtype=torch.float64, device=self.device)
        self.record_fields = {"sgd": sgd_variant(self.optimizer)}

    def forward_loss(self, xb, yb):
        """The loss of the forward pass; benchmarks/compiled.py puts torch.compile's version here."""
        return self.loss_fn(self.model(xb), yb)

    def _train(self, xb, yb):
        """The four lines of the torch twin: zero_grad, loss of the forward, backward, step."""
        self.optimizer.zero_grad(set_to_none=self.set_to_none)
        loss = self.forward_loss(xb, yb)
        loss.backward()
        self.optimizer.step()
        loss = loss.detach()
        self.total.add_(loss, alpha=len(yb))  # summed on the device: no sync
        return loss

    def sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def epoch_loss(self):
        return self.total.item() / self.n

    def get_params(self):
        return state_dict_to_params(self.model.state_dict())

    def set_params(self, params):
        load_params_into(self.model, params)  # load_state_dict copies into the existing tensors


# ----------------------------------------------------------------------------- torch, textbook


class TorchLoaderBackend(_TorchBackend):
    """As the textbook writes it: a shuffled DataLoader over a TensorDataset, .to(device) per batch.

    The DataLoader fetches every example on its own (TensorDataset.__getitem__) and stacks each
    batch (default_collate): per-example Python work that the resident backends skip.
    """

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        super().__init__(X, y, params, batch_size, lr, device)
        self.name = "torch-cpu" if self.device.type == "cpu" else f"torch-{self.device.type}"
        self.X, self.y = torch.from_numpy(X), torch.from_numpy(y)  # N, D and N, on the CPU
        self.loader = make_loader(self.X, self.y, batch_size,
                                  generator=torch.Generator().manual_seed(seed))

    def epoch(self):
        self.total.zero_()
        for xb, yb in self.loader:
            self._train(xb.to(self.device), yb.to(self.device))

    def loader_pass(self):
        """One pass over the DataLoader with the copies to the device and no training."""
        last = None
        for xb, yb in self.loader:
            last = xb.to(self.device), yb.to(self.device)
        self.sync()
        return last

    def step(self, idx):
        idx = torch.from_numpy(np.asarray(idx))
        return self._train(self.X[idx].to(self.device), self.y[idx].to(self.device))


# ----------------------------------------------------------------------------- torch, resident


class TorchResidentBackend(_TorchBackend):
    """The data held as tensors on the device; each batch gathered by indexing a shuffled randperm.

    On CUDA the permutation is drawn on the GPU and SGD is fused where this torch has the fused
    kernel (one kernel updates every parameter), so a step launches only the kernels of the
    network itself; elsewhere torch's default SGD runs (foreach on CUDA), and record_fields says which.
    """

    fused_sgd = True  # on CUDA; the CPU keeps torch's default SGD

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        super().__init__(X, y, params, batch_size, lr, device,
                         **sgd_options(check_device(device), self.fused_sgd))
        self.name = f"torch-{self.device.type}-resident"
        self.X = torch.from_numpy(X).to(self.device)  # N, D
        self.y = torch.from_numpy(y).to(self.device)  # N
        self.generator = torch.Generator(device=self.device).manual_seed(seed)

    def epoch(self):
        self.total.zero_()
        order = torch.randperm(self.n, device=self.device, generator=self.generator)  # N
        for start in range(0, self.n, self.batch_size):
            idx = order[start:start + self.batch_size]  # B
            self._train(self.X.index_select(0, idx), self.y.index_select(0, idx))

    def step(self, idx):
        idx = torch.from_numpy(np.asarray(idx)).to(self.device)
        return self._train(self.X.index_select(0, idx), self.y.index_select(0, idx))

    def batch_sizes(self):
        """The sizes of an epoch's batches, the full one first and the remainder, if any, after:
        the shapes a compiled or captured step must be ready for."""
        return sorted({min(self.batch_size, self.n), self.n % self.batch_size} - {0}, reverse=True)
