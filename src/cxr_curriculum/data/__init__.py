"""Chest X-ray data: image I/O with clear errors, one loader per public dataset,
patient-level splits and image pools.

Every image is a ``float32`` tensor ``(1, H, W)`` in ``[0, 1]``; every lung mask a
``uint8`` tensor ``(1, H, W)`` with 0 background, 1 lung, :data:`MASK_IGNORE` ignore.
See ``docs/data.md``.
"""

from cxr_curriculum.data._root import DATA_ROOT_ENV, data_root
from cxr_curriculum.data.base import CXRDataset, scan_files
from cxr_curriculum.data.cache import CacheIntegrityError, DecodedCache
from cxr_curriculum.data.chexpert import (
    CHEXPERT_OBSERVATIONS,
    CheXpert,
    chexpert_patient_id,
    observation_targets,
)
from cxr_curriculum.data.covid import (
    COVID_FRONTAL_VIEWS,
    COVID_VS_OTHER,
    V7_IGNORE_VALUE,
    CovidChestXray,
)
from cxr_curriculum.data.dicom import DicomMeta, read_dicom_meta
from cxr_curriculum.data.dicom_pixels import DicomWindowWarning, window_fallbacks
from cxr_curriculum.data.errors import DicomSupportError
from cxr_curriculum.data.exclusion import (
    PoolExclusion,
    exclude_test_images,
    image_records,
    patient_namespace,
)
from cxr_curriculum.data.findings import (
    CANONICAL_FINDINGS,
    CHEXPERT_FINDING_MAP,
    NIH_FINDING_MAP,
    PADCHEST_FINDING_MAP,
    RSNA_FINDING_MAP,
    SIIM_FINDING_MAP,
    VINDR_FINDING_MAP,
    FindingMap,
    finding_map_of,
    harmonised_targets,
    map_findings,
)
from cxr_curriculum.data.findings_pool import FindingsPool
from cxr_curriculum.data.io import (
    IMAGE_SUFFIXES,
    MASK_IGNORE,
    MIN_IMAGE_SIDE,
    ImageReadError,
    check_image,
    decode_image,
    is_image_file,
    read_image,
    read_mask,
)
from cxr_curriculum.data.items import LabeledImage, MaskedImage
from cxr_curriculum.data.kermany import KermanyPneumonia, kermany_patient_id, kermany_subtype
from cxr_curriculum.data.label_table import LabelTable, image_stem
from cxr_curriculum.data.mimic import MIMICCXR, mimic_image_path
from cxr_curriculum.data.multilabel import Box, MultiLabelDataset
from cxr_curriculum.data.nih import (
    NIH_CSV_NAME,
    NIH_CSV_NAMES,
    NIH_FINDINGS,
    NIHChestXray14,
    nih_patient_id,
)
from cxr_curriculum.data.padchest import PADCHEST_FINDINGS, PadChest, parse_label_list
from cxr_curriculum.data.pool import ImagePool
from cxr_curriculum.data.rle import decode_rle, decode_rle_union, encode_rle
from cxr_curriculum.data.rsna import RSNA_CLASSES, RSNAPneumonia
from cxr_curriculum.data.sample import bundled_sample_root
from cxr_curriculum.data.shenzhen import ShenzhenMontgomery
from cxr_curriculum.data.siim import SIIM_CLASSES, SIIMPneumothorax
from cxr_curriculum.data.splits import (
    dataset_files,
    dataset_labels,
    dataset_patient_ids,
    label_fraction_subset,
    patient_split,
)
from cxr_curriculum.data.tables import find_table, read_table
from cxr_curriculum.data.unlabeled import DEFAULT_SKIP_DIRS, ImageFiles, UnlabeledImages
from cxr_curriculum.data.vindr import VINDR_FINDINGS, VinDrCXR
from cxr_curriculum.data.windowing import WINDOWS, Window

__all__ = [
    "CANONICAL_FINDINGS",
    "CHEXPERT_FINDING_MAP",
    "CHEXPERT_OBSERVATIONS",
    "COVID_FRONTAL_VIEWS",
    "COVID_VS_OTHER",
    "DATA_ROOT_ENV",
    "DEFAULT_SKIP_DIRS",
    "IMAGE_SUFFIXES",
    "MASK_IGNORE",
    "MIMICCXR",
    "MIN_IMAGE_SIDE",
    "NIH_CSV_NAME",
    "NIH_CSV_NAMES",
    "NIH_FINDINGS",
    "NIH_FINDING_MAP",
    "PADCHEST_FINDINGS",
    "PADCHEST_FINDING_MAP",
    "RSNA_CLASSES",
    "RSNA_FINDING_MAP",
    "SIIM_CLASSES",
    "SIIM_FINDING_MAP",
    "V7_IGNORE_VALUE",
    "VINDR_FINDINGS",
    "VINDR_FINDING_MAP",
    "WINDOWS",
    "Box",
    "CXRDataset",
    "CacheIntegrityError",
    "CheXpert",
    "CovidChestXray",
    "DecodedCache",
    "DicomMeta",
    "DicomSupportError",
    "DicomWindowWarning",
    "FindingMap",
    "FindingsPool",
    "ImageFiles",
    "ImagePool",
    "ImageReadError",
    "KermanyPneumonia",
    "LabelTable",
    "LabeledImage",
    "MaskedImage",
    "MultiLabelDataset",
    "NIHChestXray14",
    "PadChest",
    "PoolExclusion",
    "RSNAPneumonia",
    "SIIMPneumothorax",
    "ShenzhenMontgomery",
    "UnlabeledImages",
    "VinDrCXR",
    "Window",
    "bundled_sample_root",
    "check_image",
    "chexpert_patient_id",
    "data_root",
    "dataset_files",
    "dataset_labels",
    "dataset_patient_ids",
    "decode_image",
    "decode_rle",
    "decode_rle_union",
    "encode_rle",
    "exclude_test_images",
    "find_table",
    "finding_map_of",
    "harmonised_targets",
    "image_records",
    "image_stem",
    "is_image_file",
    "kermany_patient_id",
    "kermany_subtype",
    "label_fraction_subset",
    "map_findings",
    "mimic_image_path",
    "nih_patient_id",
    "observation_targets",
    "parse_label_list",
    "patient_namespace",
    "patient_split",
    "read_dicom_meta",
    "read_image",
    "read_mask",
    "read_table",
    "scan_files",
    "window_fallbacks",
]
