"""Loading a model in another precision: the layers compute in it, weights stay float32, detections agree."""

import numpy as np
import pytest

import kerasdet
from kerasdet.zoo import precision as precision_module
from kerasdet.zoo.precision import resolve_precision, with_precision

NAME = "retinanet_resnet18_shapes"


def test_resolve_precision(monkeypatch):
    assert resolve_precision("float32") == "float32" and resolve_precision("mixed_float16") == "mixed_float16"
    monkeypatch.setattr(precision_module, "_gpu_has_bfloat16", lambda: False)
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx2", "avx512f"})
    assert resolve_precision("auto") == "float32"
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert resolve_precision("auto") == "mixed_bfloat16"
    monkeypatch.setattr(precision_module, "_cpu_flags", lambda: {"amx_bf16", "amx_tile"})
    assert resolve_precision("auto") == "mixed_bfloat16"
    for bad in ("bfloat16", "fp16", None, 16):
        with pytest.raises(ValueError, match="`precision`"):
            resolve_precision(bad)


def test_with_precision_rewrites_every_layer_policy_and_nothing_else():
    card = kerasdet.zoo.card(NAME)
    config = with_precision(card["config"], "mixed_bfloat16")
    text, original = repr(config), repr(card["config"])
    assert "'name': 'float32'" in original and "'name': 'float32'" not in text
    assert text.replace("mixed_bfloat16", "float32") == original  # only the policies changed
    assert repr(kerasdet.zoo.card(NAME)["config"]) == original  # the card itself is untouched


@pytest.mark.parametrize("policy", ["mixed_bfloat16", "mixed_float16"])
def test_a_zoo_model_loads_in_another_precision_and_detects_the_same_objects(policy):
    from kerasdet.data import synthetic

    images = synthetic.generate(4, 256, seed=synthetic.split_seed("val"))[0]
    reference = kerasdet.zoo.load(NAME).predict(images, verbose=0)
    model = kerasdet.zoo.load(NAME, precision=policy)
    assert model.dtype_policy.name == policy
    compute = {layer.dtype_policy.compute_dtype for layer in model._flatten_layers() if layer.weights}
    assert compute == {policy.split("_")[1]}  # every layer with weights computes in the new type
    assert all(w.dtype == "float32" for w in model.weights)  # weights stay float32
    out = model.predict(images, verbose=0)
    assert out["boxes"].dtype == np.float32 and out["scores"].dtype == np.float32
    # the confident detections are found again, at nearly the same place
    for i in range(len(images)):
        confident = reference["scores"][i] > 0.5
        for box, label in zip(reference["boxes"][i][confident], reference["labels"][i][confident]):
            same = out["labels"][i] == label
            assert same.any()
            others = out["boxes"][i][same]
            x1 = np.maximum(box[0], others[:, 0]); y1 = np.maximum(box[1], others[:, 1])
            x2 = np.minimum(box[2], others[:, 2]); y2 = np.minimum(box[3], others[:, 3])
            inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
            union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (
                others[:, 3] - others[:, 1]) - inter
            assert (inter / union).max() > 0.9


def test_precision_is_refused_where_it_cannot_apply(tmp_path):
    with pytest.raises(ValueError, match="`precision`"):
        kerasdet.zoo.load(NAME, precision="half")
    (tmp_path / "saved_model.pb").write_bytes(b"")
    with pytest.raises(ValueError, match="`precision` apply to zoo models and run folders"):
        kerasdet.load(str(tmp_path), precision="mixed_bfloat16")
