"""The checks the conformance kit runs on one teacher kind, in this process, against a sample teacher of that kind.

They check what labelling relies on: the kind is registered under a valid name, a bare path goes to the kind that
claims it (and an unrelated one does not), ``open`` gives a :class:`~kt_nnunet.teachers.base.Teacher` with valid
``labels``, its ``probabilities`` are a float32 distribution over those labels on the image's own grid, and its
``fingerprint()`` (which decides whether a labelling resumes) is the same for the same files and changes with them.
Each raises :class:`TeacherKindConformanceError` (an ``AssertionError``, so pytest reports it as a failure) naming
the kind, its plugin and the broken rule.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from kt_nnunet.errors import KtNnunetError

CASE = "case_000"
# (z, y, x): one 16x16 slice, read as nnU-Net reads a 2D NIfTI; small enough for a network teacher on a CPU.
IMAGE_SHAPE = (1, 16, 16)


class TeacherKindConformanceError(KtNnunetError, AssertionError):
    """A teacher kind does not behave the way labelling requires; the message names the kind, plugin and rule."""


def _fail(kind_name: str, message: str) -> TeacherKindConformanceError:
    from kt_nnunet.plugins.manager import plugin_label
    from kt_nnunet.teachers.kinds import list_kinds

    plugin = next((kind.plugin for kind in list_kinds() if kind.name == kind_name), None)
    where = f" from {plugin_label(plugin)}" if plugin else ""
    return TeacherKindConformanceError(f"teacher kind {kind_name!r}{where}: {message}")


def check_registered(kind_name: str):
    """The registered :class:`~kt_nnunet.teachers.kinds.TeacherKind` called ``kind_name``, with a valid name and a
    one-line description (an unknown kind is refused listing the known ones and the plugins left out)."""
    from kt_nnunet.teachers.kinds import KIND_NAME, get_kind

    try:
        kind = get_kind(kind_name)
    except KtNnunetError as exc:
        raise TeacherKindConformanceError(f"{exc}; is the plugin installed (pip install -e .) and does its "
                                          "register_teacher_kinds hook register it?") from exc
    if not KIND_NAME.match(kind.name):
        raise _fail(kind_name, "the name must be lower case letters, digits, '_' and '-', starting with a letter")
    if not isinstance(kind.description, str) or "\n" in kind.description:
        raise _fail(kind_name, f"description {kind.description!r} must be one line of text (listings show it)")
    return kind


def check_claims(kind_name: str, sample: Path, unrelated_folder: Path) -> None:
    """``claims`` accepts the sample, no other kind claims it too (a bare path finds this kind), and an unrelated
    text file and an empty folder are not claimed."""
    from kt_nnunet.teachers.kinds import resolve_kind
    from kt_nnunet.teachers.spec import TeacherSpec

    kind = check_registered(kind_name)
    if kind.claims is None:
        raise _fail(kind_name, "has no claims(); give the kit a kind that claims paths, or skip this check")
    if not kind.claims(Path(sample)):
        raise _fail(kind_name, f"claims() is False for its sample {sample}; users would have to write "
                               f"{kind_name}:PATH")
    try:
        found = resolve_kind(TeacherSpec.parse(str(sample))).kind
    except KtNnunetError as exc:
        raise _fail(kind_name, f"the sample given without `{kind_name}:` is refused: {exc}") from exc
    if found != kind_name:
        raise _fail(kind_name, f"its sample given without `{kind_name}:` is taken as a {found} teacher")
    unrelated_folder.mkdir(parents=True, exist_ok=True)
    text_file, empty_folder = unrelated_folder / "notes.txt", unrelated_folder / "empty"
    text_file.write_text("not a teacher\n")
    empty_folder.mkdir(exist_ok=True)
    for path in (text_file, empty_folder):
        if kind.claims(path):
            raise _fail(kind_name, f"claims() is True for the unrelated {path}; claim only paths of this kind, or "
                                   "two kinds' users will have to write the prefix")


def open_sample(kind_name: str, sample: Path, options=None):
    """The sample opened as labelling opens a teacher of ``kind_name`` (on the CPU, without TTA)."""
    from kt_nnunet.teachers.base import TeacherOptions
    from kt_nnunet.teachers.kinds import open_teacher
    from kt_nnunet.teachers.spec import TeacherSpec

    try:
        return open_teacher(TeacherSpec.parse(f"{kind_name}:{sample}"), options or TeacherOptions(tta=False))
    except TeacherKindConformanceError:
        raise
    except Exception as exc:  # the kind's own code: whatever it raises is this check's failure
        raise _fail(kind_name, f"open() failed on its sample {sample}: {type(exc).__name__}: {exc}") from exc


def check_labels(kind_name: str, teacher) -> dict:
    """``labels`` is ``{name: value}`` with values 0 (background), 1, 2, ... and no ``ignore``."""
    labels = teacher.labels
    if not isinstance(labels, dict) or not all(isinstance(k, str) for k in labels) \
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise _fail(kind_name, f"labels {labels!r} must be a dict of class name -> int value")
    if "ignore" in labels:
        raise _fail(kind_name, "labels must not hold 'ignore': a teacher outputs classes only")
    if len(labels) < 2 or sorted(labels.values()) != list(range(len(labels))):
        raise _fail(kind_name, f"labels {labels} must be background 0, then 1, 2, ... without gaps (at least two)")
    return labels


def tiny_image(folder: Path, channels: int, shape: Sequence[int] = IMAGE_SHAPE, case: str = CASE) -> list[Path]:
    """One random image per channel, ``CASE_0000.nii.gz`` ..., of ``shape`` (z, y, x) at 1 mm spacing."""
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    files = []
    for channel in range(channels):
        image = sitk.GetImageFromArray(rng.normal(0.5, 0.25, size=tuple(shape)).astype(np.float32))
        image.SetSpacing([1.0] * len(shape))
        files.append(folder / f"{case}_{channel:04d}.nii.gz")
        sitk.WriteImage(image, str(files[-1]))
    return files


def check_probabilities(kind_name: str, teacher, files: Sequence[Path], case: str = CASE) -> np.ndarray:
    """As labelling calls it on one case read by the teachers' reader: float32 ``(len(labels), *spatial)`` on the
    image's grid, finite, in [0, 1] and summing to one over the classes at every voxel."""
    from kt_nnunet.nnunet.inference import reader_writer_class
    from kt_nnunet.nnunet.raw_dataset import read_images, reader_class

    files = [str(f) for f in files]
    reader = reader_writer_class(teacher.reader_name) if teacher.reader_name else reader_class(".nii.gz", files[0])
    try:
        teacher.use_image_reader(reader)
        teacher.check_cases({case: files})
        image, properties = read_images(files, reader=reader)
        probabilities = teacher.probabilities(case, image, properties)
    except Exception as exc:  # the kind's own code: whatever it raises is this check's failure
        raise _fail(kind_name, f"probabilities() on the tiny image {files[0]} failed: {type(exc).__name__}: "
                               f"{exc}") from exc
    expected = (len(teacher.labels), *image.shape[1:])
    if not isinstance(probabilities, np.ndarray) or probabilities.dtype != np.float32:
        raise _fail(kind_name, f"probabilities() returned {type(probabilities).__name__} of "
                               f"{getattr(probabilities, 'dtype', None)}, not a float32 numpy array")
    if probabilities.shape != expected:
        raise _fail(kind_name, f"probabilities() has shape {list(probabilities.shape)}, the image asks for "
                               f"{list(expected)} (one map per label, on the image's own grid)")
    if not np.isfinite(probabilities).all():
        raise _fail(kind_name, "probabilities() contains NaN or Inf")
    if probabilities.min() < 0 or probabilities.max() > 1 or not np.allclose(probabilities.sum(0), 1.0, atol=1e-3):
        raise _fail(kind_name, "probabilities() must lie in [0, 1] and sum to one over the classes at every voxel "
                               "(softmax them; label maps one-hot)")
    return probabilities


def append_newline(sample: Path) -> None:
    """The kit's default change to a sample: a newline appended to it, or to each ``.json`` file in a folder sample
    (text formats stay readable; give the kit another change for binary files)."""
    sample = Path(sample)
    targets = [sample] if sample.is_file() else sorted(sample.glob("*.json"))
    if not targets:
        raise ValueError(f"{sample}: no file to change (a folder without .json files); override modify(sample) to "
                         "change one of the teacher's files")
    for target in targets:
        with open(target, "a") as file:
            file.write("\n")


def check_fingerprint(kind_name: str, sample: Path, modify: Callable[[Path], None] = append_newline) -> None:
    """Two opens of the same files give the same JSON fingerprint (a labelling resumes); after ``modify(sample)``
    changed a file it differs (a changed teacher never resumes an old labelling)."""
    first, second = (open_sample(kind_name, sample).fingerprint() for _ in range(2))
    try:
        json.dumps(first)
    except (TypeError, ValueError) as exc:
        raise _fail(kind_name, f"fingerprint() is not JSON ({exc}); labelling writes it into its settings") from exc
    if first != second:
        raise _fail(kind_name, f"fingerprint() differs between two opens of the same files ({first} vs {second}); "
                               "every labelling would start again")
    modify(Path(sample))
    if open_sample(kind_name, sample).fingerprint() == first:
        raise _fail(kind_name, "fingerprint() is unchanged after the teacher's files changed; include their checksums "
                               "(Teacher.file_record(path)) so an old labelling is not resumed")


def check_teacher_kind(kind_name: str, sample: Path, workdir: Path,
                       modify: Callable[[Path], None] = append_newline) -> None:
    """Every check on ``sample`` (a teacher of ``kind_name``, changed by ``modify`` at the end), with the tiny image
    and the unrelated paths written under ``workdir``."""
    kind = check_registered(kind_name)
    if kind.claims is not None:
        check_claims(kind_name, sample, Path(workdir) / "unrelated")
    teacher = open_sample(kind_name, sample)
    check_labels(kind_name, teacher)
    check_probabilities(kind_name, teacher, tiny_image(Path(workdir) / "images", teacher.num_input_channels or 1))
    check_fingerprint(kind_name, sample, modify)
