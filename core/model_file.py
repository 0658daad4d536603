"""What a model file must look like before Keras opens it, checked on its first bytes without
TensorFlow: the command line says so at once, in the same words as the page's upload."""

from __future__ import annotations

from pathlib import Path

from .errors import ModelError

MODEL_SUFFIXES = (".keras", ".h5", ".hdf5")
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


def model_file_problem(path: Path, shown: str | None = None) -> str | None:
    """Why `path` cannot be a Keras model file (None when its suffix and first bytes fit).
    `shown`: the name to use in the message (an upload's own file name)."""
    name = shown or str(path)
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        return (f"{name}: unsupported model format '{path.suffix or '(no suffix)'}'; save the model with "
                "model.save('model.keras') (or .h5)")
    if path.is_dir():
        return f"{name} is a folder, not a model file; give the .keras or .h5 file written by model.save"
    if not path.is_file():
        return f"{name}: model file not found"
    with path.open("rb") as f:
        head = f.read(8)
    if suffix == ".keras" and not head.startswith(ZIP_MAGIC):
        return f"{name} is not a .keras archive (a zip written by model.save)"
    if suffix in (".h5", ".hdf5") and not head.startswith(HDF5_MAGIC):
        return f"{name} is not an HDF5 (.h5) file"
    return None


def check_model_file(path: Path, shown: str | None = None) -> None:
    if problem := model_file_problem(Path(path), shown):
        raise ModelError(problem)
