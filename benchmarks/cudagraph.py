"""torch-cuda-graph: the whole training step captured once as a CUDA graph, then replayed.

Part of `python -m benchmarks`; same methods as the backends in benchmarks/backends.py. At batch
64 an eager CUDA step is bound by launching its ~two dozen kernels one by one from Python; a
graph replay launches them all with one call. torch.compile(mode="reduce-overhead") does the
same through inductor (torch-cuda-compiled, benchmarks/compiled.py); this backend needs no
compiler toolchain and captures exactly the eager step (same kernels, same numbers), the whole
step with the optimizer, where the compiled backend replays the forward and backward only.

The capture follows PyTorch's recipe for whole-network capture (CUDA semantics notes, "CUDA
Graphs"): a few eager steps on a side stream first (lazy initialisation, cuBLAS workspaces,
autograd's stream bookkeeping), then torch.cuda.graph around zero_grad, forward, backward and
optimizer.step. Inputs live in static buffers that are refilled before each replay.

- The static input is the batch's index vector; the gather from the resident dataset is part
  of the graph, so one small device-to-device copy feeds each replay.
- An epoch whose size is not a multiple of the batch size ends with a smaller batch, and a
  graph has fixed shapes: one graph is captured per batch size (at most two).
- Both graphs must write the same .grad tensors, so zero_grad(set_to_none=False) is captured
  inside them (the gradients were allocated once by the warm-up steps) instead of the recipe's
  set_to_none=True before a single capture, which would allocate them inside one graph's pool.
- torch.optim.SGD has no `capturable` flag and needs none: with a float learning rate and no
  step counter its update is one foreach kernel with no host synchronisation (Adam, which keeps
  a step count, is the optimizer that needs capturable=True).
- The warm-up steps change the weights; the shared initial weights are copied back in place
  afterwards (copy_, so the addresses the graphs recorded stay valid).
"""

import numpy as np
import torch

from benchmarks.backends import TorchResidentBackend
from common.errors import InputError

WARMUP_STEPS = 3  # eager steps per batch size on the side stream before capture (the recipe's 3)

# ----------------------------------------------------------------------------- the backend


class TorchGraphBackend(TorchResidentBackend):
    """Resident data on the GPU, permutation drawn on the GPU, each step one graph replay."""

    set_to_none = False  # the graphs zero the same gradient tensors in place
    fused_sgd = False  # the recipe's default SGD (foreach on CUDA)

    def __init__(self, X, y, params, batch_size, lr, seed, device="cuda"):
        if torch.device(device).type != "cuda":
            raise InputError(f"the CUDA graph backend needs a CUDA device, got {device!r}")
        super().__init__(X, y, params, batch_size, lr, seed, device)
        self.name = "torch-cuda-graph"
        sizes = self.batch_sizes()
        self._warm_up(sizes)
        self.graphs = {size: self._capture(size) for size in sizes}
        self.set_params(params)  # undo the warm-up steps: start from the shared weights
        torch.cuda.synchronize(self.device)

    def _gather_and_train(self, idx):
        return self._train(self.X.index_select(0, idx), self.y.index_select(0, idx))  # B, D and B

    def _warm_up(self, sizes):
        side = torch.cuda.Stream(device=self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for size in sizes:
                idx = torch.arange(size, device=self.device)  # B
                for _ in range(WARMUP_STEPS):
                    self._gather_and_train(idx)
        torch.cuda.current_stream(self.device).wait_stream(side)

    def _capture(self, size):
        """Record one step on `size` examples; return (graph, static index buffer, static loss)."""
        static_idx = torch.arange(size, device=self.device)  # B: refilled before every replay
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_loss = self._gather_and_train(static_idx)
        return graph, static_idx, static_loss

    # ------------------------------------------------------------------------- training

    def epoch(self):
        self.total.zero_()  # the graphs add each step's loss into this tensor
        order = torch.randperm(self.n, device=self.device, generator=self.generator)  # N
        for start in range(0, self.n, self.batch_size):
            idx = order[start:start + self.batch_size]  # B, still on the GPU
            graph, static_idx, _ = self.graphs[len(idx)]
            static_idx.copy_(idx)
            graph.replay()

    def step(self, idx):
        """One replay on the examples idx; the returned loss is overwritten by the next replay."""
        idx = torch.from_numpy(np.asarray(idx)).to(self.device)
        if len(idx) not in self.graphs:
            raise InputError(f"a step of {len(idx)} examples was not captured; "
                             f"the graphs take {sorted(self.graphs)}")
        graph, static_idx, static_loss = self.graphs[len(idx)]
        static_idx.copy_(idx)
        graph.replay()
        return static_loss
