"""What the PyTorch twin needs around training: model files (state_dicts, and scratch's .npz),
the scikit-learn style estimator, and the chapters' data sets as tensors."""
