"""Serializable Keras layers over `kerasdet.ops`, one per file."""

from kerasdet.layers.anchor_generator import AnchorGenerator
from kerasdet.layers.box_matcher import BoxMatcher
from kerasdet.layers.feature_pyramid import FeaturePyramid
from kerasdet.layers.fused_batch_norm import FusedBatchNormalization
from kerasdet.layers.hard_negative_miner import HardNegativeMiner
from kerasdet.layers.hierarchical_softmax import HierarchicalSoftmax
from kerasdet.layers.l2_normalization import L2Normalization
from kerasdet.layers.multi_level_roi_align import MultiLevelRoIAlign
from kerasdet.layers.non_max_suppression import NonMaxSuppression
from kerasdet.layers.proposal_generator import ProposalGenerator
from kerasdet.layers.ps_roi_align import PSRoIAlign
from kerasdet.layers.ps_roi_pool import PSRoIPool
from kerasdet.layers.roi_align import RoIAlign
from kerasdet.layers.roi_pool import RoIPool
from kerasdet.layers.roi_sampler import RoISampler
from kerasdet.layers.space_to_depth import SpaceToDepth
from kerasdet.layers.spatial_pyramid_pool import SpatialPyramidPool
from kerasdet.layers.word_tree import WordTree

__all__ = [
    "AnchorGenerator",
    "BoxMatcher",
    "FeaturePyramid",
    "FusedBatchNormalization",
    "HardNegativeMiner",
    "HierarchicalSoftmax",
    "L2Normalization",
    "MultiLevelRoIAlign",
    "NonMaxSuppression",
    "PSRoIAlign",
    "PSRoIPool",
    "ProposalGenerator",
    "RoIAlign",
    "RoIPool",
    "RoISampler",
    "SpaceToDepth",
    "SpatialPyramidPool",
    "WordTree",
]
