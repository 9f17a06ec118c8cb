"""`kt-nnunet experiment CONFIG` and `kt-nnunet demo`: the paper's protocol end to end."""
from __future__ import annotations

from pathlib import Path

import click


def _print_results(results_path: Path) -> None:
    from kt_nnunet.experiment.report import claims_table, results_table
    from kt_nnunet.experiment.results import load_results

    results = load_results(results_path)
    click.echo("")
    click.echo(results_table(results))
    claims = claims_table(results)
    if claims:
        click.echo("\nThe paper's claims (95 % CI over repeats and test cases; see the report):\n")
        click.echo(claims)
    click.echo(f"\nresults: {results_path}\nreport:  {results_path.parent / 'report.md'} (plots in "
               f"{results_path.parent / 'plots'})")


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Retrain, relabel and re-evaluate everything (default: resume).")
def experiment(config, force):
    """Run (or resume) the experiment described by CONFIG (YAML or TOML); see docs/experiment.md."""
    from kt_nnunet.experiment.runner import run_experiment

    _print_results(run_experiment(config, force=force, progress=click.echo))


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="kt-demo", show_default=True,
              help="Experiment folder (holds its own nnU-Net folders, datasets, models and the report).")
@click.option("--force", is_flag=True, help="Start over instead of resuming.")
def demo(out, force):
    """The paper's protocol on the embedded brain MRI data (MNI152 from nilearn), sized for a CPU."""
    from kt_nnunet.experiment.demo import run_demo

    _print_results(run_demo(Path(out), force=force, progress=click.echo))
