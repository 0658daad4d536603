"""Uploaded models and data sets, kept under the instance folder with generated names.

    <instance>/uploads/models/upload-<hex>.keras (or .h5) + upload-<hex>.json
    <instance>/uploads/datasets/upload-<hex>.npz (or a folder) + upload-<hex>.json

Only formats that cannot run code are accepted: Keras `.keras`/`.h5` loaded with
`safe_mode=True`, `.npz` read with `allow_pickle=False`, and zips of PNG/JPEG class folders,
extracted entry by entry with every path checked and every size bounded. Everything a user
sends that does not fit is a `Problem` (4xx), and a failed upload leaves nothing behind."""

from __future__ import annotations

import json
import re
import shutil
import stat
import threading
import time
import uuid
import zipfile
import zlib
from pathlib import Path, PurePosixPath

import numpy as np

from egide.core.model_file import ZIP_MAGIC, model_file_problem

from .problems import Problem, field_error, validation_problem

MODEL_SUFFIXES = (".keras", ".h5")
CONVERTED_SUFFIXES = (".onnx",)  # read by a model-format plugin when one is installed (the onnx extra)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
REFUSED = {
    ".zip": "SavedModel folders and zips are refused: a SavedModel holds a TensorFlow graph that can "
            "run arbitrary operations; save the model with model.save('model.keras')",
    ".pb": "SavedModel files are refused over the network; save the model with model.save('model.keras')",
    ".tf": "SavedModel folders are refused over the network; save the model with model.save('model.keras')",
    ".pkl": "pickles run arbitrary code when loaded: refused; save the model with model.save('model.keras')",
    ".pickle": "pickles run arbitrary code when loaded: refused; save the model with model.save('model.keras')",
    ".joblib": "joblib files are pickles, which run arbitrary code when loaded: refused",
    ".npy": "a model must be a .keras or .h5 file",
}
NAME = re.compile(r"^upload-[0-9a-f]{12}$")


def _format_installed(suffix: str) -> bool:
    """Whether an installed model-format plugin reads files with this suffix."""
    from egide.core.registry import registry

    return any(suffix in cls.suffixes for cls in registry().plugins("model-format"))


def _invalid(loc: str, msg: str, type: str = "invalid_upload", input=None) -> Problem:
    return validation_problem([field_error([loc], msg, type, input)])


def _clean_filename(name: str | None) -> str:
    name = PurePosixPath((name or "").replace("\\", "/")).name
    return re.sub(r"[^\w.\- ]", "_", name)[:120] or "upload"


class Uploads:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.models_dir = self.root / "models"
        self.data_dir = self.root / "datasets"
        self.models_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    # ---- listing ------------------------------------------------------------------------------
    def _list(self, folder: Path) -> list[dict]:
        out = []
        for meta in sorted(folder.glob("upload-*.json")):
            try:
                doc = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            if isinstance(doc, dict) and NAME.match(str(doc.get("name", ""))):
                out.append(doc)
        return sorted(out, key=lambda d: d.get("created", 0))

    def models(self) -> list[dict]:
        return self._list(self.models_dir)

    def datasets(self) -> list[dict]:
        return self._list(self.data_dir)

    def model(self, name: str) -> dict | None:
        return next((m for m in self.models() if m["name"] == name), None) if NAME.match(name) else None

    def dataset(self, name: str) -> dict | None:
        return next((d for d in self.datasets() if d["name"] == name), None) if NAME.match(name) else None

    def model_path(self, meta: dict) -> Path:
        return self.models_dir / (meta["name"] + meta["format"])

    def dataset_path(self, meta: dict) -> Path:
        return self.data_dir / (meta["name"] + (".npz" if meta["format"] == ".npz" else ""))

    @staticmethod
    def new_name() -> str:
        return "upload-" + uuid.uuid4().hex[:12]

    # ---- models -------------------------------------------------------------------------------
    def add_model(self, upload, max_bytes: int, input_range=None, max_cost: dict | None = None,
                  normalize=None) -> tuple[dict, object]:
        """Store and load (safe mode) one uploaded model; returns its metadata and Classifier.
        input_range: the pixel range the model expects, or None to read it from the model.
        max_cost: {"input": values per image, "params": weights, "activations": values per image}
        a model may have; a bigger one is refused (413) before anything runs on it.
        normalize: an ONNX model's per-channel (means, stds)."""
        filename = _clean_filename(upload.filename)
        suffix = PurePosixPath(filename.lower()).suffix
        accepted = MODEL_SUFFIXES + tuple(s for s in CONVERTED_SUFFIXES if _format_installed(s))
        if suffix not in accepted:
            why = REFUSED.get(suffix, f"unsupported model format {suffix or '(no suffix)'!r}: send a "
                              f"{', '.join(accepted)} file (model.save('model.keras'))")
            raise _invalid("file", why, "unsupported_format", filename)
        name = self.new_name()
        path = self.models_dir / (name + suffix)
        self._save(upload, path, max_bytes, "file")
        try:
            problem = model_file_problem(path, filename) if suffix in MODEL_SUFFIXES else None  # the CLI's words
            if problem:
                raise _invalid("file", problem, "invalid_model", filename)
            if suffix == ".keras":
                self._check_zip(path, "file", max_entries=10_000, max_total=4 * max_bytes, filename=filename)
            try:
                clf = self.load_model_file(path, input_range, normalize)
            except Exception as exc:  # ModelError, or anything Keras raises for a hostile file
                msg = str(exc).replace(str(path), filename)
                how = "in Keras safe mode" if suffix in MODEL_SUFFIXES else "(converted, checked against onnxruntime)"
                raise _invalid("file", f"could not load {filename} {how}: {msg}", "invalid_model", filename) from None
            clf.name = name
            _check_cost(clf, max_cost or {}, filename)
            meta = {
                "name": name, "title": f"Uploaded model ({filename})", "filename": filename,
                "format": suffix, "bytes": path.stat().st_size, "created": time.time(),
                "input_shape": list(clf.input_shape), "num_classes": int(clf.num_classes),
                "input_range": list(clf.input_range), "input_range_source": clf.range_source,
                "source": "upload", "normalize": normalize, "conversion": clf.conversion,
            }
            self._write_meta(self.models_dir, meta)
            return meta, clf
        except BaseException:
            path.unlink(missing_ok=True)
            raise

    # ---- data sets ----------------------------------------------------------------------------
    def add_dataset(self, upload, max_bytes: int, max_files: int, max_total: int, max_pixels: int,
                    max_total_pixels: int = 250_000_000) -> dict:
        from egide.lab.data import MixedSizesError, load
        from egide.lab.data.folders import holds_series, split_folders

        filename = _clean_filename(upload.filename)
        suffix = PurePosixPath(filename.lower()).suffix
        if suffix not in (".npz", ".zip"):
            raise _invalid("file", "send an .npz (arrays x, y or x_<split>, y_<split>) or a .zip of "
                           "class folders of PNG/JPEG images, DICOM files or NIfTI volumes", "unsupported_format", filename)
        name = self.new_name()
        tmp = self.data_dir / (name + ".part")
        self._save(upload, tmp, max_bytes, "file")
        target = self.data_dir / (name + ".npz") if suffix == ".npz" else self.data_dir / name
        try:
            if not tmp.open("rb").read(4).startswith(ZIP_MAGIC):
                raise _invalid("file", f"{filename} is not a {suffix} archive", "invalid_dataset", filename)
            entries = self._check_zip(tmp, "file", max_entries=max_files, max_total=max_total, filename=filename)
            series = False
            if suffix == ".npz":
                tmp.rename(target)
                keys = {PurePosixPath(e.filename).stem for e in entries}
                splits = sorted(k[2:] for k in keys if k.startswith("x_") and "y_" + k[2:] in keys)
            else:
                self._extract(tmp, target, entries, max_pixels, filename, max_total_pixels)
                tmp.unlink()
                series = holds_series(target)  # <class>/<study>/*.dcm: volumes, for a model of volumes
                splits = split_folders(target, volumes=True) if series else self._folder_splits(target)
            read = {"slice_axis": "volume"} if series else {}
            mixed = None
            try:
                sizes = {}
                for split in splits or [None]:
                    try:
                        ds = load(target, split=split, **read)
                    except MixedSizesError as exc:  # kept: each job resizes them to its model's input
                        mixed = exc.sizes
                        ds = load(target, split=split, image_size=exc.common, **read)
                    sizes[split or "all"] = len(ds.y)
            except Exception as exc:  # DataError for a malformed set; anything else is bad input too
                msg = str(exc).replace(str(target), filename)
                raise _invalid("file", f"{filename}: {msg}", "invalid_dataset", filename) from None
            meta = {
                "name": name, "title": f"Uploaded data set ({filename})", "filename": filename,
                "format": suffix, "created": time.time(), "splits": splits, "images": sizes,
                "image_shape": list(ds.image_shape), "class_names": list(ds.class_names),
                "source": "upload",
            }
            if mixed:
                meta["mixed_sizes"] = mixed
            self._write_meta(self.data_dir, meta)
            return meta
        except BaseException:
            tmp.unlink(missing_ok=True)
            if target.is_dir():
                shutil.rmtree(target, ignore_errors=True)
            else:
                target.unlink(missing_ok=True)
            raise

    @staticmethod
    def _folder_splits(root: Path) -> list[str]:
        """Split folders (<root>/<split>/<class>/img.png) when every top folder holds only folders."""
        tops = [p for p in root.iterdir() if p.is_dir()]
        if tops and all(any(c.is_dir() for c in t.iterdir()) and not any(c.is_file() for c in t.iterdir())
                        for t in tops):
            return sorted(t.name for t in tops)
        return []

    def _extract(self, archive: Path, target: Path, entries, max_pixels: int, filename: str,
                 max_total_pixels: int) -> None:
        """Entry by entry into `target`: only PNG/JPEG images, DICOM files and NIfTI volumes, each
        path checked, sizes counted as read (scans: from their headers, every frame or slice)."""
        from PIL import Image

        from egide.lab.data import dicom, nifti

        target.mkdir()
        pixels = 0
        names = [PurePosixPath(e.filename) for e in entries if not e.is_dir()]
        # A zip of one folder (made by zipping the folder itself): strip that folder.
        strip = 0
        tops = {n.parts[0] for n in names if len(n.parts) > 1 and not _skipped(n)}
        if len(tops) == 1 and all(len(n.parts) > 1 for n in names if not _skipped(n)):
            inner = {n.parts[1] for n in names if len(n.parts) > 2 and not _skipped(n)}
            if inner and all(len(n.parts) > 2 for n in names if not _skipped(n)):
                strip = 1
        kept = [tuple(n.parts[strip:]) for n in names if not _skipped(n)]
        folders = {parts[:i] for parts in kept for i in range(1, len(parts))}
        seen: set = set()
        for parts in kept:
            if parts in folders or parts in seen:
                why = "is both a file and a folder" if parts in folders else "appears twice"
                raise _invalid("file", f"{filename}: {'/'.join(parts)} {why} in the archive",
                               "invalid_dataset", filename)
            seen.add(parts)
        with zipfile.ZipFile(archive) as z:
            for entry in entries:
                path = PurePosixPath(entry.filename)
                if entry.is_dir() or _skipped(path):
                    continue
                lower = path.name.lower()
                scan = "dicom" if lower.endswith(dicom.SUFFIXES) else "nifti" if lower.endswith(nifti.SUFFIXES) else None
                if path.suffix.lower() not in IMAGE_SUFFIXES and scan is None:
                    raise _invalid("file", f"{filename}: {entry.filename} is not a PNG or JPEG image, a DICOM "
                                   "file or a NIfTI volume; a data set zip holds only <class>/<image> (or "
                                   "<split>/<class>/<image>)", "invalid_dataset", filename)
                dest = target.joinpath(*path.parts[strip:])
                if not dest.resolve().is_relative_to(target.resolve()):
                    raise _invalid("file", f"{filename}: unsafe path {entry.filename!r}", "unsafe_path", filename)
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with z.open(entry) as src, dest.open("wb") as out:
                        left = entry.file_size
                        while chunk := src.read(1 << 16):
                            left -= len(chunk)
                            if left < 0:  # more than the header declared: a lying zip
                                raise _invalid("file", f"{filename}: {entry.filename} is larger than declared",
                                               "invalid_dataset", filename)
                            out.write(chunk)
                except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                    raise _invalid("file", f"{filename}: {entry.filename} is damaged in the archive ({exc})",
                                   "invalid_dataset", filename) from None
                try:
                    if scan is None:
                        with Image.open(dest) as im:
                            (w, h), frames = im.size, 1
                    else:
                        h, w, frames = dicom.dicom_size(dest) if scan == "dicom" else nifti.nifti_size(dest)
                except Exception:
                    raise _invalid("file", f"{filename}: {entry.filename} is not a readable "
                                   f"{'image' if scan is None else scan.upper() + ' file'}",
                                   "invalid_dataset", filename) from None
                if w * h > max_pixels:
                    raise Problem(413, "Image too large", f"{filename}: {entry.filename} has {w}x{h} pixels, "
                                  f"more than the {max_pixels} allowed", type="image-too-large")
                pixels += w * h * frames
                if pixels > max_total_pixels:  # small files can decode to a lot of memory
                    raise Problem(413, "Data set too large", f"{filename}: its images hold more than "
                                  f"{max_total_pixels} pixels together", type="archive-too-large")

    def add_trained_model(self, path: Path, *, title: str, data: str, class_names: list[str],
                          made_by: dict) -> tuple[dict, object]:
        """Register a model a defend job trained (a copy of its `model.keras`) as an uploaded
        model; `data` names the data set it was trained on (for its class names and detectors).
        Returns its metadata and Classifier, loaded from the copy as after a restart."""
        name = self.new_name()
        target = self.models_dir / (name + ".keras")
        shutil.copyfile(path, target)
        clf = self.load_model_file(target)
        clf.name = name
        meta = {
            "name": name, "title": title, "filename": Path(path).name, "format": ".keras",
            "bytes": target.stat().st_size, "created": time.time(),
            "input_shape": list(clf.input_shape), "num_classes": int(clf.num_classes),
            "input_range": list(clf.input_range), "input_range_source": clf.range_source,
            "class_names": list(class_names), "data": data, "made_by": made_by, "source": "upload",
        }
        self._write_meta(self.models_dir, meta)
        return meta, clf

    def load_model(self, meta: dict):
        declared = meta.get("input_range") if meta.get("input_range_source") == "declared" else None
        clf = self.load_model_file(self.model_path(meta), declared, meta.get("normalize"))
        clf.name = meta["name"]
        return clf

    @staticmethod
    def load_model_file(path: Path, input_range=None, normalize=None):
        from egide.core.classifier import Classifier

        # Keras: safe_mode=True, compile=False; ONNX: self-contained files only, checked against onnxruntime
        return Classifier.load(path, input_range=input_range, normalize=normalize)

    def remove_model(self, meta: dict) -> None:
        self.model_path(meta).unlink(missing_ok=True)
        (self.models_dir / (meta["name"] + ".json")).unlink(missing_ok=True)

    def update(self, meta: dict, kind: str) -> None:
        self._write_meta(self.models_dir if kind == "model" else self.data_dir, meta)

    # ---- shared -------------------------------------------------------------------------------
    @staticmethod
    def _save(upload, path: Path, max_bytes: int, field: str) -> None:
        size = 0
        with path.open("wb") as out:
            while chunk := upload.stream.read(1 << 20):
                size += len(chunk)
                if size > max_bytes:
                    out.close()
                    path.unlink(missing_ok=True)
                    raise Problem(413, "Upload too large", f"at most {max_bytes} bytes per file",
                                  type="upload-too-large")
                out.write(chunk)
        if size == 0:
            path.unlink(missing_ok=True)
            raise _invalid(field, "an empty file", "empty", _clean_filename(upload.filename))

    @staticmethod
    def _check_zip(path: Path, field: str, *, max_entries: int, max_total: int, filename: str):
        """The entries of a zip, refused if there are too many, they are too large once unpacked, or
        any path is absolute, climbs out with '..', or is a symbolic link."""
        try:
            with zipfile.ZipFile(path) as z:
                entries = z.infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise _invalid(field, f"{filename} is not a readable zip archive ({exc})", "invalid_archive",
                           filename) from None
        if len(entries) > max_entries:
            raise Problem(413, "Archive too large", f"{filename} holds {len(entries)} entries; at most "
                          f"{max_entries}", type="archive-too-large")
        total = sum(e.file_size for e in entries)
        if total > max_total:
            raise Problem(413, "Archive too large", f"{filename} unpacks to {total} bytes; at most {max_total}",
                          type="archive-too-large")
        for e in entries:
            raw = e.filename.replace("\\", "/")
            parts = PurePosixPath(raw).parts
            mode = e.external_attr >> 16
            if (raw.startswith("/") or re.match(r"^[A-Za-z]:", raw) or ".." in parts
                    or stat.S_ISLNK(mode) or "\0" in raw):
                raise _invalid(field, f"{filename}: unsafe path {e.filename!r} (absolute, '..' or a link)",
                               "unsafe_path", filename)
        return entries

    def _write_meta(self, folder: Path, meta: dict) -> None:
        tmp = folder / (meta["name"] + ".json.part")
        tmp.write_text(json.dumps(meta, indent=1))
        tmp.rename(folder / (meta["name"] + ".json"))


def _skipped(path: PurePosixPath) -> bool:
    """macOS and editor litter in zips: __MACOSX/, .DS_Store, hidden files."""
    return path.parts[0] == "__MACOSX" or any(p.startswith(".") for p in path.parts)


def model_cost(clf) -> dict:
    """What one image costs the model: its input values, its weights, its activation values."""
    return {"input": int(np.prod(clf.input_shape)), "params": int(clf.model.count_params()),
            "activations": clf.activations_per_image()}


def _check_cost(clf, limits: dict, filename: str) -> None:
    """A 16 KB file can describe a model that takes gigabytes per image: refuse it at upload."""
    cost = model_cost(clf)
    what = {"input": "input values per image", "params": "weights", "activations": "activation values per image"}
    for key, most in limits.items():
        if most and cost[key] > most:
            raise Problem(413, "Model too costly", f"{filename}: {cost[key]:,} {what[key]}, more than the "
                          f"{most:,} this server accepts (EGIDE_MAX_MODEL_{key.upper()})",
                          type="model-too-costly", limit=key, value=cost[key], most=most)

