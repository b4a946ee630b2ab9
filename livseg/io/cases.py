"""Find LiTS-layout cases (local or ``s3://``) and build the case index with a patient split.

Layouts: flat (``volume-N.nii[.gz]`` beside ``segmentation-N.nii[.gz]``), Kaggle
(``volume_pt*/volume-N.nii`` + ``segmentations/segmentation-N.nii``), or anything in between:
files are matched by name anywhere below the root. A folder named ``volume-N`` holding a DICOM
series is a case too when no NIfTI ``volume-N`` exists.
"""

from __future__ import annotations

import csv
import hashlib
import io
import posixpath
import re
from dataclasses import dataclass

from livseg.errors import UsageError
from livseg.io import storage

VOLUME_RE = re.compile(r"^volume-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
MASK_RE = re.compile(r"^segmentation-(\d+)\.nii(\.gz)?$", re.IGNORECASE)
DICOM_DIR_RE = re.compile(r"^volume-(\d+)$", re.IGNORECASE)
SPLITS = ("train", "test", "val")  # order of PreprocessConfig.split fractions (the study's)
INDEX_COLUMNS = (
    "case_id", "dirname", "filename", "mask_dirname", "mask_filename", "split", "patient",
    "shape", "spacing", "liver_voxels", "tumour_voxels", "status", "error",
)  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One CT volume and its mask, named the way the study's index table names them."""

    case_id: int
    dirname: str
    filename: str
    mask_dirname: str
    mask_filename: str
    patient: str

    @property
    def image_uri(self) -> str:
        return storage.join(self.dirname, self.filename)

    @property
    def mask_uri(self) -> str | None:
        return storage.join(self.mask_dirname, self.mask_filename) if self.mask_filename else None


def _split_uri(uri: str) -> tuple[str, str]:
    head, tail = posixpath.split(uri.rstrip("/"))
    return head, tail


def patient_key(identifier: str) -> str:
    """A pseudonym of a patient identifier, to group cases by: a short SHA-256 prefix, so the
    identifier is not stored; not an anonymisation (someone holding the list of identifiers
    could recompute it). Give pseudonyms in the patients table where that matters."""
    return "pt-" + hashlib.sha256(str(identifier).encode()).hexdigest()[:16]


def read_patients(uri: str) -> dict[int, str]:
    """A case → patient table (CSV, local or ``s3://``, columns ``case_id`` and ``patient``)
    as ``{case_id: patient_key(patient)}``; ``UsageError`` naming the file and the row."""
    try:
        text = storage.read_text(uri)
    except (FileNotFoundError, OSError) as exc:
        raise UsageError(f"patients={uri}: cannot read the table ({exc})") from exc
    reader = csv.DictReader(io.StringIO(text))
    if not {"case_id", "patient"} <= set(reader.fieldnames or []):
        raise UsageError(f"patients={uri}: expected CSV columns case_id,patient")
    table: dict[int, str] = {}
    for line, row in enumerate(reader, start=2):
        try:
            case_id = int(row["case_id"])
        except (TypeError, ValueError):
            raise UsageError(f"patients={uri}, line {line}: case_id {row['case_id']!r}") from None
        if not (row["patient"] or "").strip():
            raise UsageError(f"patients={uri}, line {line}: empty patient for case {case_id}")
        table[case_id] = patient_key(row["patient"].strip())
    return table


def discover_cases(root: str, patients: dict[int, str] | None = None) -> list[Case]:
    """Find every case below ``root``; raise ``UsageError`` when there is none.

    ``patients`` (from :func:`read_patients`) names each case's patient; a case it does not
    name gets its patient from the data (DICOM PatientID, in preprocessing's first pass) or
    stands for a patient of its own.
    """
    try:
        files = storage.list_files(root)
    except FileNotFoundError as exc:
        raise UsageError(f"{exc}; give --input a LiTS-layout folder or s3:// prefix") from exc
    volumes: dict[int, str] = {}
    masks: dict[int, str] = {}
    dicom_dirs: dict[int, str] = {}
    for uri, _size in files:
        head, name = _split_uri(uri)
        if m := VOLUME_RE.match(name):
            volumes.setdefault(int(m.group(1)), uri)
        elif m := MASK_RE.match(name):
            masks.setdefault(int(m.group(1)), uri)
        elif m := DICOM_DIR_RE.match(_split_uri(head)[1]):
            dicom_dirs.setdefault(int(m.group(1)), head)
    for case_id, folder in dicom_dirs.items():
        volumes.setdefault(case_id, folder)
    if not volumes:
        raise UsageError(
            f"{root}: no volume-N.nii[.gz] files or volume-N/ DICOM folders found; "
            "expected a LiTS layout (flat or Kaggle volume_pt*/ + segmentations/)"
        )
    cases = []
    for case_id in sorted(volumes):
        dirname, filename = _split_uri(volumes[case_id])
        mask_dir, mask_name = _split_uri(masks[case_id]) if case_id in masks else ("", "")
        patient = (patients or {}).get(case_id, "")
        cases.append(Case(case_id, dirname, filename, mask_dir, mask_name, patient))
    return cases


def _unit_hash(key: str, seed: int) -> float:
    digest = hashlib.sha256(f"livseg-split:{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_splits(
    patients: list[str], fractions: tuple[float, float, float] = (0.7, 0.2, 0.1), seed: int = 0
) -> dict[str, str]:
    """Map each patient to ``train``/``test``/``val``, deterministically.

    Each patient's split depends only on a hash of its own key, so adding cases never moves an
    existing patient. With three or more patients no split is left empty: the patient whose hash
    lies nearest an empty split's interval moves there (only then can a split shift).
    """
    unique = sorted(set(patients))
    edges = [0.0, fractions[0], fractions[0] + fractions[1], 1.0]
    u = {p: _unit_hash(p, seed) for p in unique}

    def split_of(value: float) -> str:
        for name, hi in zip(SPLITS, edges[1:], strict=True):
            if value < hi:
                return name
        return SPLITS[-1]

    out = {p: split_of(u[p]) for p in unique}
    if len(unique) >= 3:
        for i, name in enumerate(SPLITS):
            if fractions[i] == 0 or name in out.values():
                continue
            lo, hi = edges[i], edges[i + 1]
            counts = {s: list(out.values()).count(s) for s in SPLITS}
            donors = [p for p in unique if counts[out[p]] >= 2]
            nearest = min(donors, key=lambda p: max(lo - u[p], u[p] - hi, 0.0))
            out[nearest] = name
    return out
