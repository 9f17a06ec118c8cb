"""`kt-nnunet label`: teachers annotate a transferal image set into a new nnU-Net dataset."""
from __future__ import annotations

import re

import click

# From a torch-free module, so that `--help` does not import torch (tested).
from kt_nnunet.teachers.methods import FUSION_METHODS


def _parse_weights(value):
    if value is None:
        return None
    try:
        return [float(w) for w in re.split(r"[,\s]+", value.strip()) if w]
    except ValueError:
        raise click.BadParameter(f"{value!r}: give numbers separated by commas, e.g. 0.5,0.3,0.2",
                                 param_hint="--weights")


@click.command()
@click.option("--teacher", "teachers", multiple=True, required=True, metavar="[KIND:]PATH[:FOLDS]",
              help="A trained model folder (TRAINER__PLANS__CFG; may be relative to $nnUNet_results), an exported "
                   "network (NAME.onnx / NAME.pt with its NAME.json sidecar), or a folder of predictions, one per "
                   "case (.npz probabilities or label maps). The kind is found from the path, or named: nnunet:, "
                   "onnx:, torchscript:, predictions: (plugins add more; docs/teachers.md). Repeat for several "
                   "teachers. ':0,1' picks folds (default: all found).")
@click.option("--images", required=True, metavar="DIR_OR_DATASET",
              help="Transferal images: a folder of images, a dataset folder (its imagesTr), or a dataset id/name.")
@click.option("--out", required=True, metavar="DatasetNNN_Name",
              help="Output dataset (in $nnUNet_raw unless a path is given).")
@click.option("--fusion", type=click.Choice(FUSION_METHODS), default="mean", show_default=True,
              help="How teacher outputs are combined.")
@click.option("--weights", default=None, metavar="W1,W2,...", help="One weight per teacher (--fusion weighted).")
@click.option("--save-probabilities", is_flag=True, help="Also write float16 soft labels to probabilitiesTr/.")
@click.option("--tta/--no-tta", default=True, show_default=True, help="Mirroring test-time augmentation.")
@click.option("--min-confidence", type=float, default=None, metavar="X",
              help="Voxels with fused confidence below X get the 'ignore' label.")
@click.option("--label-map", default=None, metavar="JSON_OR_FILE",
              help='Reconcile teacher label sets, e.g. \'{"1": {"tumour": "lesion"}}\' (see docs/labelling.md).')
@click.option("--num-parts", type=int, default=1, show_default=True, help="Split the cases into N parts ...")
@click.option("--part-id", type=int, default=0, show_default=True, help="... and label part I (0-based).")
@click.option("--checkpoint", default="checkpoint_final.pth", show_default=True, help="Checkpoint file per fold.")
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, ... (auto: cuda if present).")
@click.option("--step-size", "tile_step_size", type=float, default=0.5, show_default=True,
              help="Sliding-window step as a fraction of the patch size.")
@click.option("--copy-images", is_flag=True, help="Copy images into imagesTr instead of hard-linking them.")
@click.option("--force", is_flag=True, help="Replace an existing dataset / unfinished run with other settings.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def label(teachers, images, out, fusion, weights, save_probabilities, tta, min_confidence, label_map, num_parts,
          part_id, checkpoint, device, tile_step_size, copy_images, force, no_progress):
    """Label transferal images with one or more teachers into a new nnU-Net dataset.

    Re-running with the same settings resumes (finished cases are skipped). Under `torchrun` every rank
    labels its share of the cases.
    """
    from kt_nnunet.labelling import label_dataset
    from kt_nnunet.teachers.methods import FusionSettings

    settings = FusionSettings(fusion, _parse_weights(weights), min_confidence, tta)
    result = label_dataset(list(teachers), images, out, fusion=settings, save_probabilities=save_probabilities,
                           label_map=label_map, num_parts=num_parts, part_id=part_id, checkpoint=checkpoint,
                           device=device, tile_step_size=tile_step_size, copy_images=copy_images, force=force,
                           progress=not no_progress)
    part_id, num_parts = result.part
    part = f" (part {part_id + 1}/{num_parts})" if num_parts > 1 else ""
    click.echo(f"labelled {len(result.labelled)} case(s), skipped {len(result.skipped)} finished{part}")
    if result.complete:
        summary = result.summary
        click.echo(f"dataset: {result.dataset}")
        if summary:
            click.echo(f"cases: {summary['num_cases']}  mean teacher agreement (Dice): "
                       f"{summary['mean_teacher_agreement']}  mean confidence: {summary['mean_confidence']}  "
                       f"ignored: {summary['mean_ignored_fraction']}")
        click.echo(f"provenance: {result.provenance}")
    else:
        click.echo(f"{result.dataset.name} is written when every part has finished (unfinished run in "
                   f"{result.dataset.parent / ('.kt-label-' + result.dataset.name)})")
