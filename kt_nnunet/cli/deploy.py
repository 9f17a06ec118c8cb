"""`kt-nnunet predict` and `kt-nnunet export`: deploying a trained model (see docs/deploying.md)."""
from __future__ import annotations

import sys

import click


def _parse_folds(value):
    if value is None or value == "all":
        return None
    try:
        return tuple(int(f) for f in value.replace(" ", "").split(",") if f)
    except ValueError:
        raise click.BadParameter(f"{value!r}: give fold numbers separated by commas, e.g. 0,1,2", param_hint="--folds")


class _Progress:
    """A tqdm bar on a terminal; plain lines (one per case) in logs and pipes."""

    def __init__(self, enabled: bool):
        self.enabled, self.bar = enabled, None

    def __call__(self, done: int, total: int, case: str) -> None:
        if not self.enabled:
            return
        if sys.stderr.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, desc="predicting", unit="case")
            self.bar.update(1)
            self.bar.set_postfix_str(case)
        else:
            click.echo(f"[{done}/{total}] {case}", err=True)

    def close(self):
        if self.bar is not None:
            self.bar.close()


@click.command()
@click.option("--model", "-m", required=True, metavar="MODEL",
              help="A trained model folder (TRAINER__PLANS__CFG, may be relative to $nnUNet_results), or an "
                   "exported network (NAME.onnx / NAME.pt, with NAME.json beside it).")
@click.option("--input", "-i", "images", required=True, metavar="DIR",
              help="Folder of images named CASE_0000<ending>, CASE_0001<ending>, ... (as nnUNetv2_predict -i).")
@click.option("--output", "-o", required=True, metavar="DIR", help="Output folder for CASE<ending> label files.")
@click.option("--folds", "-f", default=None, metavar="0,1,...", help="Folds to average (default: all found).")
@click.option("--tta/--no-tta", default=False, show_default=True,
              help="Mirroring test-time augmentation. OFF by default, unlike nnUNetv2_predict: it runs the "
                   "network 4x (2D) or 8x (3D) per patch.")
@click.option("--step-size", "tile_step_size", type=float, default=0.5, show_default=True,
              help="Sliding-window step as a fraction of the patch size (nnUNetv2_predict -step_size).")
@click.option("--batch-size", type=int, default=None, metavar="N",
              help="Patches per network call (default: from the patch size; 1 for large 3D patches).")
@click.option("--threads", type=int, default=None, metavar="N", help="CPU threads (default: the usable cores).")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True, help="Checkpoint file per fold.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:1 (model folders, TorchScript).")
@click.option("--no-progress", is_flag=True, help="No progress bar or per-case lines.")
def predict(model, images, output, folds, tta, tile_step_size, batch_size, threads, checkpoint, device, no_progress):
    """Label a folder of images with a trained model: nnUNetv2_predict's labels, without its per-case overhead.

    The model loads once; reading and preprocessing of the next case overlap with the prediction of the
    current one. With the same folds, step size and TTA setting the labels equal nnUNetv2_predict's.
    """
    from kt_nnunet.deploy.predict import predict as run_predict

    progress = _Progress(not no_progress)
    try:
        result = run_predict(model, images, output, folds=_parse_folds(folds), checkpoint=checkpoint, tta=tta,
                             tile_step_size=tile_step_size, batch_size=batch_size, threads=threads, device=device,
                             progress=progress)
    finally:
        progress.close()
    click.echo(f"predicted {len(result.cases)} case(s) into {result.output} in {result.seconds:.2f} s: "
               f"{result.cases_per_second:.2f} cases/s ({result.backend}, TTA {'on' if result.tta else 'off'}, "
               f"{result.threads} threads, {result.batch_size} patch(es) per batch)")


@click.command()
@click.argument("model_folder", metavar="MODEL_FOLDER")
@click.option("--format", "format_", type=click.Choice(["onnx", "torchscript"]), default="onnx", show_default=True)
@click.option("--out", "-o", default=None, metavar="PATH",
              help="Output NAME.onnx / NAME.pt (NAME.json is written beside it; several folds give "
                   "NAME_fold<K>.onnx). Default: MODEL_FOLDER/exported/network.*")
@click.option("--folds", "-f", default=None, metavar="0,1,...", help="Folds to export (default: all found).")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True, help="Checkpoint file per fold.")
def export(model_folder, format_, out, folds, checkpoint):
    """Export a trained model's networks (ONNX or TorchScript) plus a JSON with plans, labels and folds.

    The spatial axes are fixed to the plans' patch size; the batch axis is dynamic. Predict with
    `kt-nnunet predict --model NAME.onnx`.
    """
    from kt_nnunet.deploy.export import export_model
    from kt_nnunet.deploy.predict import _resolve

    result = export_model(_resolve(model_folder), out, format=format_, folds=_parse_folds(folds),
                          checkpoint=checkpoint)
    for fold, path in result.networks.items():
        click.echo(f"fold {fold}: {path} (max |logit difference| to PyTorch: {result.max_abs_difference[fold]:.2e})")
    click.echo(f"sidecar: {result.sidecar}")
