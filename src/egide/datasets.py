"""`egide.datasets.load(name_or_path, split=...)`: data sets as `Dataset(x, y, class_names)`;
`egide.datasets.for_classifier(data, clf)`: images from files resized to a model's input."""

from egide.core.dataset import Dataset
from egide.lab.data import for_classifier, load

__all__ = ["Dataset", "for_classifier", "load"]
