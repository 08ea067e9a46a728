"""The model harness (tests/models/harness.py) on RetinaNet."""

from kerasdet.models.retinanet import RetinaNet
from tests.models import harness

SPEC = harness.FamilySpec(name="retinanet", build=lambda: RetinaNet.compact(num_classes=3, width=0.25),
                          zoo_name="retinanet_resnet18_shapes")
globals().update(harness.family_tests(SPEC))
