"""Where the twins knowingly differ: names one side lacks, parameters one side adds. Data only.

A twin pair (scratch/X.py, torchimpl/X.py) exposes the same public names in the same order with
the same parameters; these two tables list the exceptions, each with what stands in its place
or why. tests/test_twins.py fails on any difference not listed here, and parity/align.py puts
the ONE_SIDED text beside a one-sided name on the side-by-side study page.
"""

# Names that exist on one side only, because the other side gets them from torch. Each entry
# says what stands in its place; any other one-sided name fails the test.
ONE_SIDED = {
    "scratch.mlp.linear_forward": "nn.Linear",
    "scratch.mlp.linear_backward": "autograd, through loss.backward()",
    "scratch.mlp.relu_forward": "nn.ReLU",
    "scratch.mlp.relu_backward": "autograd, through loss.backward()",
    "scratch.mlp.forward": "model(x), the nn.Sequential's forward",
    "scratch.mlp.softmax_cross_entropy": "F.cross_entropy",
    "scratch.mlp.backward": "loss.backward() (autograd)",
    "scratch.mlp.SGD": "torch.optim.SGD",
    "scratch.mlp.iterate_minibatches": "DataLoader(TensorDataset(X, y), batch_size, shuffle=True)",
    "torchimpl.data.make_loader": "scratch.mlp.iterate_minibatches",
    "torchimpl.data.torchvision_datasets": "nothing: torchvision is the torch side's optional reader",
    "scratch.toolbox.model.Arch": "the keyword arguments of MLP.__init__",
    "scratch.toolbox.model.check_layer_sizes": "the check inside MLP.__init__",
    "scratch.toolbox.model.init_params": "nn.Linear's own initialisation in MLP.__init__",
    "scratch.toolbox.model.init_buffers": "nn.BatchNorm1d's own running_mean and running_var buffers",
    "scratch.toolbox.model.layer_sizes_of": "MLP.layer_sizes",
    "scratch.toolbox.model.count_params": "sum(p.numel() for p in model.parameters())",
    "scratch.toolbox.model.forward": "MLP.forward",
    "scratch.toolbox.model.backward": "loss.backward() (autograd)",
    "scratch.toolbox.model.Network": "the MLP module itself, which holds its parameters, buffers and options",
    "scratch.toolbox.model.predict": "model(x).argmax(dim=1)",
    "torchimpl.toolbox.model.MLP": "scratch.toolbox.model's functions and its Network",
    "torchimpl.train.pick_device": "nothing: NumPy runs on the CPU only",
}

# Shared names whose parameters differ, each by exactly these parameters on one side, and why.
EXTRA_PARAMETERS = {
    "scratch.mlp.init_model": (["rng"], "NumPy draws from the Generator it is handed; nn.Linear draws "
                                        "from torch's global generator, seeded by torch.manual_seed"),
    "torchimpl.data.load_mnist": (["use_torchvision"], "torchvision is the torch side's optional reader"),
    "torchimpl.extras.estimator.MLPClassifier": (["device"], "NumPy runs on the CPU only"),
}
