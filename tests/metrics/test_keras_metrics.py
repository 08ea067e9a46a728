"""COCOMetric: streaming accumulation (eager, tf.function, model.evaluate) equals pycocotools on the same data."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.metrics.coco import DETECTION_STATS, KEYPOINT_STATS
from kerasdet.metrics.keras_metrics import COCOMetric
from tests.metrics.random_sets import SIGMAS, pycocotools_eval

pytest.importorskip("pycocotools")
mask_utils = pytest.importorskip("pycocotools.mask")

H, W, C, K = 48, 64, 4, 5


def make_batches(seed, num_images=12, m=6, n=30, masks=False, keypoints=False):
    """Padded targets and predictions (DESIGN.md §3) for `num_images` images, xyxy boxes."""
    rng = np.random.default_rng(seed)
    boxes = -np.ones((num_images, m, 4), np.float32)
    labels = -np.ones((num_images, m), np.int32)
    p_boxes = np.zeros((num_images, n, 4), np.float32)
    scores = np.zeros((num_images, n), np.float32)
    p_labels = -np.ones((num_images, n), np.int32)
    num = np.zeros(num_images, np.int32)
    t_masks = np.zeros((num_images, m, H, W), np.uint8)
    p_masks = np.zeros((num_images, n, H, W), np.float32)
    t_kp = np.zeros((num_images, m, K, 3), np.float32)
    p_kp = np.zeros((num_images, n, K, 3), np.float32)
    for i in range(num_images):
        k = int(rng.integers(0, m + 1))
        xy = rng.uniform(0, [W - 4, H - 4], (k, 2))
        wh = rng.uniform(2, 30, (k, 2))
        boxes[i, :k] = np.concatenate([xy, np.minimum(xy + wh, [W, H])], 1)
        labels[i, :k] = rng.integers(0, C - 1, k)
        j = int(rng.integers(0, n + 1))
        src = rng.integers(0, max(k, 1), j)
        jb = boxes[i, src] + rng.normal(0, 1.5, (j, 4)) if k else np.tile([5, 5, 20, 20], (j, 1))
        p_boxes[i, :j] = np.concatenate([np.minimum(jb[:, :2], jb[:, 2:] - 1), jb[:, 2:]], 1)
        p_labels[i, :j] = np.where(rng.random(j) < 0.8, labels[i, src] if k else 0, rng.integers(0, C, j))
        scores[i, :j] = rng.random(j)
        num[i] = j
        p_labels[i, j:] = -1
        if masks:
            yy, xx = np.mgrid[:H, :W]
            for q in range(k):
                x1, y1, x2, y2 = boxes[i, q]
                t_masks[i, q] = (xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2) & ((xx + yy) % 3 > 0)
            for q in range(j):
                x1, y1, x2, y2 = p_boxes[i, q]
                p_masks[i, q] = ((xx >= x1) & (xx < x2) & (yy >= y1) & (yy < y2)) * rng.uniform(0.3, 1.0)
        if keypoints:
            for q in range(k):
                x1, y1, x2, y2 = boxes[i, q]
                t_kp[i, q, :, 0] = rng.uniform(x1, x2, K)
                t_kp[i, q, :, 1] = rng.uniform(y1, y2, K)
                t_kp[i, q, :, 2] = rng.choice([0, 2], K, p=[0.2, 0.8])
            p_kp[i, :j] = t_kp[i, src] if k else 0
            p_kp[i, :j, :, :2] += rng.normal(0, 1.0, (j, K, 2))
            p_kp[i, :j, :, 2] = 1
    y_true = {"boxes": boxes, "labels": labels}
    y_pred = {"boxes": p_boxes, "scores": scores, "labels": p_labels, "num_detections": num}
    if masks:
        y_true["masks"], y_pred["masks"] = t_masks, p_masks
    if keypoints:
        y_true["keypoints"], y_pred["keypoints"] = t_kp, p_kp
    return y_true, y_pred


def reference_stats(y_true, y_pred, iou_type="bbox"):
    """pycocotools on COCO dicts written here from the padded arrays (boxes xyxy -> xywh)."""
    n_img = len(y_true["labels"])
    images = [{"id": i + 1, "height": H, "width": W} for i in range(n_img)]
    anns, dets = [], []
    for i in range(n_img):
        for q in np.flatnonzero(y_true["labels"][i] >= 0):
            x1, y1, x2, y2 = (float(v) for v in y_true["boxes"][i, q])
            ann = {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(y_true["labels"][i, q]),
                   "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0}
            if iou_type == "segm":
                rle = mask_utils.encode(np.asfortranarray(y_true["masks"][i, q]))
                ann["segmentation"], ann["area"] = rle, float(mask_utils.area(rle))
            if iou_type == "keypoints":
                ann["keypoints"] = y_true["keypoints"][i, q].reshape(-1).tolist()
                ann["num_keypoints"] = int((y_true["keypoints"][i, q, :, 2] > 0).sum())
            anns.append(ann)
        for q in range(int(y_pred["num_detections"][i])):
            x1, y1, x2, y2 = (float(v) for v in y_pred["boxes"][i, q])
            det = {"image_id": i + 1, "category_id": int(y_pred["labels"][i, q]), "bbox": [x1, y1, x2 - x1, y2 - y1],
                   "score": float(y_pred["scores"][i, q])}
            if iou_type == "segm":
                det["segmentation"] = mask_utils.encode(np.asfortranarray((y_pred["masks"][i, q] > 0.5).astype(np.uint8)))
            if iou_type == "keypoints":
                det["keypoints"] = y_pred["keypoints"][i, q].reshape(-1).tolist()
            dets.append(det)
    gt = {"images": images, "annotations": anns, "categories": [{"id": c, "name": str(c)} for c in range(C)]}
    stats, _ = pycocotools_eval(gt, dets, iou_type, SIGMAS if iou_type == "keypoints" else None)
    return stats


def _feed(metric, y_true, y_pred, batch=4, wrap=lambda f: f):
    step = wrap(metric.update_state)
    for s in range(0, len(y_true["labels"]), batch):
        step({k: v[s : s + batch] for k, v in y_true.items()}, {k: v[s : s + batch] for k, v in y_pred.items()})


def _values(result, names, prefix=""):
    return np.array([float(result[prefix + n]) for n in names])


def test_eager_accumulation_equals_pycocotools():
    y_true, y_pred = make_batches(0)
    metric = COCOMetric(num_classes=C)
    assert all(float(v) == -1.0 for v in metric.result().values())  # nothing seen yet
    _feed(metric, y_true, y_pred)
    np.testing.assert_allclose(_values(metric.result(), DETECTION_STATS), reference_stats(y_true, y_pred), atol=1e-6)
    metric.reset_state()
    assert all(float(v) == -1.0 for v in metric.result().values())


def test_tf_function_update_and_other_box_format():
    y_true, y_pred = make_batches(1)
    ref = reference_stats(y_true, y_pred)
    to_yxyx = lambda b: b[..., [1, 0, 3, 2]]  # noqa: E731
    yt = dict(y_true, boxes=np.where(y_true["boxes"] < 0, -1, to_yxyx(y_true["boxes"])))
    yp = dict(y_pred, boxes=to_yxyx(y_pred["boxes"]))
    metric = COCOMetric(bounding_box_format="yxyx")
    _feed(metric, yt, yp, batch=5, wrap=tf.function)
    np.testing.assert_allclose(_values(metric.result(), DETECTION_STATS), ref, atol=1e-6)


def test_segm_and_keypoints():
    y_true, y_pred = make_batches(2, num_images=8, masks=True, keypoints=True)
    seg = COCOMetric(iou_type="segm", num_classes=C)
    kps = COCOMetric(iou_type="keypoints", num_classes=C, kpt_oks_sigmas=SIGMAS)
    _feed(seg, y_true, y_pred)
    _feed(kps, y_true, y_pred)
    np.testing.assert_allclose(_values(seg.result(), DETECTION_STATS, "mask_"), reference_stats(y_true, y_pred, "segm"), atol=1e-6)
    np.testing.assert_allclose(_values(kps.result(), KEYPOINT_STATS, "keypoints_"),
                               reference_stats(y_true, y_pred, "keypoints"), atol=1e-6)


class PassThroughDetector(keras.Model):
    """Returns its input predictions; feeds the whole target / prediction dicts to its COCO metric."""

    def __init__(self):
        super().__init__(name="pass_through_detector")
        self.coco = COCOMetric(num_classes=C, class_names=[f"c{i}" for i in range(C)])

    def call(self, x):
        return {k: tf.identity(v) for k, v in x.items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        return tf.zeros(())

    def compute_metrics(self, x, y, y_pred, sample_weight=None):
        self.coco.update_state(y, y_pred)
        return self.get_metrics_result()


def test_model_evaluate_gives_the_final_numbers():
    y_true, y_pred = make_batches(3, num_images=10)
    model = PassThroughDetector()
    model.compile(jit_compile=False)
    logs = model.evaluate(y_pred, y_true, batch_size=3, verbose=0, return_dict=True)
    np.testing.assert_allclose(_values(logs, DETECTION_STATS), reference_stats(y_true, y_pred), atol=1e-6)
    table = model.coco.evaluate()["per_class"]
    assert [r["name"] for r in table] == [f"c{i}" for i in range(C)]
    # a second evaluate starts from scratch
    logs2 = model.evaluate(y_pred, y_true, batch_size=5, verbose=0, return_dict=True)
    assert _values(logs2, DETECTION_STATS).tolist() == _values(logs, DETECTION_STATS).tolist()


def test_config_round_trip_and_serialization():
    metric = COCOMetric(bounding_box_format="center_xywh", iou_type="keypoints", num_classes=3,
                        class_names=["a", "b", "c"], kpt_oks_sigmas=[0.1, 0.2], mask_threshold=0.4, prefix="kp/", name="m")
    config = metric.get_config()
    clone = COCOMetric.from_config(config)
    assert clone.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, COCOMetric) and restored.get_config() == config
    assert set(restored.result()) == {"kp/" + n for n in KEYPOINT_STATS}


def test_errors():
    with pytest.raises(ValueError, match="bounding_box_format"):
        COCOMetric(bounding_box_format="rel_xyxy")
    with pytest.raises(ValueError, match="iou_type"):
        COCOMetric(iou_type="mask")
    with pytest.raises(ValueError, match="class_names"):
        COCOMetric(num_classes=2, class_names=["a"])
    y_true, y_pred = make_batches(4, num_images=2)
    metric = COCOMetric()
    with pytest.raises(ValueError, match="sample_weight"):
        metric.update_state(y_true, y_pred, sample_weight=np.ones(2))
    with pytest.raises(ValueError, match="lacks \\['num_detections'\\]"):
        metric.update_state(y_true, {k: v for k, v in y_pred.items() if k != "num_detections"})
    with pytest.raises(TypeError, match="`y_true` must be a dict"):
        metric.update_state(y_true["boxes"], y_pred)
    with pytest.raises(ValueError, match=r"boxes \[B, M, 4\]"):
        metric.update_state(dict(y_true, boxes=y_true["boxes"][..., :3]), y_pred)
    with pytest.raises(ValueError, match="masks"):
        COCOMetric(iou_type="segm").update_state(y_true, y_pred)
