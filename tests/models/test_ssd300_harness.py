"""The model harness on the paper's SSD300 (VGG16, random weights): every check, with -m slow (a VGG16 at 300 px
takes minutes here). The compact model runs the same checks in the default suite (tests/models/test_ssd.py)."""

import pytest

from kerasdet.models.ssd import SSD
from tests.models import harness

pytestmark = pytest.mark.slow

# a VGG16 without batch norm from random weights: AdamW at 1e-3 sends its loss from 12 to 5000 at the second step
# (SSD512, one run), where the paper trains from ImageNet weights with SGD at 1e-3; the falling-loss check runs at 1e-4
SPEC = harness.FamilySpec(name="ssd300", build=lambda: SSD.paper_config(300, num_classes=3), image_size=300,
                          learning_rate=1e-4)
globals().update(harness.family_tests(SPEC))
