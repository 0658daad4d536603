"""One attack on a model and data set, optionally behind a preprocessing defense: the job that
`egide attack`, the API's attack job and the page all run.

Robust accuracy is always what the real (defended) classifier answers on the adversarial
images; a defense is attacked through its adaptive view (BPDA/EOT) unless told otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from egide.core.classifier import Classifier
from egide.core.dataset import Dataset
from egide.core.registry import Registry
from egide.core.results import AttackResult
from egide.lab import services
from egide.lab.data import Draw, for_classifier
from egide.lab.data.sampling import Sampling
from egide.lab.data.splits import match
from egide.lab.evaluation.images import DataSource
from egide.lab.evaluation.pipeline import MAX_SEED

Seed = Annotated[int, Field(ge=0, le=MAX_SEED)]
DEFAULT_SPLIT = "test"  # when the data has splits; data without splits is attacked whole


class DefenseChoice(BaseModel):
    """A preprocessing defense the attacked model sits behind."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(min_length=1, max_length=128,
                        description="Defense plugin name (a preprocessor: GET /api/v1/plugins)")
    params: dict[str, Any] = Field(default_factory=dict, description="The defense's parameters")
    adaptive: bool = Field(True, description="Attack the defense's adaptive view (BPDA for a "
                           "non-differentiable transform, EOT for a randomized one); false attacks it "
                           "as it is, which overstates a defense that hides gradients")


class AttackConfig(BaseModel):
    """What an attack job runs: everything that decides its result."""

    model_config = ConfigDict(extra="forbid")
    plugin: str = Field(min_length=1, max_length=128, description="Attack plugin name, e.g. 'fgsm'")
    params: dict[str, Any] = Field(default_factory=dict, description="The attack's parameters")
    model: str = Field(min_length=1, description="A named model, or a model file (the command line)")
    data: str = Field(min_length=1, description="A named data set, or a data file or folder (the command line)")
    split: str | None = Field(None, max_length=128, description="Split of the data set ('all': every "
                              f"split); empty: '{DEFAULT_SPLIT}' when the data has splits, else all of it")
    limit: int | None = Field(None, ge=1, description="Attack N images of the split, drawn as `sampling` "
                              "says (under `seed`); empty: every image")
    sampling: Sampling = Field("stratified", description="How `limit` draws its images: 'stratified' (each "
                               "class in proportion), 'random', or 'first' (read order)")
    batch_size: int | None = Field(
        None, ge=1, le=1024, description="Images per batch; empty: chosen from the model's memory footprint. "
        "Results do not depend on it")
    seed: Seed = 0
    target: int | str | None = Field(
        None, description="Targeted attacks: a class index or name for every image, or 'next' (the "
        "default: (y + 1) mod K)")
    defense: DefenseChoice | None = Field(None, description="A preprocessing defense in front of the model")

    def chosen_split(self, splits) -> str | None:
        """The split to read of data with `splits` (None: all of data without splits)."""
        if self.split is not None:
            return self.split
        return match(DEFAULT_SPLIT, list(splits)) if splits else None


@dataclass
class AttackOutcome:
    """What an attack job made: the per-image result (measured on the real classifier), the
    images it ran on, the classifier that answered, and the summary every face shows."""

    result: AttackResult
    data: Dataset
    measured: Classifier
    summary: dict


def run_attack(config: AttackConfig | dict, *, classifier: Classifier, source: DataSource,
               registry: Registry, executor=None,
               progress: Callable[[int, int], None] | None = None) -> AttackOutcome:
    """Run `config` on `classifier` and the images `source` gives; the caller loads both its own
    way (a file, a cache), this function decides everything else."""
    from egide.lab.evaluation.running import AttackJob, LocalExecutor

    if isinstance(config, dict):
        config = AttackConfig(**config)
    attack = registry.create("attack", config.plugin, **config.params)
    # The config as it ran, every parameter's value written out: what replays this result.
    config = config.model_copy(update={"params": attack.params.model_dump(mode="json")})
    measured = attacked = classifier
    if config.defense is not None:
        choice = config.defense
        defense = services.preprocessing_defense(registry, choice.plugin, choice.params)
        config.defense = choice.model_copy(update={"params": defense.params.model_dump(mode="json")})
        measured = defense.apply(classifier, seed=config.seed)
        attacked = measured.adaptive() if choice.adaptive else measured
    draw = Draw(config.limit, config.seed, config.sampling) if config.limit else None
    data = for_classifier(source.load(config.chosen_split(source.splits), draw), classifier)
    target = services.targets(config.target, data.y, data.class_names, attack.targeted)
    job = AttackJob(attack, measured, attacked, data.x, data.y, attack.name, target=target)
    report = (lambda done, total, _label: progress(done, total)) if progress else None
    result = (executor or LocalExecutor()).run_all([job], batch_size=config.batch_size, seed=config.seed,
                                                   progress=report)[0]
    summary = {
        **result.summary(),
        "config": config.model_dump(mode="json"),
        "model": config.model,
        "input_range": list(classifier.input_range),
        "input_range_source": classifier.range_source,
        "data": {"source": config.data, "split": config.chosen_split(source.splits)},
        "class_names": list(data.class_names),
        "subset": draw.subset.to_dict() if draw else None,
        "defense": None if config.defense is None else {**measured.defense.config(),
                                                         "adaptive": config.defense.adaptive},
    }
    return AttackOutcome(result, data, measured, summary)
