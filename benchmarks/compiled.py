"""torch-cpu-compiled and torch-cuda-compiled: the resident loop with torch.compile's forward and backward.

Part of `python -m benchmarks`; same methods as the backends in benchmarks/backends.py, and the
same loop as torch-*-resident (benchmarks.backends.TorchResidentBackend): the data on the device,
each batch gathered from a shuffled randperm, the same SGD. Only the forward pass and its loss go
through torch.compile (AOTAutograd compiles the backward with it); the gather and the optimizer
step stay eager, as in the loop a user writes around torch.compile(model).

- CPU: the inductor backend, torch.compile's default mode; inductor writes C++ kernels, so it
  needs a C++ compiler (compile_note says where there is none).
- CUDA: mode="reduce-overhead", inductor's kernels replayed through CUDA graphs (the graph
  trees), the compiler's answer to the launch overhead that benchmarks/cudagraph.py captures by
  hand. Each step starts with torch.compiler.cudagraph_mark_step_begin(), as the graph trees
  ask of a training loop, and every output is read before the next step overwrites it.
- Compile time is measured apart and kept out of the epoch times: __init__ compiles the step for
  every batch size an epoch uses (the full batch and the last, smaller one; dynamic=False, so each
  size gets its own graph, as the CUDA graph backend captures one per size) and runs each until it
  is warm (COMPILE_CALLS steps: the graph trees record on a later call than the first), then puts
  the shared weights back. record_fields["compile_seconds"] holds that time, torch.compile's own
  import included. inductor keeps caches on disk, so a later run on the same machine compiles
  faster than the first (measured here, 784-128-64-10 on 2 busy cores: about 50 s cold, 4 s from
  the cache); record_fields["compile_cache"] counts the graphs compiled and the cache's hits.
- A failure to compile is reported in one line (the first line of torch's message), not a
  traceback, and the other backends still run.
"""

import importlib.util
import os
import shutil
import time

import numpy as np
import torch

from benchmarks.backends import TorchResidentBackend
from common.errors import first_line

COMPILE_CALLS = 3  # training steps per batch size before the step counts as warm
MODES = {"cpu": "default", "cuda": "reduce-overhead"}

# ----------------------------------------------------------------------------- availability


def compile_note(device_type):
    """None where torch.compile can build this device's kernels; otherwise why it cannot."""
    dynamo = getattr(torch, "_dynamo", None)
    supported = getattr(dynamo, "is_dynamo_supported", None)
    if supported is not None and not supported():
        return f"torch.compile does not support this Python with torch {torch.__version__}"
    if device_type == "cpu":
        cxx = os.environ.get("CXX", "g++")
        if shutil.which(cxx) is None:
            return (f"inductor needs a C++ compiler to build CPU kernels and {cxx!r} is not on PATH: "
                    f"install g++ (or set CXX)")
    elif importlib.util.find_spec("triton") is None:
        return "inductor needs Triton to build CUDA kernels and it is not installed"
    return None


# ----------------------------------------------------------------------------- the backend


class TorchCompiledBackend(TorchResidentBackend):
    """torch-*-resident with the forward and backward compiled by inductor (on CUDA through CUDA graphs)."""

    def __init__(self, X, y, params, batch_size, lr, seed, device="cpu"):
        super().__init__(X, y, params, batch_size, lr, seed, device)
        self.name = f"torch-{self.device.type}-compiled"
        self.mode = MODES[self.device.type]
        self.mark_step = self.device.type == "cuda"
        model, loss_fn = self.model, self.loss_fn

        def forward_loss(xb, yb):  # B, D and B -> the mean cross-entropy
            return loss_fn(model(xb), yb)

        sizes = self.batch_sizes()
        # Every instance compiles this same nested function, and dynamo keeps its graphs per code
        # object: past config.recompile_limit (8) shapes, as a sweep's widths and batches reach,
        # it would run the step uncompiled with only a warning. A fresh cache per backend keeps
        # each row compiled (its own shapes are two at most); the disk cache still speeds it up.
        torch.compiler.reset()
        before, start = compile_counts(), time.perf_counter()
        self.forward_loss = torch.compile(forward_loss, mode=self.mode, dynamic=False)
        try:
            for size in sizes:
                idx = np.arange(size)
                for _ in range(COMPILE_CALLS):
                    float(self.step(idx))
            self.sync()
        except Exception as err:  # inductor's errors run to pages: one line is the report
            raise RuntimeError(f"torch.compile(mode={self.mode!r}) failed: {type(err).__name__}: {first_line(err)[:300]}") from None
        self.record_fields.update(
            compile_seconds=time.perf_counter() - start, compile_mode=self.mode,
            compiled_batch_sizes=sizes, compile_calls=COMPILE_CALLS,
            compile_cache={k: v - before.get(k, 0) for k, v in compile_counts().items()})
        self.set_params(params)  # undo the warm-up steps: the timed training starts from the shared weights

    def _train(self, xb, yb):
        if self.mark_step:  # a new training step: the graph trees may reuse the last step's memory
            torch.compiler.cudagraph_mark_step_begin()
        return super()._train(xb, yb)


def compile_counts():
    """torch.compile's running counts in this process: graphs compiled, FX graph cache hits and misses.

    Read from torch._dynamo's counters, which are not a public API: empty where they are missing.
    """
    try:
        from torch._dynamo.utils import counters
    except ImportError:
        return {}
    return {"graphs": counters["stats"]["unique_graphs"],
            "fx_graph_cache_hits": counters["inductor"]["fxgraph_cache_hit"],
            "fx_graph_cache_misses": counters["inductor"]["fxgraph_cache_miss"]}
