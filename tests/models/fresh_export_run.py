"""Runs an exported detector's `serving_default` in a process that never imports kerasdet.

    python fresh_export_run.py SAVED_MODEL_DIR INPUTS.npz OUTPUTS.npz

INPUTS.npz holds `images` (uint8 [B, H, W, 3]) and, for families that take them, `rois`; OUTPUTS.npz gets the
signature's outputs by name, plus `signatures` and `kerasdet_imported`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# the export test's checker makes any `import kerasdet` in this process fail when it is imported
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "export"))
import fresh_process_check  # noqa: E402,F401

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402


def main(path, inputs_path, outputs_path):
    served = tf.saved_model.load(path)
    signature = served.signatures["serving_default"]
    with np.load(inputs_path) as f:
        kwargs = {k: tf.constant(f[k]) for k in f.files}
    out = {k: v.numpy() for k, v in signature(**kwargs).items()}
    out["signatures"] = np.asarray(sorted(served.signatures.keys()))
    out["kerasdet_imported"] = np.asarray(int(any(m == "kerasdet" or m.startswith("kerasdet.") for m in sys.modules)))
    np.savez(outputs_path, **out)


if __name__ == "__main__":
    main(*sys.argv[1:4])
