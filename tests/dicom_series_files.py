"""DICOM series written the way scanners write them (one file per slice, with its position and
orientation), for the tests of reading series as volumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_slice(path: Path, pixels: np.ndarray, position, orientation, spacing, series: str = "1.2.3.4") -> None:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.SeriesInstanceUID = "MR", series
    ds.ImagePositionPatient = [float(v) for v in position]
    ds.ImageOrientationPatient = [float(v) for v in orientation]
    ds.PixelSpacing = [float(v) for v in spacing]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels, np.uint16).tobytes()
    ds.save_as(path, enforce_file_format=True)


def axial_series(folder: Path, volume: np.ndarray, step: float = 2.0, skip=()) -> Path:
    """Slices written superior first under shuffled names: the reader must order them by position.
    DICOM's patient axes (LPS): x to the patient's left, y to posterior, z to superior."""
    folder.mkdir(parents=True)
    names = np.random.default_rng(1).permutation(len(volume))
    for k in range(len(volume) - 1, -1, -1):
        if k not in skip:
            write_slice(folder / f"IM{names[k]:04d}.dcm", volume[k], (0, 0, k * step), (1, 0, 0, 0, 1, 0), (1.0, 1.0))
    return folder


def sagittal_series(folder: Path, volume: np.ndarray, step: float = 2.0) -> Path:
    """The same volume acquired sagittally: columns run posterior, rows run inferior (superior at
    the top of each picture), one file per x position."""
    folder.mkdir(parents=True)
    for i in range(volume.shape[2]):
        pixels = volume[::-1, :, i]  # rows: z falling; columns: y rising
        write_slice(folder / f"{i}.dcm", pixels, (i * 1.0, 0, (volume.shape[0] - 1) * step),
                    (0, 1, 0, 0, 0, -1), (step, 1.0))
    return folder
