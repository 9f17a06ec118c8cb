"""Re-exports for nnU-Net's ``nnUNet_extTrainer`` lookup (``kt-nnunet env`` prints the export).

Only re-exports live here: nnU-Net removes modules imported from this folder from ``sys.modules`` after
its lookup, so classes defined here could not be pickled. Re-exported classes keep their installed module.
"""
from kt_nnunet.training.budget import nnUNetTrainerKTBudget  # noqa: F401
from kt_nnunet.training.finetuning import nnUNetTrainerKTFinetune, nnUNetTrainerKTScratch  # noqa: F401
from kt_nnunet.training.offline import nnUNetTrainerKTOffline  # noqa: F401
from kt_nnunet.training.offline_soft import nnUNetTrainerKTOfflineSoft  # noqa: F401
from kt_nnunet.training.online import nnUNetTrainerKTOnline, nnUNetTrainerKTOnlineSoft  # noqa: F401
