"""`kerasdet.export.saved_model` (DESIGN.md §7): the export, loaded with `tf.saved_model.load` in a fresh
process that never imports kerasdet, equals `model.predict` within 1e-4 for batches of 1, 3 and 8 and
several image sizes; `serving_bytes` on PNG-encoded images equals `serving_default`; `saved_model_cli`
lists both signatures; a tensorflow-serving-api `PredictRequest` round trip gives equal tensors; and,
where `tensorflow_model_server` is on PATH, the export is served over REST and gRPC."""

import base64
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

from kerasdet.export.saved_model import OUTPUT_KEYS, _decode_batch, _header_size, saved_model
from kerasdet.models.retinanet.retinanet import RetinaNet

HERE = pathlib.Path(__file__).resolve().parent
NUM_CLASSES = 3
#: (name, batch, height, width): batches of 1, 3 and 8 at two square sizes, one non-square, one empty
BATCHES = [(f"b{b}_{h}x{w}", b, h, w) for h, w in ((128, 128), (192, 192)) for b in (1, 3, 8)]
BATCHES += [("b3_128x192", 3, 128, 192), ("b0_128x128", 0, 128, 128)]
ATOL = 1e-4


def make_model():
    """A quarter-width compact RetinaNet whose class head is randomised so that scores are spread out
    (an untrained head gives ~0.01 everywhere: no detections above the threshold, and many ties)."""
    keras.utils.set_random_seed(0)
    model = RetinaNet.compact(num_classes=NUM_CLASSES, width=0.25, max_detections=100)
    model.build_for_size(128)
    rng = np.random.default_rng(0)
    for head, scale in ((model.class_head, 1.1), (model.box_head, 1.0)):
        out = head.layers[-1]
        out.kernel.assign(rng.normal(0.0, scale, out.kernel.shape).astype(np.float32))
    return model


def make_images(batch, height, width, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (batch, height // 8, width // 8, 3)).astype(np.float32)
    smooth = tf.image.resize(base, (height, width)).numpy() if batch else np.zeros((0, height, width, 3))
    noise = rng.normal(0, 12, (batch, height, width, 3))
    return np.clip(smooth + noise, 0, 255).astype(np.uint8)


def assert_outputs_equal(actual, expected, what):
    assert sorted(actual) == sorted(OUTPUT_KEYS), what
    for key in OUTPUT_KEYS:
        a, e = np.asarray(actual[key]), np.asarray(expected[key])
        assert a.shape == e.shape, f"{what} {key}: {a.shape} vs {e.shape}"
        assert a.dtype == e.dtype, f"{what} {key}: {a.dtype} vs {e.dtype}"
        np.testing.assert_allclose(a, e, atol=ATOL, rtol=0, err_msg=f"{what} {key}")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The model, its export, the inputs, `model.predict` on them, and the fresh process's outputs."""
    root = tmp_path_factory.mktemp("export")
    model = make_model()
    path = saved_model(model, root / "detector" / "1")
    inputs = {name: make_images(b, h, w, seed=i) for i, (name, b, h, w) in enumerate(BATCHES)}
    expected = {name: model.predict(x, verbose=0) for name, x in inputs.items()}
    np.savez(root / "inputs.npz", **inputs)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    proc = subprocess.run(
        [sys.executable, str(HERE / "fresh_process_check.py"), str(path), str(root / "inputs.npz"),
         str(root / "outputs.npz")],
        cwd=root, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(root / "outputs.npz") as f:
        fresh = {k: f[k] for k in f.files}
    return {"model": model, "path": path, "inputs": inputs, "expected": expected, "fresh": fresh}


def fresh_outputs(exported, name, kind):
    prefix = f"{name}__{kind}__"
    return {k[len(prefix):]: v for k, v in exported["fresh"].items() if k.startswith(prefix)}


def test_fresh_process_never_imported_kerasdet(exported):
    assert int(exported["fresh"]["kerasdet_imported"]) == 0
    assert sorted(exported["fresh"]["signatures"]) == ["serving_bytes", "serving_default"]


def test_the_test_model_makes_real_detections(exported):
    counts = np.concatenate([e["num_detections"] for e in exported["expected"].values()])
    assert counts.min() > 0 and (counts < 100).any()  # some padding to compare too


@pytest.mark.parametrize("name", [b[0] for b in BATCHES])
def test_serving_default_equals_model_predict(exported, name):
    assert_outputs_equal(fresh_outputs(exported, name, "default"), exported["expected"][name], name)


@pytest.mark.parametrize("name", [b[0] for b in BATCHES])
def test_serving_bytes_on_png_equals_serving_default(exported, name):
    assert_outputs_equal(fresh_outputs(exported, name, "bytes"), fresh_outputs(exported, name, "default"), name)


def test_empty_batch_gives_empty_outputs(exported):
    out = fresh_outputs(exported, "b0_128x128", "default")
    assert {k: v.shape for k, v in out.items()} == {
        "boxes": (0, 100, 4), "scores": (0, 100), "labels": (0, 100), "num_detections": (0,)}


def test_predict_request_round_trip(exported):
    pytest.importorskip("tensorflow_serving.apis.predict_pb2",
                        reason="tensorflow-serving-api is not installed (pip install tensorflow-serving-api)")
    from tensorflow_serving.apis import predict_pb2

    x = exported["inputs"]["b3_128x192"]
    request = predict_pb2.PredictRequest()
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
    back = tf.make_ndarray(request.inputs["images"])
    assert back.dtype == np.uint8 and np.array_equal(back, x)
    # the fresh process ran the request's tensor through the export and its outputs through a PredictResponse
    assert int(exported["fresh"]["request_images_equal"]) == 1
    for name, *_ in BATCHES:
        assert_outputs_equal(fresh_outputs(exported, name, "request"), exported["expected"][name], name)


def saved_model_cli():
    for candidate in (pathlib.Path(sys.executable).parent / "saved_model_cli", shutil.which("saved_model_cli")):
        if candidate and pathlib.Path(candidate).is_file():
            return str(candidate)
    return None


@pytest.mark.skipif(saved_model_cli() is None, reason="saved_model_cli (installed with tensorflow) not found")
def test_saved_model_cli_lists_both_signatures(exported):
    proc = subprocess.run([saved_model_cli(), "show", "--dir", str(exported["path"]), "--all"],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout
    default = text.split("signature_def['serving_default']")[1]
    encoded = text.split("signature_def['serving_bytes']")[1]
    for section, dtype in ((default.split("signature_def[")[0], "DT_UINT8"), (encoded.split("signature_def[")[0], "DT_STRING")):
        assert "inputs['images']" in section and dtype in section
        for key in OUTPUT_KEYS:
            assert f"outputs['{key}']" in section
    assert "shape: (-1, -1, -1, 3)" in default


def test_decode_batch_pads_smaller_images_at_the_bottom_right_with_the_pad_value():
    a = make_images(1, 16, 24, seed=1)[0]
    b = make_images(1, 20, 12, seed=2)[0]
    value = (123.5, 116.25, 103.5)
    batch, sizes = _decode_batch(tf.stack([tf.io.encode_png(a), tf.io.encode_png(b)]), value)
    batch = batch.numpy()
    assert batch.shape == (2, 20, 24, 3) and batch.dtype == np.float32
    np.testing.assert_array_equal(sizes.numpy(), [[16, 24], [20, 12]])
    np.testing.assert_array_equal(batch[0, :16], a)
    np.testing.assert_array_equal(batch[1, :, :12], b)
    assert np.all(batch[0, 16:] == value) and np.all(batch[1, :, 12:] == value)
    empty, empty_sizes = _decode_batch(tf.zeros([0], tf.string))
    assert empty.shape == (0, 0, 0, 3) and empty_sizes.shape == (0, 2)


def test_image_sizes_are_read_from_the_header_and_large_images_refused_before_decoding():
    """serving_bytes reads each image's size from its PNG / JPEG / GIF / BMP header and refuses more than max_pixels
    before decoding (a 48 KB PNG can declare 20000 x 20000 pixels)."""
    import io

    import cv2
    from PIL import Image

    image = make_images(1, 37, 53, seed=6)[0]
    encoded = {ext: cv2.imencode(ext, image)[1].tobytes() for ext in (".png", ".jpg", ".bmp")}
    gif = io.BytesIO()
    Image.fromarray(image).save(gif, format="GIF")
    encoded[".gif"] = gif.getvalue()
    for ext, data in encoded.items():
        assert _header_size(tf.constant(data)).numpy().tolist() == [37, 53], ext
    assert _header_size(tf.constant(b"not an image")).numpy().tolist() == [0, 0]
    batch = tf.constant([encoded[".png"], encoded[".jpg"]])
    images, sizes = _decode_batch(batch, max_pixels=37 * 53)
    assert images.shape == (2, 37, 53, 3) and sizes.numpy().tolist() == [[37, 53], [37, 53]]
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels=1000"):
        _decode_batch(batch, max_pixels=1000)
    # a header that lies: 20000 x 20000 declared in a few bytes is refused without allocating 1.2 GB
    bomb = bytearray(encoded[".png"])
    bomb[16:24] = (20000).to_bytes(4, "big") * 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="max_pixels"):
        _decode_batch(tf.constant([bytes(bomb)]))


def test_serving_bytes_clips_each_images_boxes_to_its_own_size(exported):
    """Images of different sizes in one request: each image's boxes stay inside it, and its detections equal those
    of the list form of `predict` and of the image alone (each image is detected at its own size)."""
    model = exported["model"]
    served = tf.saved_model.load(str(exported["path"]))
    a = make_images(1, 96, 128, seed=3)[0]
    b = make_images(1, 160, 96, seed=4)[0]
    out = served.signatures["serving_bytes"](images=tf.stack([tf.io.encode_png(a), tf.io.encode_png(b)]))
    listed = model.predict([a, b], verbose=0)
    for i, (image, expected) in enumerate(zip((a, b), listed)):
        k = int(out["num_detections"][i])
        assert k == int(expected["num_detections"])
        boxes = out["boxes"][i, :k].numpy()
        assert np.all(boxes[:, 2] <= image.shape[1]) and np.all(boxes[:, 3] <= image.shape[0])
        np.testing.assert_allclose(boxes, expected["boxes"][:k], atol=1e-3)
        alone = served.signatures["serving_default"](images=tf.constant(image[None]))
        np.testing.assert_allclose(out["scores"][i].numpy(), alone["scores"][0].numpy(), atol=ATOL)
        np.testing.assert_allclose(boxes, alone["boxes"][0, :k].numpy(), atol=ATOL)


def test_class_names_travel_in_the_export(tmp_path):
    """The export holds the model's class names, and `label_names=True` serves each detection's name."""
    model = make_model()
    model.class_names = ["disc", "square", "star"]
    path = saved_model(model, tmp_path / "named", label_names=True)
    served = tf.saved_model.load(str(path))
    assert [n.decode() for n in served.class_names[0].numpy()] == ["disc", "square", "star"]
    images = make_images(2, 128, 128, seed=5)
    out = served.signatures["serving_default"](images=tf.constant(images))
    labels, names = out["labels"].numpy(), out["label_names"].numpy()
    assert (labels >= 0).any() and (labels < 0).any()
    assert all(n.decode() == (model.class_names[l] if l >= 0 else "") for n, l in zip(names.ravel(), labels.ravel()))


def test_argument_checks(tmp_path):
    with pytest.raises(TypeError, match="`model` must be a kerasdet Detector"):
        saved_model(keras.Sequential(), tmp_path / "a")
    unbuilt = RetinaNet.compact(num_classes=2, width=0.25)
    with pytest.raises(ValueError, match="`model` is not built"):
        saved_model(unbuilt, tmp_path / "b")
    occupied = tmp_path / "c"
    occupied.mkdir()
    (occupied / "file").write_text("x")
    unbuilt.build_for_size(64)
    with pytest.raises(FileExistsError, match="`path` .* overwrite=True"):
        saved_model(unbuilt, occupied)
    with pytest.raises(TypeError, match="`path` must be a str or pathlib.Path"):
        saved_model(unbuilt, 3)


# -- TF Serving -----------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_available(rest_port, name, server, deadline_s=120):
    url = f"http://127.0.0.1:{rest_port}/v1/models/{name}"
    end = time.time() + deadline_s
    while time.time() < end:
        if server.poll() is not None:
            raise AssertionError(f"tensorflow_model_server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                states = [v["state"] for v in json.load(response).get("model_version_status", [])]
                if "AVAILABLE" in states:
                    return
        except (urllib.error.URLError, ConnectionError, OSError, ValueError):
            pass
        time.sleep(1)
    raise AssertionError(f"model {name} not AVAILABLE at {url} after {deadline_s} s")


def _rest_predict(rest_port, name, payload):
    request = urllib.request.Request(
        f"http://127.0.0.1:{rest_port}/v1/models/{name}:predict", data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as response:
        outputs = json.load(response)["outputs"]
    return {k: np.asarray(v, np.int32 if k in ("labels", "num_detections") else np.float32) for k, v in outputs.items()}


@pytest.mark.skipif(shutil.which("tensorflow_model_server") is None,
                    reason="tensorflow_model_server is not on PATH (TF Serving binary; install it to run this test)")
def test_tensorflow_model_server_rest_and_grpc(exported):
    name = "detector"
    base = exported["path"].parent  # .../detector with version folder 1
    grpc_port, rest_port = _free_port(), _free_port()
    server = subprocess.Popen(
        ["tensorflow_model_server", f"--port={grpc_port}", f"--rest_api_port={rest_port}", f"--model_name={name}",
         f"--model_base_path={base}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_available(rest_port, name, server)
        x = exported["inputs"]["b3_128x192"]
        expected = exported["expected"]["b3_128x192"]
        rest = _rest_predict(rest_port, name, {"signature_name": "serving_default", "inputs": {"images": x.tolist()}})
        assert_outputs_equal(rest, expected, "REST serving_default")
        pngs = [{"b64": base64.b64encode(tf.io.encode_png(image).numpy()).decode()} for image in x]
        rest = _rest_predict(rest_port, name, {"signature_name": "serving_bytes", "inputs": {"images": pngs}})
        assert_outputs_equal(rest, expected, "REST serving_bytes")

        grpc = pytest.importorskip("grpc", reason="grpcio is not installed")
        apis = pytest.importorskip("tensorflow_serving.apis.prediction_service_pb2_grpc",
                                   reason="tensorflow-serving-api is not installed")
        from tensorflow_serving.apis import predict_pb2

        request = predict_pb2.PredictRequest()
        request.model_spec.name = name
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(x))
        with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            response = apis.PredictionServiceStub(channel).Predict(request, timeout=120)
        assert_outputs_equal({k: tf.make_ndarray(v) for k, v in response.outputs.items()}, expected, "gRPC")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def test_eight_concurrent_callers_get_the_serial_outputs(exported):
    # TF Serving calls one loaded model from many threads: the outputs must not depend on who else is calling
    import concurrent.futures

    loaded = tf.saved_model.load(str(exported["path"]))
    default, encoded = loaded.signatures["serving_default"], loaded.signatures["serving_bytes"]
    names = [name for name, b, _, _ in BATCHES if b > 0]
    pngs = {name: tf.stack([tf.io.encode_png(image) for image in exported["inputs"][name]]) for name in names}

    def call(job):
        kind, name = job
        out = default(images=tf.constant(exported["inputs"][name])) if kind == "default" else encoded(
            images=pngs[name])
        return {k: v.numpy() for k, v in out.items()}

    jobs = [(kind, name) for kind in ("default", "bytes") for name in names]
    serial = {job: call(job) for job in jobs}
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        concurrent = list(pool.map(call, jobs * 3))  # 8 threads, each job three times, interleaved
    for job, out in zip(jobs * 3, concurrent):
        for key, value in serial[job].items():
            np.testing.assert_array_equal(out[key], value, err_msg=f"{job} {key}")
