"""LUNA16 on disk: CSVs, CT geometry, scans read in place, candidate lists.

Nothing here loads the compiled operators until a crop is asked for.
"""

from torchlite.data.candidates import (
    CandidateInfo,
    UnifyReport,
    attach_diameters,
    load_candidate_info,
    unify_classification,
    unify_malignancy,
)
from torchlite.data.discovery import discover_scans
from torchlite.data.geometry import Geometry, irc_to_xyz, xyz_to_irc, xyz_to_irc_float
from torchlite.data.luna_csv import (
    AnnotationRow,
    CandidateRow,
    LunaCsvError,
    MalignancyRow,
    read_annotations,
    read_candidates,
    read_malignancy_annotations,
)
from torchlite.data.metaimage import MetaImageHeader, ScanError, read_header
from torchlite.data.scan import CtScan
from torchlite.data.scan_cache import default_cache_dir
from torchlite.data.scan_pool import ScanPool

__all__ = [
    "AnnotationRow",
    "CandidateInfo",
    "CandidateRow",
    "CtScan",
    "Geometry",
    "LunaCsvError",
    "MalignancyRow",
    "MetaImageHeader",
    "ScanError",
    "ScanPool",
    "UnifyReport",
    "attach_diameters",
    "default_cache_dir",
    "discover_scans",
    "irc_to_xyz",
    "load_candidate_info",
    "read_annotations",
    "read_candidates",
    "read_header",
    "read_malignancy_annotations",
    "unify_classification",
    "unify_malignancy",
    "xyz_to_irc",
    "xyz_to_irc_float",
]
