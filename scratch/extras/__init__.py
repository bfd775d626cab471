"""What the NumPy twin needs around training: model files (.npz, and torch.save archives read
without torch), the scikit-learn style estimator, and the chapters' data sets."""
