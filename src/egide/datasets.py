"""`egide.datasets.load(name_or_path, split=...)`: data sets as `Dataset(x, y, class_names)`."""

from egide.core.data import Dataset, load

__all__ = ["Dataset", "load"]
