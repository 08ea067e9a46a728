"""Pieces the families share above the layers: dense per-level heads, anchor target assignment, the
region proposal network, the proposal sampler of the RoI head, RoI box heads, and the mask and
keypoint heads of Mask R-CNN."""

from kerasdet.heads.anchor_targets import assign_anchor_targets, ignore_crowd_overlaps
from kerasdet.heads.dense_head import conv_tower, per_level_outputs
from kerasdet.heads.grid_targets import slot_owners
from kerasdet.heads.keypoint_head import KeypointHead
from kerasdet.heads.mask_head import MaskHead
from kerasdet.heads.proposal_sampler import ProposalSampler
from kerasdet.heads.region_proposal_network import RegionProposalNetwork
from kerasdet.heads.roi_box_head import RoIBoxHead

__all__ = [
    "KeypointHead",
    "MaskHead",
    "ProposalSampler",
    "RegionProposalNetwork",
    "RoIBoxHead",
    "assign_anchor_targets",
    "conv_tower",
    "ignore_crowd_overlaps",
    "per_level_outputs",
    "slot_owners",
]
