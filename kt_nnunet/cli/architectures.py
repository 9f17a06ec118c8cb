"""`kt-nnunet architectures` and `kt-nnunet plugins`: what can be used as a teacher or a student, and what is broken."""
from __future__ import annotations

import json
import warnings

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list instead of a table.")
def architectures(as_json):
    """List every registered architecture with its plugin, dims and parameter count.

    Each is checked against nnU-Net's network contract at the reference plan first; a broken plugin or architecture
    is reported in one line on stderr (and the exit status is 1) while the others are listed.
    """
    from kt_nnunet.architectures.reference import REFERENCE_2D, broken_reason, describe
    from kt_nnunet.errors import KtNnunetWarning
    from kt_nnunet.registry import list_architectures, problems

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KtNnunetWarning)  # reported below, once, with the rest
        specs = list_architectures()
        broken = problems()
    records = []
    for spec in specs:
        reason = broken_reason(spec)
        if reason is None:
            records.append(describe(spec))
        else:
            broken.append(reason)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        _report_broken(broken)
        return
    click.echo(f"{'name':<16} {'plugin':<22} {'dims':<6} {'deep sup.':<9} {'params (2D ref)':>15}  description")
    for r in records:
        params = f"{r['params_2d'] / 1e6:.2f} M" if r["params_2d"] is not None else "-"
        dims = ",".join(f"{d}D" for d in r["dims"])
        click.echo(f"{r['name']:<16} {r['plugin']:<22} {dims:<6} {'yes' if r['deep_supervision'] else 'no':<9} "
                   f"{params:>15}  {r['description']}")
    click.echo(f"\n{len(records)} architectures; parameters for a {'x'.join(map(str, REFERENCE_2D.patch_size))} "
               f"2D plan with {REFERENCE_2D.n_stages} stages, 1 channel, 3 classes.")
    _report_broken(broken)


def _report_broken(broken: list[str]) -> None:
    for line in broken:
        click.echo(f"broken: {line}", err=True)
    if broken:
        raise SystemExit(1)


@click.command()
def plugins():
    """Print every plugin as JSON: name, version, source, hooks, and the architectures and teacher kinds it registers.

    A broken plugin, architecture or teacher kind is reported in one line on stderr (and the exit status is 1),
    as `kt-nnunet architectures` does.
    """
    from kt_nnunet import registry
    from kt_nnunet.errors import KtNnunetWarning
    from kt_nnunet.plugins.manager import plugin_infos
    from kt_nnunet.teachers import kinds

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", KtNnunetWarning)  # reported below, once, with the rest
        infos = plugin_infos()
        architectures = registry.list_architectures()
        teacher_kinds = kinds.list_kinds()
        broken = list(dict.fromkeys(registry.problems() + kinds.problems()))  # both name the plugins left out
    records = []
    for info in infos:
        record = info.as_dict()
        record["architectures"] = [spec.name for spec in architectures if spec.plugin == info.name]
        record["teacher_kinds"] = [kind.name for kind in teacher_kinds if kind.plugin == info.name]
        records.append(record)
    click.echo(json.dumps(records, indent=2))
    _report_broken(broken)
