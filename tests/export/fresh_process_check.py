"""Runs an exported SavedModel in a process that never imports kerasdet (used by test_saved_model.py).

    python fresh_process_check.py SAVED_MODEL_DIR INPUTS.npz OUTPUTS.npz

INPUTS.npz holds uint8 image batches `[B, H, W, 3]` under any names. For each batch NAME, OUTPUTS.npz gets
`NAME__default__KEY` (the `serving_default` outputs), `NAME__bytes__KEY` (`serving_bytes` on the same images
encoded as PNG) and, where tensorflow-serving-api is installed, `NAME__request__KEY`: the images put into a
`PredictRequest` with `tf.make_tensor_proto`, read back with `tf.make_ndarray`, run, and the outputs put
into a `PredictResponse` and read back the same way. It also stores `signatures` (their names),
`request_images_equal` (whether every request read back equal to its images; -1 without the package) and
`kerasdet_imported` (0 or 1). Any `import kerasdet` in this process raises ImportError.
"""

import importlib.abc
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


class _NoKerasdet(importlib.abc.MetaPathFinder):
    """Makes `import kerasdet` fail: the export must not need the library that wrote it."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname == "kerasdet" or fullname.startswith("kerasdet."):
            raise ImportError(f"{fullname} must not be imported by a process serving the export")
        return None


sys.meta_path.insert(0, _NoKerasdet())

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

try:
    from tensorflow_serving.apis import predict_pb2  # noqa: E402
except ImportError:
    predict_pb2 = None


def _numpy(outputs):
    return {k: v.numpy() for k, v in outputs.items()}


def _through_predict_messages(signature, images):
    """Images -> PredictRequest -> tensor -> signature -> PredictResponse -> arrays."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "detector"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    received = tf.make_ndarray(request.inputs["images"])
    same = received.dtype == images.dtype and np.array_equal(received, images)
    response = predict_pb2.PredictResponse()
    for key, value in signature(images=tf.constant(received)).items():
        response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
    return same, {key: tf.make_ndarray(proto) for key, proto in response.outputs.items()}


def main(saved_dir, inputs_path, outputs_path):
    served = tf.saved_model.load(saved_dir)
    default = served.signatures["serving_default"]
    encoded = served.signatures["serving_bytes"]
    results = {"signatures": np.array(sorted(served.signatures.keys()))}
    request_ok = []
    with np.load(inputs_path) as inputs:
        for name in inputs.files:
            images = inputs[name]
            for key, value in _numpy(default(images=tf.constant(images))).items():
                results[f"{name}__default__{key}"] = value
            pngs = tf.stack([tf.io.encode_png(image) for image in images]) if len(images) else tf.zeros([0], tf.string)
            for key, value in _numpy(encoded(images=pngs)).items():
                results[f"{name}__bytes__{key}"] = value
            if predict_pb2 is not None:
                same, outputs = _through_predict_messages(default, images)
                request_ok.append(same)
                for key, value in outputs.items():
                    results[f"{name}__request__{key}"] = value
    results["request_images_equal"] = np.array(int(all(request_ok)) if predict_pb2 is not None else -1)
    results["kerasdet_imported"] = np.array(int(any(m.split(".")[0] == "kerasdet" for m in sys.modules)))
    np.savez(outputs_path, **results)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
