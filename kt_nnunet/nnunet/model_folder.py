"""Trained nnU-Net model folders (teachers, students), loaded without executing code from checkpoints.

A model folder is what ``nnUNetv2_train`` leaves in ``nnUNet_results/DatasetX/<trainer>__<plans>__<cfg>``:
``plans.json``, ``dataset.json`` and ``fold_N/checkpoint_*.pth``. It may come from stock nnU-Net or
from kt-nnunet and hold any architecture, since the network is rebuilt from the plans exactly as
nnU-Net's predictor does. Checkpoints from others are untrusted: they are loaded with
``weights_only=True`` and an allow-list of the few non-tensor types nnU-Net stores.
"""
from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from kt_nnunet.checksums import sha256_of
from kt_nnunet.errors import KtNnunetError

DEFAULT_CHECKPOINT = "checkpoint_final.pth"
# Non-tensor objects nnU-Net 2.8 writes into checkpoints (``_best_ema`` is a numpy scalar).
CHECKPOINT_ALLOW_LIST = [np._core.multiarray.scalar, np.dtype, np.dtypes.Float32DType, np.dtypes.Float64DType]


class ModelFolderError(KtNnunetError):
    """A model folder or checkpoint is missing, unreadable, unsafe or inconsistent."""


class UnsafeCheckpointError(ModelFolderError):
    """A checkpoint holds objects that loading would have to execute; never worked around, unlike a torn file."""


class UnsafePlansError(ModelFolderError):
    """A plans file names code outside what kt-nnunet lets nnU-Net import and call."""


# nnU-Net pydoc.locates and calls ``network_class_name`` with ``arch_kwargs`` (``torch.hub.load`` runs any
# hubconf.py), and locates every ``_kw_requires_import`` value: in a plans file from others that is code.
NNUNET_NETWORK_PACKAGE = "dynamic_network_architectures."
KW_IMPORT_PACKAGE = "torch.nn."


def _locate_module_class(path: str, package: str):
    """The ``nn.Module`` class that ``path`` names if it is defined in ``package``; None otherwise.

    Only public names are followed, and the class must really live in ``package``, so a path that reaches
    ``os`` or ``torch.hub`` through a module's imports (``...unet.torch.hub.load``) is not a way around.
    """
    import pydoc

    if not isinstance(path, str) or not path.startswith(package) or any(
            not part.isidentifier() or part.startswith("_") for part in path.split(".")):
        return None
    try:
        found = pydoc.locate(path)
    except pydoc.ErrorDuringImport as exc:  # an allowed package that fails to import: say so, not "refused"
        raise ImportError(f"{path!r} cannot be imported ({exc.exc.__name__}: {exc.value})") from exc
    if isinstance(found, type) and issubclass(found, torch.nn.Module) and found.__module__.startswith(package):
        return found
    return None


def check_plans_architecture(plans: dict, configuration: str, where) -> None:
    """Refuse a plans configuration whose network nnU-Net would build from anything but a known network class.

    Accepted: the class of a registered kt-nnunet architecture (built-ins and installed plugins), a class of
    ``dynamic_network_architectures`` (nnU-Net's own U-Nets), and ``torch.nn`` classes for
    ``_kw_requires_import``. ``where`` (the plans file) is named in the error.
    """
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from kt_nnunet.registry import list_architectures

    try:
        architecture = PlansManager(plans).get_configuration(configuration).configuration["architecture"]
        class_name = architecture["network_class_name"]
        arch_kwargs = architecture.get("arch_kwargs") or {}
        requires_import = architecture.get("_kw_requires_import") or []
    except (KeyError, TypeError, AttributeError) as exc:
        raise UnsafePlansError(f"{where}: configuration {configuration!r} has no readable architecture block "
                               f"({type(exc).__name__}: {exc}); restore the plans file the model was trained "
                               "with") from exc
    key = f"configurations.{configuration}.architecture"
    registered = {spec.class_path: spec.name for spec in list_architectures()}

    def locate(path, package, entry):
        try:
            return _locate_module_class(path, package)
        except ImportError as exc:
            raise ModelFolderError(f"{where}: {key}.{entry} {exc}; install what it needs in this environment")

    if class_name not in registered and locate(class_name, NNUNET_NETWORK_PACKAGE, "network_class_name") is None:
        raise UnsafePlansError(
            f"{where}: refused {key}.network_class_name {class_name!r}: nnU-Net would import and call it, and it "
            f"is neither a registered kt-nnunet architecture ({', '.join(sorted(registered.values()))}) nor a "
            f"network of {NNUNET_NETWORK_PACKAGE.rstrip('.')}. Install the plugin that provides it (see "
            "`kt-nnunet architectures`) or use a model whose plans name a known network")
    for name in requires_import:
        value = arch_kwargs.get(name) if isinstance(arch_kwargs, dict) else None
        if value is not None and locate(value, KW_IMPORT_PACKAGE, f"arch_kwargs.{name}") is None:
            raise UnsafePlansError(
                f"{where}: refused {key}.arch_kwargs.{name} {value!r} (listed in _kw_requires_import, so nnU-Net "
                f"would import it): only {KW_IMPORT_PACKAGE.rstrip('.')} classes are accepted there, e.g. "
                "'torch.nn.modules.conv.Conv2d'; fix the plans file or use another model")


def load_checkpoint_safely(path: Path) -> dict:
    """``torch.load(weights_only=True)`` with nnU-Net's allow-list; refuses anything that would run code."""
    path = Path(path)
    if not path.is_file():
        raise ModelFolderError(f"checkpoint {path} does not exist; check the model folder and the folds asked for "
                               "(DIR:0,1)")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_ALLOW_LIST):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch words it "Unsupported global: GLOBAL io.open" or, for blocked modules such as posix,
        # "unsupported GLOBAL posix.system": both are a refused class/function, not a corrupt file.
        if "unsupported global" not in str(exc).lower():
            raise ModelFolderError(f"cannot read checkpoint {path} (it is corrupt or not a PyTorch checkpoint: "
                                   f"{str(exc).splitlines()[-1][:200]})") from exc
        raise UnsafeCheckpointError(
            f"refused to load {path}: it contains objects outside the safe allow-list (loading it could execute "
            f"code). Re-save it with only tensors and plain types, or retrain it. Detail: {str(exc)[-300:]}") from exc
    except Exception as exc:  # truncated zip, not a torch file, ...
        raise ModelFolderError(f"cannot read checkpoint {path} ({type(exc).__name__}: {exc}); the file is corrupt "
                               "or not a PyTorch checkpoint") from exc
    if not isinstance(checkpoint, dict) or "network_weights" not in checkpoint:
        raise ModelFolderError(f"{path} is not an nnU-Net checkpoint (no 'network_weights'); pass a checkpoint "
                               "written by nnUNetv2_train or kt-nnunet")
    return checkpoint


@dataclass
class TrainedModel:
    """A trained model folder with its plans, dataset description and per-fold weights."""

    folder: Path
    plans: dict
    dataset_json: dict
    configuration: str
    folds: tuple
    checkpoint_name: str
    trainer_name: str
    mirroring_axes: Optional[tuple]
    state_dicts: list = field(repr=False)
    checkpoint_sha256: dict = field(default_factory=dict)

    @cached_property
    def plans_manager(self):
        from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

        return PlansManager(self.plans)

    @cached_property
    def configuration_manager(self):
        return self.plans_manager.get_configuration(self.configuration)

    @cached_property
    def label_manager(self):
        return self.plans_manager.get_label_manager(self.dataset_json)

    @property
    def num_input_channels(self) -> int:
        from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

        return determine_num_input_channels(self.plans_manager, self.configuration_manager, self.dataset_json)

    @property
    def architecture(self) -> str:
        """The network class path written in the plans (what nnU-Net builds)."""
        return self.configuration_manager.network_arch_class_name

    @property
    def labels(self) -> dict:
        return dict(self.dataset_json["labels"])

    def build_network(self) -> torch.nn.Module:
        """The network as nnU-Net's predictor builds it (deep supervision off), without trainer lookup."""
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

        check_plans_architecture(self.plans, self.configuration, self.folder / "plans.json")
        return nnUNetTrainer.build_network_architecture(
            self.plans_manager, self.configuration_manager, self.num_input_channels,
            self.label_manager.num_segmentation_heads, enable_deep_supervision=False)

    def load_fold_networks(self, device: torch.device = torch.device("cpu")) -> list[torch.nn.Module]:
        """One frozen network per fold, in eval mode, for teacher inference inside a training loop."""
        networks = []
        for state_dict in self.state_dicts:
            network = self.build_network()
            network.load_state_dict(state_dict)
            networks.append(network.to(device).eval().requires_grad_(False))
        return networks

    def provenance(self) -> dict:
        return {"model_folder": str(self.folder), "configuration": self.configuration, "folds": list(self.folds),
                "checkpoint": self.checkpoint_name, "checkpoint_sha256": self.checkpoint_sha256,
                "trainer": self.trainer_name, "architecture": self.architecture,
                "plans_name": self.plans.get("plans_name")}


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ModelFolderError(f"{path} is missing; a model folder needs plans.json and dataset.json "
                               "(the folder nnUNetv2_train writes, e.g. nnUNet_results/DatasetX/TRAINER__PLANS__CFG)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFolderError(f"{path} is not valid JSON ({exc}); restore it from the training run") from exc


def available_folds(folder: Path, checkpoint_name: str = DEFAULT_CHECKPOINT) -> tuple:
    """The numbered folds holding ``checkpoint_name``; else ``("all",)`` when ``fold_all`` holds it (a model trained
    on every case, ``nnUNetv2_train ... all``), else none. nnU-Net's predictor also leaves ``fold_all`` out of
    its automatic fold choice when numbered folds exist."""
    folds = sorted(int(p.parent.name[len("fold_"):]) for p in Path(folder).glob(f"fold_*/{checkpoint_name}")
                   if p.parent.name[len("fold_"):].isdigit())
    if not folds and (Path(folder) / "fold_all" / checkpoint_name).is_file():
        return ("all",)
    return tuple(folds)


def load_trained_model(folder: str | Path, folds: Optional[Sequence[int]] = None,
                       checkpoint_name: str = DEFAULT_CHECKPOINT) -> TrainedModel:
    """Load a model folder's plans, dataset.json and the weights of ``folds`` (default: all found)."""
    folder = Path(folder)
    if folder.is_file():
        raise ModelFolderError(f"{folder} is a file, not a model folder; give the folder holding plans.json, "
                               "dataset.json and fold_N/ (nnUNet_results/DatasetX/TRAINER__PLANS__CFG)")
    if not folder.is_dir():
        raise ModelFolderError(f"model folder {folder} does not exist")
    plans = _read_json(folder / "plans.json")
    dataset_json = _read_json(folder / "dataset.json")
    if not isinstance(plans, dict) or not isinstance(plans.get("configurations"), dict):
        raise ModelFolderError(f"{folder / 'plans.json'} is not an nnU-Net plans file (no 'configurations' "
                               "object); restore the plans.json that nnUNetv2_train copied into the model folder")
    missing = [k for k in DATASET_JSON_KEYS if not isinstance(dataset_json, dict) or k not in dataset_json]
    if missing:
        raise ModelFolderError(f"{folder / 'dataset.json'} lacks {missing}; restore the dataset.json that "
                               "nnUNetv2_train copied into the model folder")
    folds = tuple(folds) if folds is not None else available_folds(folder, checkpoint_name)
    if not folds:
        raise ModelFolderError(f"no fold_*/{checkpoint_name} in {folder}; train a fold first, or name another "
                               "checkpoint (label/finetune --checkpoint checkpoint_best.pth)")
    state_dicts, hashes, first = [], {}, None
    for fold in folds:
        path = folder / f"fold_{fold}" / checkpoint_name
        checkpoint = load_checkpoint_safely(path)
        first = first or checkpoint
        state_dicts.append(checkpoint["network_weights"])
        hashes[str(fold)] = sha256_of(path)
    configuration = (first.get("init_args") or {}).get("configuration")
    if not isinstance(configuration, str):
        raise ModelFolderError(f"{folder / f'fold_{folds[0]}' / checkpoint_name} names no configuration "
                               "(init_args.configuration); it was not written by nnUNetv2_train or kt-nnunet")
    if configuration not in plans["configurations"]:
        raise ModelFolderError(f"{folder}/plans.json has no configuration {configuration!r}, which the checkpoint "
                               "was trained with; the folder's plans.json does not belong to this checkpoint")
    mirroring = first.get("inference_allowed_mirroring_axes")
    # kt-nnunet's checkpoints name nnUNetTrainer for stock prediction and keep the class that trained them
    trainer = first.get("kt_trainer_name") or first.get("trainer_name") or "unknown"
    model = TrainedModel(folder, plans, dataset_json, configuration, folds, checkpoint_name, trainer,
                         tuple(mirroring) if mirroring is not None else None, state_dicts, hashes)
    _check_usable(model)
    return model


DATASET_JSON_KEYS = ("labels", "channel_names")
# What nnU-Net's preprocessing, prediction and export read from the plans (2.8).
PLANS_KEYS = ("transpose_forward", "transpose_backward", "image_reader_writer")
CONFIGURATION_KEYS = ("patch_size", "spacing", "normalization_schemes", "use_mask_for_norm", "preprocessor_name",
                      "resampling_fn_data", "resampling_fn_data_kwargs", "resampling_fn_probabilities",
                      "resampling_fn_probabilities_kwargs")


def _check_usable(model: TrainedModel) -> None:
    """Read now what nnU-Net reads at prediction time, so a broken folder is one error naming its file and key,
    not a traceback from deep inside nnU-Net on the first image. Building the network checks the plans'
    architecture first (``check_plans_architecture``)."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    plans_file = model.folder / "plans.json"
    configuration = model.plans_manager.get_configuration(model.configuration).configuration
    missing = [k for k in PLANS_KEYS if k not in model.plans] + [
        f"configurations.{model.configuration}.{k}" for k in CONFIGURATION_KEYS if k not in configuration]
    if missing:
        raise ModelFolderError(f"{plans_file} lacks {missing}; restore the plans.json the model was trained with")
    try:
        model.plans_manager.image_reader_writer_class
    except RuntimeError as exc:
        raise ModelFolderError(f"{plans_file}: image_reader_writer {model.plans['image_reader_writer']!r} is not an "
                               "nnU-Net reader in this installation (e.g. SimpleITKIO, NibabelIO)") from exc
    lookups = [("preprocessor_name", configuration["preprocessor_name"], "preprocessing")] + [
        ("normalization_schemes", scheme, "preprocessing/normalization") for scheme in
        configuration["normalization_schemes"]]
    for key, name, package in lookups:
        if not isinstance(name, str) or recursive_find_python_class(
                str(Path(nnunetv2.__path__[0], package)), name, f"nnunetv2.{package.replace('/', '.')}") is None:
            raise ModelFolderError(f"{plans_file}: configurations.{model.configuration}.{key} {name!r} is not a "
                                   f"class of nnunetv2.{package.replace('/', '.')}; restore the plans.json the "
                                   "model was trained with")
    try:
        network = model.build_network()
    except KtNnunetError:
        raise
    except (TypeError, ValueError, KeyError, RuntimeError, AttributeError) as exc:
        raise ModelFolderError(f"{plans_file}: nnU-Net cannot build the network of configuration "
                               f"{model.configuration!r} from its architecture block ({type(exc).__name__}: {exc})"
                               [:600]) from exc
    for fold, state_dict in zip(model.folds, model.state_dicts):
        try:
            network.load_state_dict(state_dict)
        except (RuntimeError, TypeError, AttributeError) as exc:
            reason = " ".join(str(exc).split())
            raise ModelFolderError(f"{model.folder / f'fold_{fold}' / model.checkpoint_name}: its weights do not fit "
                                   f"the network that {plans_file} and dataset.json (labels, channels) describe "
                                   f"({reason[:300]}); the checkpoint, plans.json and dataset.json must come from "
                                   "one training") from exc


def make_predictor(model: TrainedModel, device: torch.device = torch.device("cpu"), use_mirroring: bool = True,
                   tile_step_size: float = 0.5, verbose: bool = False):
    """An ``nnUNetPredictor`` for ``model``, initialised manually (no trainer-class lookup, no unsafe load)."""
    return predictor_for_network(model.build_network(), model.plans_manager, model.configuration_manager,
                                 model.state_dicts, model.dataset_json, model.trainer_name, model.mirroring_axes,
                                 device=device, use_mirroring=use_mirroring, tile_step_size=tile_step_size,
                                 verbose=verbose)


def predictor_for_network(network, plans_manager, configuration_manager, state_dicts: list, dataset_json: dict,
                          trainer_name: str, mirroring_axes, device: torch.device = torch.device("cpu"),
                          use_mirroring: bool = True, tile_step_size: float = 0.5, verbose: bool = False):
    """An ``nnUNetPredictor`` around a network already in memory (a trainer's own, during validation)."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=tile_step_size, use_gaussian=True, use_mirroring=use_mirroring,
                                perform_everything_on_device=device.type == "cuda", device=device,
                                verbose=verbose, verbose_preprocessing=False, allow_tqdm=False)
    if device.type == "cuda":
        # nnU-Net's predictor turns cuDNN's autotuner on, which picks convolution algorithms per process: teacher
        # labels (and every later student) then differed in the 4th decimal between executors on a GPU.
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    predictor.manual_initialization(network, plans_manager, configuration_manager, state_dicts, dataset_json,
                                    trainer_name, mirroring_axes)
    return predictor


def dataset_mismatches(model: TrainedModel, labels: dict, channel_names: dict, ours: str = "dataset",
                       theirs: str = "model") -> list[str]:
    """How a dataset (called ``ours``) and ``model`` (called ``theirs``) disagree on what the model predicts
    (labels, nnU-Net's ``ignore`` label aside) and what it takes (input channels): one phrase per problem."""
    from kt_nnunet.nnunet.raw_dataset import labels_without_ignore

    problems = []
    if labels_without_ignore(labels) != labels_without_ignore(model.labels):
        problems.append(f"labels differ: {ours} {labels_without_ignore(labels)}, {theirs} "
                        f"{labels_without_ignore(model.labels)}")
    if len(channel_names) != len(model.dataset_json["channel_names"]):
        problems.append(f"input channels differ: {ours} {len(channel_names)}, {theirs} "
                        f"{len(model.dataset_json['channel_names'])}")
    return problems


def network_from_plans(class_path: str, arch_kwargs: dict, kw_requires_import, input_channels: int,
                       output_channels: int, deep_supervision: bool = True) -> torch.nn.Module:
    """The network nnU-Net's own ``get_network_from_plans`` builds from these plans entries (no allow-list:
    for checking an architecture a plugin registers, not for plans from others)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(class_path, arch_kwargs, list(kw_requires_import), input_channels, output_channels,
                                  deep_supervision=deep_supervision)
