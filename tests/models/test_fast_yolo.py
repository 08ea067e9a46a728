"""Fast YOLO: the model harness on the compact model (its loss and outputs are YOLOv1's, tested in test_yolo_v1.py)."""

from kerasdet.models.yolo_v1 import FastYOLO
from tests.models import harness

SPEC = harness.FamilySpec(name="fast_yolo", build=lambda: FastYOLO.compact(num_classes=3, width=0.25, input_size=96),
                          zoo_name=None, slow_checks=("test_mixed_float16_training_step_is_finite",))
globals().update(harness.family_tests(SPEC))
