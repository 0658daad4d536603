"""Request bodies of the JSON API, as pydantic models that refuse unknown fields."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from egide.lab.evaluation.pipeline import EvaluationConfig
from egide.lab.jobs import AttackConfig, DefendConfig, DefenseChoice

MAX_IMAGES = 2048  # images one job may attack (EGIDE_MAX_IMAGES)
Name = Annotated[str, Field(min_length=1, max_length=128)]  # plugin, model, data set and split names


class JobDefense(DefenseChoice):
    """A preprocessing defense the attacked model sits behind."""

    plugin: Name = Field(description="Defense plugin name (a preprocessor: GET /api/v1/plugins)")


class AttackJob(AttackConfig):
    """Run one attack on a named model and data set (optionally behind a preprocessing defense).
    Robust accuracy is always what the defended model answers on the adversarial images. The
    fields are the lab's attack config (egide.lab.jobs.AttackConfig, what `egide attack` runs);
    the server names its models and data sets and bounds the images of a job."""

    kind: Literal["attack"]
    plugin: Name = Field(description="Attack plugin name, e.g. 'fgsm'")
    model: Name | None = Field(None, description="Named model (GET /api/v1/models); default: the "
                              "preselected one, the demo model when installed")
    data: Name | None = Field(None, description="Named data set (GET /api/v1/datasets); default: the "
                             "one the model declares, else the preselected one")
    split: Name | None = Field(None, description="Split of the data set ('all': every split); empty: "
                               "'test' when the data set has splits, else all of it")
    limit: int | None = Field(64, ge=1, description="Attack N images of the split, drawn as `sampling` says "
                              "(under `seed`); empty: as many as the server allows per job (EGIDE_MAX_IMAGES). "
                              "64 by default, where the command line attacks every image: a server bounds a job")
    defense: JobDefense | None = Field(None, description="A preprocessing defense in front of the model")


class DefendJob(DefendConfig):
    """Train a defended model with a trainer plugin (a defense that needs training data) on the
    train split of a named data set (validated on its val split). The trained model is saved as the
    job's artifact `model.keras` and registered as an uploaded model (its name is in the result).
    The fields are the lab's defend config (egide.lab.jobs.DefendConfig, what `egide defend` runs)."""

    kind: Literal["defend"]
    plugin: Name = Field(description="Trainer plugin name (a defense with needs_training_data)")
    model: Name | None = Field(None, description="Named model to start from (GET /api/v1/models); "
                              "default: the preselected one, the demo model when installed")
    data: Name | None = Field(None, description="Named data set with a train split; default: the one "
                             "the model declares, else the preselected one")


class EvaluateJob(BaseModel):
    """Run an evaluation (attacks x epsilons) and write report.html and report.json."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["evaluate"]
    config: EvaluationConfig = Field(default_factory=EvaluationConfig)


# ---- response bodies and multipart forms (documented in the OpenAPI document) ------------------
class FieldError(BaseModel):
    """One bad field of a request, by location."""

    loc: list[str | int] = Field(description="Keys down to the bad field, e.g. ['params', 'eps']")
    pointer: str = Field(description="The same location as a JSON Pointer")
    field: str = Field(description="The same location, dotted")
    msg: str
    type: str
    input: str | int | float | bool | None = None


class ProblemDoc(BaseModel):
    """An RFC 9457 problem document (media type application/problem+json)."""

    type: str = Field(description="urn:egide:problem:<kind>, or about:blank")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description="For validation errors (422)")


class PluginInfo(BaseModel):
    kind: str
    name: str
    title: str
    description: str
    version: str
    no_volumes: str | None = Field(None, description="Why it cannot take volumes (N, D, H, W, C); null when it can")
    schema_: dict[str, Any] = Field(alias="schema", description="JSON Schema of its parameters")
    source: str | None = None


class PluginList(BaseModel):
    plugins: dict[str, list[PluginInfo]] = Field(description="By kind: attacks, defenses, detectors, datasets, models")
    failures: list[dict[str, Any]] = Field(description="Plugins that failed to load, and why")


class NamedSource(BaseModel):
    name: str
    title: str
    description: str
    version: str | None = Field(description="Plugin version (null for uploads)")
    source: Literal["builtin", "upload"]
    splits: list[str] | None = Field(None, description="Data sets only")
    input_shape: list[int] | None = Field(None, description="Uploaded models: [height, width, channels]")
    num_classes: int | None = Field(None, description="Uploaded models")
    input_range: list[float] | None = Field(None, description="Uploaded models: the pixel range the "
                                            "model expects (images and eps are in [0, 1] units of it)")
    input_range_source: str | None = Field(None, description="Uploaded models: declared, detected "
                                           "(and from which layer) or assumed")
    class_names: list[str] | None = None
    image_shape: list[int] | None = Field(None, description="Uploaded data sets")
    images: dict[str, int] | None = Field(None, description="Uploaded data sets: images per split")
    mixed_sizes: str | None = Field(None, description="Uploaded data sets whose scans differ in size: "
                                    "which sizes (each job resizes them to its model's input; "
                                    "image_shape is the most common)")
    data: Name | None = Field(None, description="Models trained by a defend job: their data set")
    made_by: dict[str, Any] | None = Field(None, description="Models trained by a defend job: the job "
                                           "and the trainer's configuration")


class ModelUploadForm(BaseModel):
    """multipart/form-data: a Keras model file (.keras or .h5, loaded with safe_mode=True).
    SavedModel folders or zips, pickles and anything else are refused."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description=".keras or .h5 model file")
    class_names: str | None = Field(None, description="Comma-separated class names, one per model output")
    input_range: str | None = Field(None, description="The pixel range the model expects, LOW,HIGH "
                                    "(e.g. 0,255); empty or 'auto': read from a leading Rescaling or "
                                    "Normalization layer, else 0,1")


class DatasetUploadForm(BaseModel):
    """multipart/form-data: an .npz (x, y [, class_names] or x_<split>, y_<split>; read with
    allow_pickle=False) or a .zip of <class>/<image> (or <split>/<class>/<image>) folders of PNG/JPEG images, DICOM files or NIfTI volumes."""

    file: bytes = Field(json_schema_extra={"format": "binary"}, description=".npz or .zip file")


class ModelList(BaseModel):
    models: list[NamedSource]


class DatasetList(BaseModel):
    datasets: list[NamedSource]


class JobCreated(BaseModel):
    id: str
    url: str
    state: Literal["queued"]
    rerun_of: str | None = Field(None, description="POST /jobs/{id}/rerun: the job this one re-runs")


class JobProgress(BaseModel):
    done: int
    total: int
    label: str | None = None
    fraction: float


class JobLinks(BaseModel):
    page: str = Field(description="The lab page with this job's result shown (bookmarkable)")
    report: str | None = Field(None, description="An evaluation's full report (report.html), served "
                               "for as long as the job is kept")
    card: str | None = Field(None, description="An evaluation's robustness card (card.html): what was tested, "
                             "against what, what held, with intervals; card.json is among the artifacts")
    card_pdf: str | None = Field(None, description="The same robustness card as a PDF (card.pdf)")


class Job(BaseModel):
    id: str
    url: str
    kind: Literal["attack", "evaluate", "defend"]
    state: Literal["queued", "running", "done", "failed", "cancelled", "interrupted"]
    request: dict[str, Any]
    created: float | str | None = None
    started: float | str | None = None
    finished: float | str | None = None
    progress: JobProgress
    result: dict[str, Any] | None = None
    error: str | dict[str, Any] | None = None
    artifacts: dict[str, str] = Field(description="Artifact name -> download URL")
    rerun_by: str | None = Field(None, description="The job that re-ran this one, if any")
    links: JobLinks


class JobList(BaseModel):
    jobs: list[Job]


class PredictForm(BaseModel):
    """multipart/form-data: the images and the model to classify them with."""

    image: list[bytes] = Field(description="One or more files: PNG, JPEG, DICOM (.dcm), NIfTI (.nii, "
                               ".nii.gz) or .npy float arrays in [0, 1] shaped (H, W), (H, W, 1) or (H, W, 3)",
                               min_length=1)
    model: Name | None = Field(None, description="Named model (GET /api/v1/models); default: the "
                              "preselected one, the demo model when installed")
    detector: str | None = Field(None, description="A detector plugin to flag adversarial inputs. "
                                 "Fitted to the model on first use, in the background (503 with Retry-After "
                                 "until done), on up to EGIDE_DETECTOR_FIT_IMAGES held-out images of "
                                 "`reference_data` (its val split, else train, else all of it; a supervised "
                                 "one also on PGD examples at eps 4/255), then kept")
    reference_data: Name | None = Field(None, description="The data set the model was made for (GET "
                                        "/api/v1/datasets: built in or uploaded): the detector is fitted on "
                                        "held-out images of it, and each image is compared with it (the "
                                        "out-of-distribution check); default: the data the model was trained "
                                        "on, when the server knows it")
    detector_params: str | None = Field(None, description="The detector's parameters, as a JSON object")


class Prediction(BaseModel):
    file: str
    label: int = Field(description="Predicted class index")
    class_name: str
    confidences: dict[str, float] = Field(description="Softmax of the logits, by class name")
    logits: list[float]
    resized_from: list[int] = Field(description="[height, width] of the upload before it was resized "
                                    "to the model's input; [depth, height, width] of a volume")
    resized: bool
    adversarial_score: float | None = Field(None, description="With a detector: its score, higher "
                                            "is more likely adversarial")
    flagged: bool | None = Field(None, description="With a detector: score above its threshold")


class DetectorInfo(BaseModel):
    plugin: str
    version: str | None = None
    params: dict[str, Any]
    threshold: float = Field(description="Scores above this are flagged")
    fpr: float = Field(description="Target false-positive rate on clean images the threshold was set at")
    fitted: dict[str, Any] | None = Field(None, description="What it was fitted on (images, data set, "
                                          "adversarial examples, seconds), when fitted by this server run")


class PredictResult(BaseModel):
    model: str
    input_shape: list[int] = Field(description="[height, width, channels] the images were converted to")
    class_names: list[str]
    detector: DetectorInfo | None = None
    predictions: list[Prediction]
