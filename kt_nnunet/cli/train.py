"""`kt-nnunet train`, `kt-nnunet transfer` and `kt-nnunet finetune`: thin layers over ``kt_nnunet.train`` and
``kt_nnunet.training``."""
from __future__ import annotations

import json

import click

from kt_nnunet.teachers.methods import FUSION_METHODS as FUSIONS


def _floats(value, name):
    if value is None:
        return None
    try:
        return [float(v) for v in value.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}", param_hint=name)


def _arch_kwargs(value):
    try:
        return json.loads(value) if value else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--arch-kwargs")


def _predict_hint(model_folder, fold) -> str:
    return (f"predict: nnUNetv2_predict_from_modelfolder -i IMAGES -o OUT -m {model_folder} -f {fold} -device cpu "
            "(stock nnU-Net; nnUNet_extTrainer not needed)")


# One default for every command that trains, the API's: nnU-Net's preprocessing in this process (worker pools
# pay off only on many cores) and CUDA when torch sees a GPU.
NUM_PROCESSES = click.option("-np", "--num-processes", default=1, show_default=True,
                             help="Processes for nnU-Net preprocessing (1: in this process).")
DEVICE = click.option("--device", default="auto", show_default=True,
                      help="cpu, cuda, cuda:1, mps (auto: cuda if present).")


def _model_options(command):
    """The options every command that trains a model takes: configuration, fold, architecture width, budget."""
    options = [
        click.option("-c", "--configuration", default="2d", show_default=True, help="nnU-Net configuration."),
        click.option("-f", "--fold", type=int, default=0, show_default=True, help="Fold to train."),
        click.option("--tiny", is_flag=True, help="The architecture's tiny width (CPU tests, demos)."),
        click.option("--arch-kwargs", default=None, metavar="JSON", help="Architecture kwargs overriding its defaults."),
        click.option("--epochs", type=int, default=None, help="Epochs (plans key kt_budget)."),
        click.option("--iterations", type=int, default=None, help="Training iterations per epoch."),
        click.option("--val-iterations", type=int, default=None, help="Validation iterations per epoch."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@click.command()
@click.argument("dataset")
@click.option("--arch", "architecture", required=True, help="Architecture to train (see `kt-nnunet architectures`).")
@_model_options
@click.option("--seed", type=int, default=None,
              help="Seed initialisation, patch sampling and augmentation (plans key kt_seed; plans name _seed<S>): "
                   "the same seed repeats the run on this machine (single-threaded augmentation, the default).")
@click.option("--force", is_flag=True, help="Retrain a finished fold from scratch; replace differing plans.")
@click.option("--continue", "continue_training", is_flag=True, help="Resume the fold from its checkpoint.")
@DEVICE
@click.option("--no-validate", is_flag=True, help="Skip nnU-Net's final validation.")
@click.option("--plan-only", is_flag=True, help="Write the plans and print the stock nnUNetv2_train command.")
@NUM_PROCESSES
def train(dataset, architecture, configuration, fold, tiny, arch_kwargs, epochs, iterations, val_iterations, seed,
          force, continue_training, device, no_validate, plan_only, num_processes):
    """Train an architecture on the labelled DATASET (id, name or folder in nnUNet_raw), as a teacher is trained.

    Plans DATASET for the architecture first (nnU-Net's planning and preprocessing, reused when done; then
    ktPlans_<ARCH>.json with the budget and seed), then trains one fold with nnUNetTrainerKTBudget.
    """
    from kt_nnunet.api import train as run_train
    from kt_nnunet.training.supervised import prepare_training

    options = dict(configuration=configuration, tiny=tiny, arch_kwargs=_arch_kwargs(arch_kwargs), seed=seed,
                   num_processes=num_processes)
    if plan_only:
        from kt_nnunet.api import dataset_name_of
        from kt_nnunet.training.settings import Budget

        plan = prepare_training(dataset_name_of(dataset), architecture, budget=Budget(epochs, iterations, val_iterations),
                                force=force, **options)
        _echo_plan(plan, fold, device)
        return
    model = run_train(dataset, architecture, fold=fold, epochs=epochs, iterations=iterations,
                      val_iterations=val_iterations, force=force, continue_training=continue_training, device=device,
                      validate=not no_validate, **options)
    click.echo(f"trained: {model.model_folder}/fold_{fold}")
    click.echo(_predict_hint(model.model_folder, fold))


def _echo_plan(plan, fold, device) -> None:
    from kt_nnunet.devices import parse_device

    click.echo(f"plans:   {plan.plans_name} for {plan.dataset_name}")
    click.echo(f"train:   {plan.train_command(fold, parse_device(device).type)}   "
               "(needs nnUNet_extTrainer: eval \"$(kt-nnunet env)\")")


@click.command()
@click.option("--teacher", "teachers", multiple=True, metavar="MODEL",
              help="Teacher: a model folder (DIR or DIR:0,1 for folds), or offline any kind `kt-nnunet label` "
                   "takes (onnx:FILE, torchscript:FILE, predictions:DIR); repeat for several teachers.")
@click.option("--dataset", required=True, help="Teacher-labelled dataset (offline), or the transferal dataset.")
@click.option("--arch", "architecture", required=True, help="Student architecture (see `kt-nnunet architectures`).")
@click.option("--online", is_flag=True, help="Teachers label every augmented batch during training.")
@click.option("--soft", is_flag=True, help="Online only: also distil the teachers' soft targets (KL, T, alpha).")
@click.option("-T", "--temperature", type=float, default=2.0, show_default=True, help="Soft-target temperature.")
@click.option("--alpha", type=float, default=0.5, show_default=True, help="Weight of the soft term (0..1).")
@click.option("--fusion", type=click.Choice(FUSIONS), default="mean", show_default=True, help="Teacher fusion.")
@click.option("--weights", default=None, metavar="W1,W2,..", help="Per-teacher weights for --fusion weighted.")
@click.option("--min-confidence", type=float, default=None, help="Fused confidence below it -> ignore label.")
@_model_options
@click.option("--reference-labels", type=click.Path(exists=True, file_okay=False), default=None,
              help="Offline: labelled reference data; validation also reports real Dice against it.")
@click.option("--reference-images", type=click.Path(exists=True, file_okay=False), default=None,
              help="Images of the reference labels (default: match the validation cases by name).")
@click.option("--labelled-out", default=None, metavar="DatasetNNN_Name",
              help="If --dataset is unlabelled: label it with the teachers into this new dataset first.")
@click.option("--force", is_flag=True, help="Retrain a finished fold from scratch; replace differing plans.")
@click.option("--continue", "continue_training", is_flag=True, help="Resume the fold from its checkpoint.")
@DEVICE
@click.option("--no-validate", is_flag=True, help="Skip nnU-Net's final validation.")
@click.option("--plan-only", is_flag=True, help="Write the plans and print the stock nnUNetv2_train command.")
@click.option("--seed", type=int, default=None,
              help="Seed initialisation, patch sampling and augmentation (plans key kt_seed; plans name _seed<S>): "
                   "the same seed repeats the run on this machine (single-threaded augmentation, the default).")
@NUM_PROCESSES
def transfer(teachers, dataset, architecture, online, soft, temperature, alpha, fusion, weights, min_confidence,
             configuration, fold, tiny, arch_kwargs, epochs, iterations, val_iterations, reference_labels,
             reference_images, labelled_out, force, continue_training, device, no_validate, plan_only, seed,
             num_processes):
    """Train a STUDENT architecture from teachers: offline (teacher-labelled dataset) or --online."""
    from kt_nnunet.api import dataset_name_of, transfer as run_transfer

    weights = _floats(weights, "--weights")
    if plan_only:
        from kt_nnunet.teachers.methods import FusionSettings
        from kt_nnunet.training.settings import Budget, TransferSettings
        from kt_nnunet.training.transferring import prepare_transfer

        plan = prepare_transfer(
            teachers, dataset_name_of(dataset), architecture,
            transfer=TransferSettings("online" if online else "offline", soft, temperature, alpha),
            fusion=FusionSettings(fusion, weights, min_confidence), budget=Budget(epochs, iterations, val_iterations),
            configuration=configuration, tiny=tiny, arch_kwargs=_arch_kwargs(arch_kwargs), seed=seed,
            reference_labels=reference_labels, reference_images=reference_images, labelled_out=labelled_out,
            force=force, device=device, num_processes=num_processes)
        _echo_plan(plan, fold, device)
        return
    model = run_transfer(list(teachers), dataset, architecture, fold=fold, online=online, soft=soft,
                         temperature=temperature, alpha=alpha, fusion=fusion, weights=weights,
                         min_confidence=min_confidence, configuration=configuration, epochs=epochs,
                         iterations=iterations, val_iterations=val_iterations, tiny=tiny,
                         arch_kwargs=_arch_kwargs(arch_kwargs), seed=seed, device=device, force=force,
                         continue_training=continue_training, validate=not no_validate, labelled_out=labelled_out,
                         reference_labels=reference_labels, reference_images=reference_images,
                         num_processes=num_processes)
    click.echo(f"trained: {model.model_folder}/fold_{fold}")
    click.echo(_predict_hint(model.model_folder, fold))


@click.command()
@click.option("--model", "model_folder", required=True, type=click.Path(exists=True, file_okay=False),
              help="The student's model folder (TRAINER__PLANS__CFG).")
@click.option("--dataset", required=True, help="Labelled downstream dataset (id, name or folder name in nnUNet_raw).")
@click.option("-f", "--fold", type=int, default=0, show_default=True, help="Fold of the labelled dataset to train.")
@click.option("--source-fold", type=int, default=None, help="The student's fold to start from (default: first).")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True, help="The student's checkpoint.")
@click.option("--epochs", type=int, default=None, help="Epochs of fine-tuning (plans key kt_budget).")
@click.option("--lr", type=float, default=None, help="Initial learning rate (nnU-Net's default 1e-2).")
@click.option("--iterations", type=int, default=None, help="Training iterations per epoch.")
@click.option("--val-iterations", type=int, default=None, help="Validation iterations per epoch.")
@click.option("--force", is_flag=True, help="Retrain a finished fold from scratch; replace differing plans.")
@click.option("--continue", "continue_training", is_flag=True, help="Resume the fold from its checkpoint.")
@DEVICE
@click.option("--no-validate", is_flag=True, help="Skip nnU-Net's final validation.")
@click.option("--seed", type=int, default=None,
              help="Seed initialisation, patch sampling and augmentation (plans key kt_seed; plans name _seed<S>): "
                   "the same seed repeats the run on this machine (single-threaded augmentation, the default).")
@click.option("--from-scratch", is_flag=True,
              help="Train the student's network and preprocessing from scratch (the fine-tune-only baseline).")
@NUM_PROCESSES
def finetune(model_folder, dataset, fold, source_fold, checkpoint, epochs, lr, iterations, val_iterations, force,
             continue_training, device, no_validate, seed, from_scratch, num_processes):
    """Continue a student on a labelled dataset (same architecture, nnU-Net's pretrained-weights path)."""
    from kt_nnunet.api import finetune as run_finetune

    model = run_finetune(model_folder, dataset, fold=fold, epochs=epochs, iterations=iterations,
                         val_iterations=val_iterations, lr=lr, seed=seed, device=device, force=force,
                         continue_training=continue_training, validate=not no_validate, from_scratch=from_scratch,
                         checkpoint=checkpoint, num_processes=num_processes, source_fold=source_fold)
    click.echo(f"{'trained from scratch' if from_scratch else 'fine-tuned'}: {model.model_folder}/fold_{fold}")
    click.echo(_predict_hint(model.model_folder, fold))
