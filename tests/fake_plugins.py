"""Sources of fake plugin modules, installed by the ``fake_entry_points`` fixture (conftest.py) as real packages."""

PLUGIN_TEMPLATE = '''
import torch.nn as nn
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl

class {cls}(nn.Module):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__()
        self.decoder = nn.Module()
        self.decoder.deep_supervision = deep_supervision
        self.conv = nn.Conv2d(input_channels, num_classes, 1)

    def forward(self, x):
        return [self.conv(x)] if self.decoder.deep_supervision else self.conv(x)

@hookimpl
def {hook}(register):
    register(ArchitectureSpec(name="{arch}", network_class={cls}, dims=(2,), deep_supervision=False))
'''

LOCAL_CLASS_PLUGIN = '''
import torch.nn as nn
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl

@hookimpl
def register_architectures(register):
    class LocalNet(nn.Module):
        pass
    register(ArchitectureSpec(name="local_net", network_class=LocalNet, dims=(2,), deep_supervision=False))
'''

NO_KWARGS_PLUGIN = '''
import torch.nn as nn
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl

class StrictNet(nn.Module):
    def __init__(self, input_channels, num_classes, deep_supervision=False):
        super().__init__()

@hookimpl
def register_architectures(register):
    register(ArchitectureSpec(name="strict_net", network_class=StrictNet, dims=(2,), deep_supervision=False))
'''

# A minimal correct deep-supervision network (good_net) and one network per mistake an author makes, each
# breaking exactly one rule of nnU-Net's network contract.
DEFECTS_PLUGIN = '''
import numpy
import torch
import torch.nn as nn
import torch.nn.functional as F
from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.plugins import hookimpl


class GoodNet(nn.Module):
    """One strided conv per stage but the last; a 1x1 head on each gives nnU-Net's deep-supervision scales."""

    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__()
        conv = nn.Conv2d if len(strides[0]) == 2 else nn.Conv3d
        self.stages = nn.ModuleList(conv(input_channels if i == 0 else 4, 4, 3, stride=tuple(s), padding=1)
                                    for i, s in enumerate(strides[:-1]))
        self.decoder = nn.Module()
        self.decoder.deep_supervision = deep_supervision
        self.decoder.heads = nn.ModuleList(conv(4, num_classes, 1) for _ in strides[:-1])

    def logits(self, x):
        out = []
        for stage, head in zip(self.stages, self.decoder.heads):
            x = torch.relu(stage(x))
            out.append(head(x))
        return out

    def forward(self, x):
        logits = self.logits(x)
        return logits if self.decoder.deep_supervision else logits[0]


class WrongChannelsNet(GoodNet):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__(input_channels, num_classes - 1, strides, deep_supervision)


class PlainFCN(nn.Module):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(input_channels, num_classes, 3, padding=1)

    def forward(self, x):
        return self.conv(x)


class FixedFlagNet(GoodNet):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__(input_channels, num_classes, strides, deep_supervision)
        self.ds = deep_supervision

    def forward(self, x):
        logits = self.logits(x)
        return logits if self.ds else logits[0]


class OneOutputNet(GoodNet):
    def forward(self, x):
        logits = self.logits(x)
        return logits[:1] if self.decoder.deep_supervision else logits[0]


class HalfResolutionNet(GoodNet):
    def forward(self, x):
        logits = [F.avg_pool2d(o, 2) for o in self.logits(x)]
        return logits if self.decoder.deep_supervision else logits[0]


class HeadsOnlyWhenSupervisedNet(GoodNet):
    def __init__(self, input_channels, num_classes, strides, deep_supervision=False, **kwargs):
        super().__init__(input_channels, num_classes, strides, deep_supervision)
        if not deep_supervision:
            del self.decoder.heads[1:]

    def logits(self, x):
        out = []
        for i, stage in enumerate(self.stages):
            x = torch.relu(stage(x))
            if i < len(self.decoder.heads):
                out.append(self.decoder.heads[i](x))
        return out


class NaNNet(GoodNet):
    def forward(self, x):
        logits = [o * float("nan") for o in self.logits(x)]
        return logits if self.decoder.deep_supervision else logits[0]


class CpuTensorNet(GoodNet):
    """Correct, but makes a CPU tensor itself, which fails on the meta device only."""

    def forward(self, x):
        scale = torch.from_numpy(numpy.ones(1, dtype=numpy.float32))
        logits = [o * scale for o in self.logits(x)]
        return logits if self.decoder.deep_supervision else logits[0]


NETWORKS = {"good_net": GoodNet, "cpu_tensor_net": CpuTensorNet, "wrong_channels_net": WrongChannelsNet,
            "plain_fcn": PlainFCN, "fixed_flag_net": FixedFlagNet, "one_output_net": OneOutputNet,
            "half_resolution_net": HalfResolutionNet,
            "heads_only_when_supervised_net": HeadsOnlyWhenSupervisedNet, "nan_net": NaNNet}


@hookimpl
def register_architectures(register):
    for name, cls in NETWORKS.items():
        register(ArchitectureSpec(name=name, network_class=cls, dims=(2,) if cls is PlainFCN else (2, 3),
                                  deep_supervision=cls is not PlainFCN, description=f"{cls.__name__} for tests"))
'''

# A teacher kind registered through ``{hook}`` (register_teacher_kinds, or its deprecated old name).
TEACHER_KIND_PLUGIN = '''
from kt_nnunet import TeacherKind, hookimpl

@hookimpl
def {hook}(register):
    register(TeacherKind(name="{kind}", open=lambda spec, options: None, description="{kind} for tests"))
'''

# A plugin's own kind of teacher, installed as ``thresholds``: intensity thresholds read from a rules file.
THRESHOLD_KIND_PLUGIN = '''
import json

import numpy as np

from kt_nnunet import Teacher, TeacherKind, hookimpl


class ThresholdTeacher(Teacher):
    """Classes by intensity: a voxel above the k-th threshold of the rules file is class k + 1."""

    kind = "threshold"
    hard_labels = True

    def __init__(self, spec, options):
        super().__init__(spec)
        self.rules = json.loads(spec.path.read_text())

    @property
    def labels(self):
        return self.rules["labels"]

    def probabilities(self, case, image, properties):
        classes = np.digitize(image[0], self.rules["thresholds"])
        return np.stack([classes == c for c in range(len(self.labels))]).astype(np.float32)

    def fingerprint(self):
        return {"kind": self.kind, "rules": self.file_record(self.spec.path)}


@hookimpl
def register_teacher_kinds(register):
    register(TeacherKind(name="threshold", open=ThresholdTeacher, description="intensity thresholds",
                         claims=lambda path: path.name.endswith(".threshold.json")))
'''

# Teacher kinds that each break one rule of the teacher-kind conformance kit, built on the threshold kind's teacher
# (so the ``thresholds`` plugin must be installed too).
FLAWED_KINDS_PLUGIN = '''
import numpy as np
from fake_kt_plugin_thresholds import ThresholdTeacher

from kt_nnunet import TeacherKind, hookimpl


class GapLabels(ThresholdTeacher):
    @property
    def labels(self):
        return {"background": 0, "class2": 2}


class TwiceTheGrid(ThresholdTeacher):
    def probabilities(self, case, image, properties):
        return np.repeat(np.repeat(super().probabilities(case, image, properties), 2, axis=-1), 2, axis=-2)


class NotSummingToOne(ThresholdTeacher):
    def probabilities(self, case, image, properties):
        return super().probabilities(case, image, properties) * np.float32(0.7)


class PathNotChecksum(ThresholdTeacher):
    def fingerprint(self):
        return {"kind": self.kind, "rules": str(self.spec.path)}


FLAWED = {"gap": GapLabels, "grid": TwiceTheGrid, "sum": NotSummingToOne, "no_checksum": PathNotChecksum}


@hookimpl
def register_teacher_kinds(register):
    for flaw, teacher in FLAWED.items():
        register(TeacherKind(name=f"threshold_{flaw}", open=teacher))
    register(TeacherKind(name="threshold_greedy", open=ThresholdTeacher,
                         claims=lambda path: path.suffix in (".greedy", ".txt")))
'''
