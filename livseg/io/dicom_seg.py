"""DICOM SEG output for a DICOM CT series (highdicom): BINARY, uncompressed, referencing the
source instances, with a liver segment (LiTS labels ≥ 1: the organ including its tumours) and a
tumour segment (label 2), coded with SNOMED CT."""

from __future__ import annotations

import io

import numpy as np

from livseg.io import storage
from livseg.io.volume import Volume, VolumeError, to_source_grid

SOFTWARE = "livseg"
# Type 2 attributes (present, possibly empty) that highdicom copies into the SEG; sparse exports
# sometimes drop them.
TYPE2 = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
         "ReferringPhysicianName", "StudyID", "AccessionNumber")  # fmt: skip


def _descriptions(version: str) -> list:
    import highdicom as hd
    from pydicom.sr.codedict import codes

    algorithm = hd.AlgorithmIdentificationSequence(
        name=SOFTWARE, version=version, family=codes.cid7162.ArtificialIntelligence
    )
    common = {"algorithm_type": hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
              "algorithm_identification": algorithm}  # fmt: skip
    return [
        hd.seg.SegmentDescription(
            segment_number=1, segment_label="Liver", segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Liver, **common,
        ),
        hd.seg.SegmentDescription(
            segment_number=2, segment_label="Liver tumour",
            segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
            segmented_property_type=codes.SCT.Neoplasm, **common,
        ),
    ]  # fmt: skip


def dicom_seg_bytes(labels: np.ndarray, like: Volume, model_version: str) -> bytes:
    """A DICOM SEG of canonical (X, Y, Z) LiTS ``labels`` for the DICOM series ``like`` was
    read from (its ``meta["files"]``, in slice order)."""
    import highdicom as hd
    import pydicom

    files = like.meta.get("files")
    if like.meta.get("format") != "dicom" or not files:
        raise VolumeError(f"{like.source}: a DICOM SEG needs a DICOM series as its source")
    headers = [
        pydicom.dcmread(io.BytesIO(storage.read_bytes(uri)), stop_before_pixels=True)
        for uri in files
    ]
    for header in headers:
        for keyword in TYPE2:
            if keyword not in header:
                setattr(header, keyword, "")
    source = to_source_grid(labels.astype(np.uint8), like)  # (columns, rows, slices) as read
    frames = np.ascontiguousarray(source.transpose(2, 1, 0))  # (slices, rows, columns)
    pixels = np.stack([frames >= 1, frames == 2], axis=-1)  # (slices, rows, cols, segments)
    seg = hd.seg.Segmentation(
        source_images=headers, pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=_descriptions(model_version), series_instance_uid=hd.UID(),
        series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer=SOFTWARE, manufacturer_model_name=SOFTWARE, software_versions=model_version,
        device_serial_number="0", series_description="livseg liver and tumour",
    )  # fmt: skip
    buffer = io.BytesIO()
    seg.save_as(buffer)
    return buffer.getvalue()


def write_dicom_seg(labels: np.ndarray, like: Volume, uri: str, model_version: str) -> None:
    """Write :func:`dicom_seg_bytes` atomically to ``uri`` (local or ``s3://``)."""
    storage.write_bytes(uri, dicom_seg_bytes(labels, like, model_version))
