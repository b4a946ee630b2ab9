"""Which DICOM series to segment: ``SelectionRules`` (a YAML file of attribute conditions, in
the spirit of MONAI Deploy's series selection rules) and the checks that give every series not
selected its reason."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from livseg.errors import UsageError

ENHANCED_CT = "1.2.840.10008.5.1.4.1.1.2.1"  # Enhanced CT Image Storage (multi-frame)


@dataclass(frozen=True)
class SelectionRules:
    """Rules a DICOM series must pass to be segmented (defaults: axial abdominal CT)."""

    modalities: tuple[str, ...] = ("CT",)
    # ImageType values that mark a series as not diagnostic (scout/localizer views, screenshots)
    exclude_image_types: tuple[str, ...] = ("LOCALIZER", "SCOUT", "SECONDARY", "SCREEN SAVE")
    min_slices: int = 20
    max_slice_spacing_mm: float = 6.0
    max_tilt_degrees: float = 0.5  # gantry tilt beyond this shears the stack (not resampled)
    axial_tolerance: float = 0.9  # |slice normal · z| at least this for an axial series
    # Further conditions: DICOM keyword → allowed values (e.g. {"BodyPartExamined": ["ABDOMEN"]})
    require: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.min_slices < 1 or self.max_slice_spacing_mm <= 0:
            raise UsageError("min_slices must be ≥ 1 and max_slice_spacing_mm > 0")
        if not 0 < self.axial_tolerance <= 1:
            raise UsageError(f"axial_tolerance={self.axial_tolerance}: must be within (0, 1]")
        if not isinstance(self.require, dict):
            raise UsageError("require: a mapping of DICOM keyword → list of allowed values")


def _values(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return [str(v).strip().upper() for v in value]
    return [str(value).strip().upper()]


def rejection(headers: list, rules: SelectionRules) -> str | None:
    """Why a series (its slices' headers, pydicom datasets without pixels) is not segmented,
    or None when it passes every rule. Checks run cheapest first."""
    first = headers[0]
    modality = str(first.get("Modality", "")).upper()
    if modality not in {m.upper() for m in rules.modalities}:
        return f"modality {modality or 'missing'} (segmenting {', '.join(rules.modalities)})"
    if (
        str(first.get("SOPClassUID", "")) == ENHANCED_CT
        or int(first.get("NumberOfFrames", 1) or 1) > 1
    ):
        return "multi-frame (enhanced) CT is not supported; export as single-frame slices"
    image_type = set(_values(first.get("ImageType")))
    excluded = image_type & {t.upper() for t in rules.exclude_image_types}
    if excluded:
        return f"ImageType {'/'.join(sorted(excluded))}: not a diagnostic stack"
    for keyword, allowed in rules.require.items():
        wanted = {str(v).upper() for v in (allowed if isinstance(allowed, list) else [allowed])}
        if not set(_values(first.get(keyword))) & wanted:
            return f"{keyword} {first.get(keyword, 'missing')!s} not in {sorted(wanted)}"
    if len(headers) < rules.min_slices:
        return f"{len(headers)} slices (< {rules.min_slices})"
    try:
        iop = np.array([float(v) for v in first.ImageOrientationPatient])
        positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
    except (AttributeError, TypeError, ValueError):
        return "no usable ImageOrientationPatient/ImagePositionPatient"
    normal = np.cross(iop[:3], iop[3:])
    if abs(normal[2]) < rules.axial_tolerance:
        return "not an axial series (slice normal far from the patient's z axis)"
    tilt = float(first.get("GantryDetectorTilt", 0) or 0)
    along = np.sort(positions @ normal)
    if len(along) > 1:
        step = positions[np.argmax(positions @ normal)] - positions[np.argmin(positions @ normal)]
        cos = abs(step @ normal) / max(np.linalg.norm(step), 1e-9)
        tilt = max(abs(tilt), float(np.degrees(np.arccos(min(1.0, cos)))))
        spacing = float(np.median(np.diff(along)))
        if spacing > rules.max_slice_spacing_mm:
            return f"slice spacing {spacing:.1f} mm (> {rules.max_slice_spacing_mm} mm)"
    if tilt > rules.max_tilt_degrees:
        return f"gantry tilt {tilt:.1f}° is not supported; resample to an orthogonal grid first"
    return None
