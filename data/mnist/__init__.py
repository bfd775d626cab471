"""The four MNIST files, installed as package data under the name mlp_twins_data.

pyproject.toml maps the package mlp_twins_data onto this folder, so a wheel or `pip install .`
carries the .gz files; common/idx.py finds them through importlib.resources, and falls back to
this folder itself when the programs run from a clone with nothing installed. No code here.
"""
