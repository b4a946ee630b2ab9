"""Walking a hospital archive (local or ``s3://``): NIfTI files are studies; DICOM files are
grouped into series by SeriesInstanceUID wherever they lie (file and folder names say nothing)
and selected by ``SelectionRules``. Everything not segmented gets a row saying why.

Study keys carry no patient name or ID: a hash of the study and series UIDs (DICOM) or of the
path relative to the archive (NIfTI). Fingerprints are of content, not paths: SHA-256 of a
NIfTI file's bytes; of the sorted SOPInstanceUIDs and file sizes of a series (DICOM gives every
changed image a new UID). Copies of one image (same SOPInstanceUID, a PACS re-export) count
once; a study whose content equals an earlier one's is skipped as a duplicate.
"""

from __future__ import annotations

import hashlib
import io
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from livseg.archive.rules import SelectionRules, rejection
from livseg.io import NIFTI_SUFFIXES, storage

HEADER_BYTES = 64 * 1024  # DICOM headers end well before this; the pixels are not read here
READERS = 16  # parallel header reads (I/O bound; pydicom parsing is light without pixels)


@dataclass(frozen=True)
class Study:
    """One volume to segment: a NIfTI file or the files of one DICOM series."""

    key: str
    kind: str  # "nifti" | "dicom"
    inputs: tuple[str, ...]
    fingerprint: str
    source: str  # the file, or the folder(s) holding the series, for the report


@dataclass(frozen=True)
class Skipped:
    """An input that is not segmented, and why (``stage``: discover or select)."""

    input: str
    stage: str
    reason: str


def _hash(*parts: str) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()


def _relative(uri: str, root: str) -> str:
    return uri[len(root) :].lstrip("/") if uri.startswith(root) else uri


def _file_digest(uri: str) -> str:
    return hashlib.sha256(storage.read_bytes(uri)).hexdigest()


def _dicom_header(uri: str):
    """The header of a DICOM file without its pixels; None when it is not DICOM; the error's
    type name when it cannot be read (one bad file must not stop the night)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        for data in (storage.read_head(uri, HEADER_BYTES), None):
            data = data if data is not None else storage.read_bytes(uri)
            try:
                return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            except (InvalidDicomError, EOFError, OSError, ValueError, TypeError, KeyError):
                if len(data) < HEADER_BYTES:
                    return None  # the whole file was read: not DICOM
    except Exception as exc:  # noqa: BLE001 - reported as the file's skip reason
        return type(exc).__name__
    return None


def discover(archive: str, rules: SelectionRules) -> tuple[list[Study], list[Skipped]]:
    """Studies to segment and inputs skipped (with reasons), in a stable order."""
    root = storage.absolute(archive).rstrip("/")
    files = storage.list_files(root)
    skipped = [Skipped(uri, "discover", "empty file (0 bytes)") for uri, size in files if not size]
    files = [(uri, size) for uri, size in files if size]
    sizes = dict(files)
    nifti = [uri for uri, _ in files if uri.lower().endswith(NIFTI_SUFFIXES)]
    others = [uri for uri, _ in files if not uri.lower().endswith(NIFTI_SUFFIXES)]
    with ThreadPoolExecutor(READERS) as pool:
        digests = list(pool.map(_file_digest, nifti))
        headers = list(pool.map(_dicom_header, others))
    studies = [
        Study("n-" + _hash(_relative(uri, root))[:16], "nifti", (uri,), digest, uri)
        for uri, digest in zip(nifti, digests, strict=True)
    ]
    series: dict[str, list] = defaultdict(list)
    for uri, header in zip(others, headers, strict=True):
        if header is None:
            skipped.append(Skipped(uri, "discover", "not a NIfTI or DICOM file"))
        elif isinstance(header, str):
            skipped.append(Skipped(uri, "discover", f"unreadable DICOM header ({header})"))
        elif "SeriesInstanceUID" not in header:
            skipped.append(Skipped(uri, "discover", "DICOM file without SeriesInstanceUID"))
        else:
            series[str(header.SeriesInstanceUID)].append((uri, header))
    for uid, members in sorted(series.items()):
        unique = {}  # SOPInstanceUID → the first copy by path
        for uri, header in sorted(members, key=lambda m: m[0]):
            unique.setdefault(str(header.get("SOPInstanceUID", uri)), (uri, header))
        members = list(unique.values())
        uris = sorted(uri for uri, _ in members)
        source = ", ".join(sorted({uri.rsplit("/", 1)[0] for uri in uris}))
        try:
            reason = rejection([h for _, h in members], rules)
        except Exception as exc:  # noqa: BLE001 - a malformed value (IS, DS) in one series
            reason = f"unreadable header values ({type(exc).__name__})"
        if reason:
            skipped.append(Skipped(source, "select", f"series of {len(uris)} files: {reason}"))
            continue
        study_uid = str(members[0][1].get("StudyInstanceUID", ""))
        content = sorted(f"{sop}:{sizes[uri]}" for sop, (uri, _) in unique.items())
        key = "d-" + _hash(study_uid, uid)[:16]
        studies.append(Study(key, "dicom", tuple(uris), _hash(*content), source))
    return _unique_content(studies, skipped)


def _unique_content(studies: list[Study], skipped: list[Skipped]) -> tuple[list, list]:
    """One study per fingerprint (the ledger is keyed by content): the first by path is kept,
    later copies are skipped."""
    first: dict[str, Study] = {}
    for study in sorted(studies, key=lambda s: s.source):
        if study.fingerprint in first:
            reason = f"same content as study {first[study.fingerprint].key}"
            skipped.append(Skipped(study.source, "discover", reason))
        else:
            first[study.fingerprint] = study
    return sorted(first.values(), key=lambda s: s.key), skipped
