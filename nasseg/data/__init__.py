"""Datasets and transforms for proxy training.

Every dataset is a map-style ``torch.utils.data.Dataset`` of ``(uint8 image [3, H, W], int64 label [H, W])``
with ``num_classes``, ``class_names``, ``ignore_index`` (255) and ``name``, opened from a spec string::

    from nasseg.data import open_dataset, describe_spec, ProxyTransform
    describe_spec("cityscapes:/data/cityscapes")            # checks the string only
    train = open_dataset("synthetic", "train", size=(128, 256), seed=0)
    val = open_dataset("ade20k:/data/ade", "val")
    val.validate()                                           # scans every file, reports all bad ones
    image, label = ProxyTransform((256, 512), train=False)(*val[0])

``synthetic`` is generated procedurally (:mod:`nasseg.data.synthetic`); the real layouts are
described in :mod:`nasseg.data.layouts`; the transform in :mod:`nasseg.data.transforms`.
"""

from nasseg.data.layouts import (
    ADE20K_CLASSES,
    CAMVID_CLASSES,
    CITYSCAPES_CLASSES,
    CITYSCAPES_LABEL_TO_TRAIN,
    LAYOUTS,
    VOC_CLASSES,
    DatasetSpec,
    LayoutDataset,
    describe_spec,
    open_dataset,
)
from nasseg.data.synthetic import SyntheticDataset, render_synthetic, synthetic_batch
from nasseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, ProxyTransform, normalize

__all__ = [
    "ADE20K_CLASSES",
    "CAMVID_CLASSES",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_LABEL_TO_TRAIN",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "VOC_CLASSES",
    "DatasetSpec",
    "LayoutDataset",
    "ProxyTransform",
    "SyntheticDataset",
    "describe_spec",
    "normalize",
    "open_dataset",
    "render_synthetic",
    "synthetic_batch",
]
