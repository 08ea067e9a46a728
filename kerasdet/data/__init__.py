"""Datasets: the embedded synthetic dataset, COCO / VOC / YOLO readers and writers, the input pipeline."""

from kerasdet.data import synthetic
from kerasdet.data._io import read_image
from kerasdet.data.coco import CocoDataset, write_coco
from kerasdet.data.dataset_error import DatasetError
from kerasdet.data.pipeline import (
    DetectionAugmenter,
    letterbox,
    letterbox_params,
    masks_to_boxes,
    padded_batch,
    prepare,
    resize,
    to_rgb,
    unletterbox_boxes,
)
from kerasdet.data.kmeans_anchors import kmeans_anchors, mean_best_iou
from kerasdet.data.multi_scale import MultiScaleBatches
from kerasdet.data.ssd_augmenter import SSDAugmenter
from kerasdet.data.voc import VOC_CLASSES, VocDataset, write_voc
from kerasdet.data.word_tree_sources import WordNet, read_darknet_tree, write_darknet_tree
from kerasdet.data.yolo_txt import YoloTxtDataset, write_yolo_txt

__all__ = [
    "CocoDataset",
    "DatasetError",
    "DetectionAugmenter",
    "MultiScaleBatches",
    "SSDAugmenter",
    "VOC_CLASSES",
    "VocDataset",
    "WordNet",
    "YoloTxtDataset",
    "kmeans_anchors",
    "letterbox",
    "letterbox_params",
    "masks_to_boxes",
    "mean_best_iou",
    "padded_batch",
    "prepare",
    "read_darknet_tree",
    "read_image",
    "resize",
    "synthetic",
    "to_rgb",
    "unletterbox_boxes",
    "write_coco",
    "write_darknet_tree",
    "write_voc",
    "write_yolo_txt",
]
