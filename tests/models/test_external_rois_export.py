"""The export of a family that takes external proposals (the Fast R-CNN skeleton): its signatures take `rois`,
and a fresh process gets `predict`'s outputs (the harness's export check and fit check on that shape)."""

from tests.models import harness
from tests.models.skeletons import ExternalRoISkeleton

SPEC = harness.FamilySpec(name="external_rois", build=lambda: ExternalRoISkeleton(num_classes=3), fit_epochs=8)
_tests = harness.family_tests(SPEC)
trained = _tests["trained"]
test_external_rois_export_in_a_fresh_process_equals_predict = _tests["test_external_rois_export_in_a_fresh_process_equals_predict"]
test_external_rois_batch_zero_gives_empty_declared_outputs = _tests["test_external_rois_batch_zero_gives_empty_declared_outputs"]
test_external_rois_bad_input_is_refused_naming_the_argument = _tests["test_external_rois_bad_input_is_refused_naming_the_argument"]
