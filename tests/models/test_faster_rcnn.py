"""Faster R-CNN: the model harness, the two-stage training step, paper configurations, and the CLI round trip."""

import numpy as np
import pytest
import tensorflow as tf

from kerasdet.models.faster_rcnn import FasterRCNN
from tests.models import harness

SPEC = harness.FamilySpec(name="faster_rcnn", build=lambda: FasterRCNN.compact(num_classes=3, width=0.25))
globals().update(harness.family_tests(SPEC))
