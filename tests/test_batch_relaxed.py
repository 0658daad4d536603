"""Every compiled attack traces its graph once for a run of any batch sizes (a part-batch at
the end included), and runs when the first batch is as small as the seed vector (2 images)."""
from __future__ import annotations

import numpy as np
import pytest

QUICK = {  # small budgets: the test is about tracing, not strength
    "fgsm": {}, "pgd": {"steps": 2}, "bim": {"steps": 2}, "mim": {"steps": 2},
    "apgd": {"steps": 2}, "square": {"queries": 3}, "fab": {"steps": 2},
    "deepfool": {"steps": 2}, "cw": {"steps": 2, "binary_search_steps": 1},
}


def tracing_counts(plugin) -> dict[str, int]:
    functions = plugin.__dict__.get("_compiled_by_clf", {})
    return {name: fn.experimental_get_tracing_count()
            for by_name in functions.values() for name, fn in by_name.items()}


@pytest.mark.parametrize("name", sorted(QUICK))
def test_an_attack_traces_once_over_a_part_batch(name, registry, clf, test_batch):
    x, y = test_batch
    attack = registry.create("attack", name, **QUICK[name])
    attack.run(clf, x[:12], y[:12], batch_size=5, seed=0)  # batches of 5, 5 and 2
    counts = tracing_counts(attack)
    assert counts and all(count == 1 for count in counts.values()), counts


def test_a_run_whose_first_batch_has_two_images_matches_the_larger_batches(registry, clf, test_batch):
    """Two images relax like any batch (their leading size equals the seed vector's)."""
    x, y = test_batch
    small = registry.create("attack", "apgd", steps=3).run(clf, x[:4], y[:4], batch_size=2, seed=3)
    whole = registry.create("attack", "apgd", steps=3).run(clf, x[:4], y[:4], batch_size=4, seed=3)
    np.testing.assert_allclose(small.x_adv, whole.x_adv, atol=1e-6)
