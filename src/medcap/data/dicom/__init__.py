"""DICOM sources (folders, DICOMweb servers) as medcap datasets, without identifiers.

See medcap.data.dicom.policy for what an index may store about a DICOM case.
"""

from medcap.data.dicom.dataset import DicomDataset, DicomOptions
from medcap.data.dicom.folder import DicomFolderDataset, holds_dicom
from medcap.data.dicom.pseudonyms import PseudonymKey, load_pseudonym_key

__all__ = [
    "DicomDataset",
    "DicomFolderDataset",
    "DicomOptions",
    "PseudonymKey",
    "holds_dicom",
    "load_pseudonym_key",
]
