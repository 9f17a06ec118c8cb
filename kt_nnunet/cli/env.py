"""`kt-nnunet env`: the shell exports that make stock nnU-Net commands work on kt-nnunet's folders."""
from __future__ import annotations

import os
import shlex

import click

# Settings measured fastest for nnU-Net on a few CPU cores (docs/installation.md).
CPU_SETTINGS = {"nnUNet_def_n_proc": "2", "nnUNet_compile": "f"}


@click.command()
@click.option("--root", type=click.Path(file_okay=False), default=None,
              help="Folder holding nnUNet_raw/preprocessed/results (default: existing variables, else ./).")
@click.option("--cpu/--no-cpu", default=True, show_default=True, help="Also print CPU-friendly nnU-Net settings.")
def env(root, cpu):
    """Print `export` lines for nnU-Net's folders and kt-nnunet's trainers (eval "$(kt-nnunet env)")."""
    from kt_nnunet.nnunet.paths import NNUNET_FOLDER_VARIABLES

    for variable in NNUNET_FOLDER_VARIABLES:
        value = os.path.abspath(os.path.join(root, variable)) if root else (
            os.environ.get(variable) or os.path.abspath(variable))
        click.echo(f"export {variable}={shlex.quote(value)}")
    from kt_nnunet.nnunet.ext_trainers import EXT_TRAINER_FOLDER

    click.echo(f"export nnUNet_extTrainer={shlex.quote(str(EXT_TRAINER_FOLDER))}")
    if cpu:
        for variable, value in CPU_SETTINGS.items():
            click.echo(f"export {variable}={shlex.quote(os.environ.get(variable, value))}")
