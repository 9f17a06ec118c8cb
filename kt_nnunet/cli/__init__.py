"""The ``kt-nnunet`` command line: a thin click layer over the Python API.

Subcommands are imported only when invoked, so ``kt-nnunet --help`` does not pay for torch and nnU-Net.
"""
from __future__ import annotations

import importlib
import warnings

import click

from kt_nnunet import __version__
from kt_nnunet.errors import KtNnunetError, KtNnunetWarning, was_reported

# name -> "module:attribute"; each module is one command family.
COMMANDS = {
    "architectures": "kt_nnunet.cli.architectures:architectures",
    "plugins": "kt_nnunet.cli.architectures:plugins",
    "plan": "kt_nnunet.cli.plan:plan",
    "env": "kt_nnunet.cli.env:env",
    "data": "kt_nnunet.cli.data:data",
    "train": "kt_nnunet.cli.train:train",
    "transfer": "kt_nnunet.cli.train:transfer",
    "finetune": "kt_nnunet.cli.train:finetune",
    "label": "kt_nnunet.cli.label:label",
    "experiment": "kt_nnunet.cli.experiment:experiment",
    "demo": "kt_nnunet.cli.experiment:demo",
    "report": "kt_nnunet.cli.experiment:report",
    "predict": "kt_nnunet.cli.deploy:predict",
    "export": "kt_nnunet.cli.deploy:export",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(COMMANDS)

    def get_command(self, ctx, name):
        if name not in COMMANDS:
            return None
        module_name, attribute = COMMANDS[name].split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def invoke(self, ctx):
        with warnings.catch_warnings():
            warnings.showwarning = _one_line_warnings(warnings.showwarning)
            try:
                return super().invoke(ctx)
            except Exception as exc:
                if was_reported(exc):
                    # The console showed the failing step, its error and its log's tail (the traceback is in the log).
                    raise SystemExit(1) from exc
                if isinstance(exc, KtNnunetError):
                    # User errors are one message naming the file/key and the fix, never a traceback.
                    raise click.ClickException(str(exc)) from exc
                raise
            except KeyboardInterrupt as exc:
                if was_reported(exc):
                    raise SystemExit(130) from exc
                raise


def _one_line_warnings(show_other):
    # kt-nnunet's own warnings are for users: one line, without the source location Python adds.
    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, KtNnunetWarning):
            click.echo(f"warning: {message}", err=True)
        else:
            show_other(message, category, filename, lineno, file, line)

    return show


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="kt-nnunet")
@click.option("--plugins", "only_plugins", metavar="NAMES", default=None,
              help="Comma-separated entry-point plugins to load (default: all; env KT_NNUNET_PLUGINS).")
@click.option("--no-plugin-autoload", is_flag=True, default=False,
              help="Load no entry-point plugins, only built-ins (env KT_NNUNET_DISABLE_PLUGIN_AUTOLOAD=1).")
def main(only_plugins, no_plugin_autoload):
    """Network-agnostic knowledge transfer for medical image segmentation, on nnU-Net v2."""
    if only_plugins is not None or no_plugin_autoload:
        from kt_nnunet.plugins import manager

        only = [p.strip() for p in only_plugins.split(",") if p.strip()] if only_plugins is not None else None
        manager.configure(only=only, autoload=False if no_plugin_autoload else None)
