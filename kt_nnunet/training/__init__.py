"""Transfer and fine-tuning: nnU-Net trainer variants (small ``nnUNetTrainer`` subclasses, one seam each)
and the Python API behind ``kt-nnunet train`` / ``transfer`` / ``finetune``: ``train_model`` (a model trained on a
labelled dataset, as a teacher is; ``supervised.py``), ``transfer``, ``finetune``. Each is a ``prepare_*`` function
returning one ``TrainingPlan`` (``training_plan.py``), then ``train_plan``; their settings are the small frozen
types of ``settings.py`` (``Budget``, ``TransferSettings``) and ``kt_nnunet.teachers.methods.FusionSettings``.

| trainer | module | seam |
| --- | --- | --- |
| ``nnUNetTrainerKTBudget`` | ``budget.py`` | epochs, iterations, ``initial_lr`` from the plans key ``kt_budget`` |
| ``nnUNetTrainerKTBase`` | ``base.py`` | checkpoints stock ``nnUNetv2_predict`` loads; ``kt_provenance.json`` |
| ``nnUNetTrainerKTOffline`` | ``offline.py`` | provenance of the teacher-labelled dataset; validation as teacher agreement (+ reference Dice) |
| ``nnUNetTrainerKTOnline`` | ``online.py`` | teachers label each augmented batch (``train_step`` / ``validation_step``) |
| ``nnUNetTrainerKTOnlineSoft`` | ``online.py`` | + soft-target loss (``_build_loss``) |
| ``nnUNetTrainerKTFinetune`` | ``finetuning.py`` | records the fine-tuned source model |

Imports are lazy: ``import kt_nnunet.training`` does not import nnU-Net.
"""
from __future__ import annotations

from kt_nnunet.lazy_exports import lazy_exports

_EXPORTS = {
    "train_model": "kt_nnunet.training.supervised", "prepare_training": "kt_nnunet.training.supervised",
    "TrainingPlan": "kt_nnunet.training.training_plan", "train_plan": "kt_nnunet.training.training_plan",
    "Budget": "kt_nnunet.training.settings", "TransferSettings": "kt_nnunet.training.settings",
    "transfer": "kt_nnunet.training.transferring", "prepare_transfer": "kt_nnunet.training.transferring",
    "TransferError": "kt_nnunet.training.transferring",
    "finetune": "kt_nnunet.training.finetuning", "prepare_finetune": "kt_nnunet.training.finetuning",
    "FinetuneError": "kt_nnunet.training.finetuning",
    "nnUNetTrainerKTBudget": "kt_nnunet.training.budget", "nnUNetTrainerKTBase": "kt_nnunet.training.base",
    "nnUNetTrainerKTOffline": "kt_nnunet.training.offline", "nnUNetTrainerKTOnline": "kt_nnunet.training.online",
    "nnUNetTrainerKTOfflineSoft": "kt_nnunet.training.offline_soft",
    "nnUNetTrainerKTScratch": "kt_nnunet.training.finetuning",
    "nnUNetTrainerKTOnlineSoft": "kt_nnunet.training.online",
    "nnUNetTrainerKTFinetune": "kt_nnunet.training.finetuning",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports('kt_nnunet.training', _EXPORTS)
