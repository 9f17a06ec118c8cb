"""`kt-nnunet data ...`: make, import, register and check nnU-Net raw datasets (thin layer over kt_nnunet.data)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

OUT_HELP = "Folder that receives the dataset folder(s) (default: $nnUNet_raw)."


def _floats(text, option):
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: give comma-separated numbers, e.g. 64,64", param_hint=option)


@click.group()
def data():
    """Datasets: the generator, the real demo sets, MSD import, transferal folders, checks."""


@data.command()
@click.option("--id", "dataset_id", type=int, required=True, help="nnU-Net dataset id (1-999).")
@click.option("--name", required=True, help="Dataset name: DatasetNNN_<name>.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help=OUT_HELP)
@click.option("--shape", default="64,64", show_default=True, help="Grid in array order: y,x or z,y,x (3D).")
@click.option("--spacing", default=None, help="Pixel spacing in mm, array order (default 1 per axis).")
@click.option("--classes", "num_classes", type=int, default=3, show_default=True, help="Classes incl. background.")
@click.option("--train", "num_train", type=int, default=20, show_default=True, help="Training cases.")
@click.option("--test", "num_test", type=int, default=5, show_default=True, help="Test cases (imagesTs/labelsTs).")
@click.option("--channels", "num_channels", type=int, default=1, show_default=True, help="Image channels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same dataset.")
@click.option("--preset", type=click.Choice(["default", "inverted", "shifted", "ultrasound", "ct"]),
              default="default", show_default=True, help="Domain to start from; the options below override it.")
@click.option("--contrast", type=float, default=None, help="Scale deviations from mid-grey.")
@click.option("--gamma", type=float, default=None, help="Intensity mapping i**gamma.")
@click.option("--invert/--no-invert", default=None, help="Swap bright and dark (T1 vs T2-like).")
@click.option("--noise", type=float, default=None, help="Additive Gaussian noise std.")
@click.option("--speckle", type=float, default=None, help="Multiplicative (ultrasound-like) speckle std.")
@click.option("--bias-field", type=float, default=None, help="Smooth multiplicative bias field amplitude.")
@click.option("--blur", "blur_mm", type=float, default=None, help="Gaussian blur sigma in mm.")
@click.option("--radius", "radius_mm", type=float, default=None, help="Mean radius of class 1 in mm.")
@click.option("--size-std", type=float, default=None, help="Relative spread of object sizes.")
@click.option("--elongation", type=float, default=None, help="Spread of axis ratios (log scale).")
@click.option("--irregularity", type=float, default=None, help="Smooth shape deformation, fraction of radius.")
@click.option("--file-ending", type=click.Choice([".nii.gz", ".png"]), default=".nii.gz", show_default=True)
@click.option("--unlabelled", is_flag=True, help="Write no labelsTr (an images-only transferal set).")
@click.option("--force", is_flag=True, help="Replace an existing dataset folder.")
def synth(dataset_id, name, out, shape, spacing, num_classes, num_train, num_test, num_channels, seed, preset,
          force, file_ending, unlabelled, **options):
    """Generate a procedural multi-class dataset in nnU-Net raw format."""
    from kt_nnunet.data.synth import synth_dataset
    from kt_nnunet.data.synth_domain import DOMAIN_PRESETS
    from kt_nnunet.data.synth_shapes import ShapeConfig
    from kt_nnunet.nnunet.raw_dataset import DatasetError

    shape_keys = ("radius_mm", "size_std", "elongation", "irregularity")
    shape_options = {k: options.pop(k) for k in shape_keys if options.get(k) is not None}
    domain = replace(DOMAIN_PRESETS[preset], **{k: v for k, v in options.items() if v is not None})
    grid = tuple(int(v) for v in _floats(shape, "--shape"))
    try:
        shapes = ShapeConfig(shape=grid, spacing=_floats(spacing, "--spacing"), num_classes=num_classes,
                             **shape_options)
        shapes.check()
    except ValueError as exc:
        raise DatasetError(f"data synth: {exc}") from exc
    folder = synth_dataset(dataset_id, name, out, num_train=num_train, num_test=num_test, shapes=shapes,
                           domain=domain, num_channels=num_channels, seed=seed, file_ending=file_ending,
                           role="transferal" if unlabelled else "source", labelled=not unlabelled, force=force)
    click.echo(f"wrote {folder}")


@data.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help=OUT_HELP)
@click.option("--base-id", type=int, default=900, show_default=True, help="Ids base, base+1, base+2.")
@click.option("--resolution", "resolution_mm", type=int, default=2, show_default=True, help="mm per voxel (1-4).")
@click.option("--block", type=int, default=None, help="Consecutive slices per slab [default: 4; 6 with --3d].")
@click.option("--gap", type=int, default=2, show_default=True, help="Slices dropped between slabs of two roles.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--3d", "three_d", is_flag=True,
              help="Volumes for 3d_fullres (halves of axial slabs, Dataset names ...MNIDemo3D...) instead of slices.")
@click.option("--with-downstream", is_flag=True,
              help="Also write base+3: the transferal images with true labels (the fine-tuning pool).")
@click.option("--force", is_flag=True, help="Replace existing demo datasets.")
def demo(out, base_id, resolution_mm, block, gap, seed, three_d, with_downstream, force):
    """Build the brain MRI demo sets (source, transferal, test) from nilearn's MNI152 template."""
    from kt_nnunet.data.demo import build_demo

    built = build_demo(out, base_id=base_id, resolution_mm=resolution_mm, block=block, gap=gap, seed=seed,
                       with_downstream=with_downstream, force=force, dims=3 if three_d else 2)
    for role, folder in built.as_dict().items():
        click.echo(f"{role:<11} {folder}")
    click.echo(f"check: nnUNetv2_plan_and_preprocess -d {base_id} {base_id + 2} --verify_dataset_integrity "
               f"-c {'3d_fullres' if three_d else '2d'} -np 1 -npfp 1   (with nnUNet_raw set to the parent folder)")


@data.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help=OUT_HELP)
@click.option("--base-id", type=int, default=910, show_default=True, help="Ids base, base+1, base+2.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None,
              help="Where the fetched reference files are kept (default $KT_NNUNET_CACHE or ~/.cache/kt-nnunet).")
@click.option("--sdist", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A downloaded totalsegmentator-2.18.0.tar.gz to use instead of fetching.")
@click.option("--force", is_flag=True, help="Replace existing datasets.")
def crossmodality(out, base_id, cache_dir, sdist, force):
    """Build the abdominal CT source and MR transferal/test sets from the TotalSegmentator 2.18.0 sdist."""
    from kt_nnunet.data.crossmodality import build_crossmodality

    built = build_crossmodality(out, base_id=base_id, cache_dir=cache_dir, sdist=sdist, force=force)
    for role, folder in built.as_dict().items():
        click.echo(f"{role:<11} {folder}")
    click.echo("note: the labels are TotalSegmentator's predictions, not manual annotations")


@data.command("import-msd")
@click.argument("task_folder", type=click.Path(file_okay=False))
@click.option("--dataset-id", type=int, default=None, help="Target id (default: the task number).")
@click.option("--out", type=click.Path(file_okay=False), default=None, help=OUT_HELP)
@click.option("-np", "--num-processes", type=int, default=1, show_default=True, help="Converter processes.")
@click.option("--force", is_flag=True, help="Replace an existing dataset folder.")
def import_msd(task_folder, dataset_id, out, num_processes, force):
    """Convert an MSD TaskNN_Name folder with nnU-Net's converter, check it, and place it in nnUNet_raw."""
    from kt_nnunet.data.msd_import import import_msd as run

    click.echo(f"wrote {run(task_folder, dataset_id, out, force=force, num_processes=num_processes)}")


@data.command("register-folder")
@click.argument("folder", type=click.Path(file_okay=False))
@click.option("--id", "dataset_id", type=int, required=True, help="nnU-Net dataset id for the registered set.")
@click.option("--name", required=True, help="Dataset name: DatasetNNN_<name>.")
@click.option("--like", default=None, help="Source dataset (folder, id or name) whose channels/labels/ending to use.")
@click.option("--channels", "num_channels", type=int, default=None, help="Expected channels per case.")
@click.option("--out", type=click.Path(file_okay=False), default=None, help=OUT_HELP)
@click.option("--force", is_flag=True, help="Replace an existing dataset folder.")
def register_folder(folder, dataset_id, name, like, num_channels, out, force):
    """Check a folder of images and register it as an unlabelled transferal set."""
    from kt_nnunet.data.transferal import register_folder as run

    target = run(folder, dataset_id, name, out, like=like, num_channels=num_channels, force=force)
    click.echo(f"wrote {target}")


@data.command()
@click.argument("dataset")
def check(dataset):
    """Validate DATASET (a folder, or an id/name in nnUNet_raw): one message naming the file and fix."""
    from kt_nnunet.nnunet.raw_validation import validate_dataset

    from kt_nnunet.nnunet.paths import find_raw_dataset, raw_folder

    folder = find_raw_dataset(dataset) or (Path(dataset) if Path(dataset).is_absolute() else raw_folder() / dataset)
    click.echo(f"ok: {validate_dataset(folder).describe()}")
