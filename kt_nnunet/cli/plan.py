"""`kt-nnunet plan`: nnU-Net planning/preprocessing plus a plans file for another architecture."""
from __future__ import annotations

import json

import click


@click.command()
@click.argument("dataset")
@click.option("--arch", "architecture", required=True, help="Registered architecture name (see `architectures`).")
@click.option("-c", "--configuration", default="2d", show_default=True, help="nnU-Net configuration to plan.")
@click.option("--arch-kwargs", default=None, metavar="JSON",
              help='Architecture kwargs overriding its defaults, e.g. \'{"base_features": 16}\'.')
@click.option("--tiny", is_flag=True, help="Use the architecture's tiny width (for CPU tests and demos).")
@click.option("-np", "--num-processes", default=1, show_default=True,
              help="Processes for nnU-Net preprocessing (1: in this process).")
@click.option("--force", is_flag=True, help="Replace an existing, different configuration in the plans file.")
@click.option("--epochs", type=int, default=None, help="Training length for nnUNetTrainerKTBudget (plans key).")
@click.option("--iterations", type=int, default=None, help="Training iterations per epoch (nnUNetTrainerKTBudget).")
@click.option("--val-iterations", type=int, default=None, help="Validation iterations per epoch.")
@click.option("--seed", type=int, default=None,
              help="Seed for nnUNetTrainerKTBudget (plans key kt_seed; the plans are ktPlans_<ARCH>_seed<S>).")
def plan(dataset, architecture, configuration, arch_kwargs, tiny, num_processes, force, epochs, iterations,
         val_iterations, seed):
    """Plan DATASET with nnU-Net and write ktPlans_<ARCH>.json for stock nnUNetv2_train/predict."""
    from kt_nnunet.training.plans import write_architecture_plans
    from kt_nnunet.training.settings import Budget

    try:
        overrides = json.loads(arch_kwargs) if arch_kwargs else None
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not valid JSON: {exc}", param_hint="--arch-kwargs")
    planned = write_architecture_plans(dataset, architecture, configuration, overrides, tiny=tiny, force=force,
                                       num_processes=num_processes, budget=Budget(epochs, iterations, val_iterations),
                                       seed=seed)
    click.echo(f"wrote {planned.plans_file}")
    click.echo(f"train:   {planned.train_command()}")
    if planned.trainer != "nnUNetTrainer":
        click.echo("         (nnUNetTrainerKTBudget needs nnUNet_extTrainer: eval \"$(kt-nnunet env)\")")
    click.echo(f"predict: {planned.predict_command()}")
