"""`kt-nnunet experiment CONFIG`, `kt-nnunet demo` and `kt-nnunet report DIR`: the paper's protocol end to end."""
from __future__ import annotations

from pathlib import Path

import click

VERBOSE_HELP = ("Stream nnU-Net's own output to the console too (it always goes to logs/<step>.log in the "
                "experiment folder).")


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
    folder = results_path.parent
    click.echo(f"\nresults: {results_path}\nreport:  {folder / 'report.html'} and {folder / 'report.md'} "
               f"(plots in {folder / 'plots'}, nnU-Net's output in {folder / 'logs'})")


def _dry_run(runner) -> None:
    plan = runner.dry_run()
    done = sum(is_done for _, is_done in plan)
    click.echo(f"{runner.config.name}: {len(plan)} steps, {done} already done, {len(plan) - done} to run "
               f"(output: {runner.output})")
    width = len(str(len(plan)))
    for index, (name, is_done) in enumerate(plan, start=1):
        click.echo(f"[{index:>{width}}/{len(plan)}] {'done ' if is_done else 'to do'}  {name}")


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--force", is_flag=True, help="Retrain, relabel and re-evaluate everything (default: resume).")
@click.option("--dry-run", is_flag=True, help="Print the steps it would run, and which are already done; run nothing.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
@click.option("--executor", default=None, metavar="NAME",
              help="serial (one step at a time, the default), local (several at once on this machine) or slurm "
                   "(every step a SLURM job); wins over the config's `executor:` (docs/cluster.md).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="local: steps at once (each gets its share of the cores and a GPU); slurm: jobs at once.")
def experiment(config, force, dry_run, verbose, executor, workers):
    """Run (or resume) the experiment described by CONFIG (YAML or TOML); see docs/experiment.md."""
    from kt_nnunet.experiment.runner import experiment_runner

    runner = experiment_runner(config, force=force, verbose=verbose, executor=executor, workers=workers)
    if dry_run:
        return _dry_run(runner)
    _print_results(runner.run())


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default="kt-demo", show_default=True,
              help="Experiment folder (holds its own nnU-Net folders, datasets, models and the report).")
@click.option("--force", is_flag=True, help="Start over instead of resuming.")
@click.option("--verbose", is_flag=True, help=VERBOSE_HELP)
def demo(out, force, verbose):
    """The paper's protocol on the embedded brain MRI data (MNI152 from nilearn), sized for a CPU."""
    from kt_nnunet.experiment.demo import demo_runner

    _print_results(demo_runner(Path(out), force=force, verbose=verbose).run())


@click.command()
@click.argument("experiment_dir", type=click.Path(exists=True, file_okay=False))
def report(experiment_dir):
    """Rebuild report.md, report.html and the plots of EXPERIMENT_DIR from its results.json (no training)."""
    from kt_nnunet.experiment.report import write_report

    files = write_report(Path(experiment_dir))
    click.echo(f"report: {files.html}\n        {files.report}\nplots:  " +
               (", ".join(str(p) for p in files.plots.values()) or "none"))
    for name, reason in files.skipped.items():
        click.echo(f"not drawn: {name} ({reason})")
