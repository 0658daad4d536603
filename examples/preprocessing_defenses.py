"""Each preprocessing defense on the demo, attacked non-adaptively and adaptively.

    .venv/bin/python examples/preprocessing_defenses.py [--eps 4/255] [--steps 10] [--limit N]

For every registered preprocessor, with its default parameters: clean accuracy of the defended
model, then PGD robust accuracy when the attack differentiates the defended model as it is
(non-adaptive) and when it attacks `defended.adaptive()` (BPDA / EOT). Robust accuracy is always
measured on the real defended classifier. A large gap between the two columns means the
defense hides gradients rather than removing adversarial examples.
"""

from __future__ import annotations

import argparse

import numpy as np

import egide
from egide.core import Preprocessor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eps", default="4/255", help="L-inf budget (default 4/255)")
    parser.add_argument("--steps", type=int, default=10, help="PGD steps (default 10)")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N test images")
    args = parser.parse_args()
    num, _, den = args.eps.partition("/")
    eps = float(num) / float(den or 1)

    reg = egide.registry()
    clf = egide.Classifier.load("brain-tumor-cnn")
    ds = egide.datasets.load("brain-tumor-phantom", split="test", limit=args.limit)
    x, y = ds.x, ds.y
    pgd = reg.create("attack", "pgd", eps=eps, steps=args.steps)

    def accuracy(model, images) -> float:
        return float(np.mean(model.predict(images) == y))

    print(f"PGD-{args.steps}, eps={args.eps}, {len(x)} test images\n")
    print("| defense | params | clean | non-adaptive | adaptive |")
    print("|---|---|---|---|---|")
    undefended = pgd.run(clf, x, y)
    print(f"| none | - | {accuracy(clf, x):.1%} | {undefended.robust_accuracy:.1%} | - |", flush=True)
    for name in reg.names("defense"):
        defense = reg.create("defense", name)
        if not isinstance(defense, Preprocessor):
            continue  # trainers need training data; they are measured elsewhere
        defended = defense.apply(clf)
        clean = accuracy(defended, x)
        plain = accuracy(defended, pgd.run(defended, x, y).x_adv)
        adaptive = accuracy(defended, pgd.run(defended.adaptive(), x, y).x_adv)
        params = ", ".join(f"{k}={v}" for k, v in defense.params.model_dump().items())
        print(f"| {name} | {params} | {clean:.1%} | {plain:.1%} | {adaptive:.1%} |", flush=True)


if __name__ == "__main__":
    main()
