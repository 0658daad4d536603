"""What the detector tests share: ROC AUC of clean (negative) against other (positive) scores."""

import numpy as np
from sklearn.metrics import roc_auc_score


def auc(clean_scores, other_scores) -> float:
    y = np.r_[np.zeros(len(clean_scores)), np.ones(len(other_scores))]
    return roc_auc_score(y, np.r_[clean_scores, other_scores])
