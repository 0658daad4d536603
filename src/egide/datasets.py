"""`egide.datasets.load(name_or_path, split=...)`: data sets as `Dataset(x, y, class_names)`."""

from egide.core.dataset import Dataset
from egide.lab.data import load

__all__ = ["Dataset", "load"]
