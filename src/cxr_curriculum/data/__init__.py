"""Chest X-ray data: image I/O with clear errors, one loader per public dataset,
patient-level splits and image pools.

Every image is a ``float32`` tensor ``(1, H, W)`` in ``[0, 1]``; every lung mask a
``uint8`` tensor ``(1, H, W)`` with 0 background, 1 lung, :data:`MASK_IGNORE` ignore.
See ``docs/data.md``.
"""

from cxr_curriculum.data._root import DATA_ROOT_ENV, data_root
from cxr_curriculum.data.base import CXRDataset, scan_files
from cxr_curriculum.data.covid import COVID_VS_OTHER, V7_IGNORE_VALUE, CovidChestXray
from cxr_curriculum.data.io import (
    IMAGE_SUFFIXES,
    MASK_IGNORE,
    ImageReadError,
    check_image,
    is_image_file,
    read_image,
    read_mask,
)
from cxr_curriculum.data.items import LabeledImage, MaskedImage
from cxr_curriculum.data.kermany import KermanyPneumonia, kermany_patient_id, kermany_subtype
from cxr_curriculum.data.nih import NIH_CSV_NAME, NIH_FINDINGS, NIHChestXray14, nih_patient_id
from cxr_curriculum.data.pool import ImagePool
from cxr_curriculum.data.sample import bundled_sample_root
from cxr_curriculum.data.shenzhen import ShenzhenMontgomery
from cxr_curriculum.data.splits import (
    dataset_files,
    dataset_labels,
    dataset_patient_ids,
    label_fraction_subset,
    patient_split,
)
from cxr_curriculum.data.unlabeled import DEFAULT_SKIP_DIRS, ImageFiles, UnlabeledImages

__all__ = [
    "COVID_VS_OTHER",
    "DATA_ROOT_ENV",
    "DEFAULT_SKIP_DIRS",
    "IMAGE_SUFFIXES",
    "MASK_IGNORE",
    "NIH_CSV_NAME",
    "NIH_FINDINGS",
    "V7_IGNORE_VALUE",
    "CXRDataset",
    "CovidChestXray",
    "ImageFiles",
    "ImagePool",
    "ImageReadError",
    "KermanyPneumonia",
    "LabeledImage",
    "MaskedImage",
    "NIHChestXray14",
    "ShenzhenMontgomery",
    "UnlabeledImages",
    "bundled_sample_root",
    "check_image",
    "data_root",
    "dataset_files",
    "dataset_labels",
    "dataset_patient_ids",
    "is_image_file",
    "kermany_patient_id",
    "kermany_subtype",
    "label_fraction_subset",
    "nih_patient_id",
    "patient_split",
    "read_image",
    "read_mask",
    "scan_files",
]
