"""Datasets for kt-nnunet: a procedural generator, real demo data from PyPI packages, MSD and folder import.

Every builder writes an nnU-Net raw dataset atomically (hidden staging folder, then one rename) and
refuses to replace an existing one unless ``force=True``. The public functions:

- ``synth_dataset(id, name, out, ...)`` / ``tiny_dataset(id, name, out)``: the generator;
- ``build_demo(out, base_id=900)``: brain MRI source / transferal / test sets from nilearn's MNI152;
- ``build_crossmodality(out, base_id=910)``: CT source, MR transferal / test from TotalSegmentator's sdist;
- ``import_msd(task_folder, dataset_id=None)``: an MSD task through nnU-Net's converter;
- ``register_folder(folder, id, name, like=...)``: any folder of images as an unlabelled transferal set;
- ``make_subset(dataset, id, name, cases, seed)``: a few labelled cases as their own (fine-tuning) dataset;
- ``validate_dataset(folder)``: one ``DatasetError`` naming the file and the fix, or a summary.

Imports are lazy so that ``import kt_nnunet.data`` stays cheap.
"""
from __future__ import annotations

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    "synth_dataset": "kt_nnunet.data.synth", "tiny_dataset": "kt_nnunet.data.synth",
    "synth_case": "kt_nnunet.data.synth", "ShapeConfig": "kt_nnunet.data.synth_shapes",
    "DomainConfig": "kt_nnunet.data.synth_domain", "DOMAIN_PRESETS": "kt_nnunet.data.synth_domain",
    "build_demo": "kt_nnunet.data.demo", "DemoDatasets": "kt_nnunet.data.demo",
    "build_crossmodality": "kt_nnunet.data.crossmodality",
    "fetch_totalsegmentator": "kt_nnunet.data.fetch", "FetchError": "kt_nnunet.data.fetch",
    "import_msd": "kt_nnunet.data.msd_import", "write_msd_task": "kt_nnunet.data.msd_layout",
    "register_folder": "kt_nnunet.data.transferal", "validate_dataset": "kt_nnunet.nnunet.raw_validation",
    "DatasetSummary": "kt_nnunet.nnunet.raw_validation",
    "make_subset": "kt_nnunet.data.subset", "labelled_cases": "kt_nnunet.data.subset",
    "staged_directory": "kt_nnunet.data.atomic", "atomic_write_text": "kt_nnunet.atomic_files",
}
_ERRORS = ("DatasetError", "DatasetExistsError", "EmptyFolderError", "FileEndingError", "MissingChannelError",
           "MissingLabelError", "GeometryMismatchError", "UnexpectedLabelError", "NonConsecutiveLabelsError",
           "CorruptFileError", "DatasetJsonError")
_EXPORTS.update({name: "kt_nnunet.nnunet.raw_dataset" for name in _ERRORS})
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
