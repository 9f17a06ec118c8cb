"""Classic U-Net.

Ronneberger, Fischer, Brox, "U-Net: Convolutional Networks for Biomedical Image Segmentation", MICCAI 2015,
arXiv:1505.04597. Encoder of double-conv stages with max-pool downsampling, decoder of transposed-conv
("up-conv") upsampling, concatenation of the encoder skip and a double conv. Differences from the paper,
for nnU-Net compatibility: same-padding convs (so outputs match the patch), instance norm + LeakyReLU,
per-axis strides from the plan (anisotropic pooling), and 1x1 deep-supervision heads on every decoder stage.
"""
from __future__ import annotations

from typing import Optional

from kt_nnunet.architectures.spec import ArchitectureSpec
from kt_nnunet.architectures.unet_parts import EncoderDecoderUNet, double_conv, spatial_dim, stage_features


class UNet(EncoderDecoderUNet):
    """U-Net whose stage ``i`` has ``min(max_features, base_features * 2**i)`` channels.

    ``downsample="maxpool"`` follows the paper; ``"conv"`` downsamples with the first (strided) conv of
    each stage, as nnU-Net does.
    """

    def __init__(self, input_channels: int, num_classes: int, strides, deep_supervision: bool = False,
                 patch_size=None, kernel_sizes=None, base_features: int = 32,
                 max_features: Optional[int] = None, downsample: str = "maxpool", **kwargs):
        features = stage_features(len(strides), base_features, max_features, spatial_dim(strides))
        super().__init__(input_channels, num_classes, strides, deep_supervision, kernel_sizes, features,
                         block=double_conv, downsample=downsample)


SPEC = ArchitectureSpec(
    name="unet",
    network_class=UNet,
    dims=(2, 3),
    deep_supervision=True,
    description="classic U-Net (Ronneberger 2015): double convs, max-pool, up-conv + concatenation skips",
    default_kwargs={"base_features": 32, "downsample": "maxpool"},
    tiny_kwargs={"base_features": 4},
)
