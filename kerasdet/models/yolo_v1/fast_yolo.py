"""Fast YOLO (Redmon et al., 2016, §2.4): YOLO with 9 convolutional layers of fewer filters."""

from __future__ import annotations

import keras

from kerasdet.models.yolo_v1.yolo_v1 import FAST_YOLO_LAYERS, YOLOv1


@keras.saving.register_keras_serializable(package="kerasdet")
class FastYOLO(YOLOv1):
    """Fast YOLO: the YOLO model and loss (`YOLOv1`) on 9 convolutional layers (16 .. 1024 filters, darknet's
    tiny-yolo) and no hidden fully connected layer, "designed to push the boundaries of fast object detection".

    Example:
        >>> FastYOLO.paper_config(num_classes=20)(tf.zeros([1, 448, 448, 3]))["predictions"].shape
        TensorShape([1, 49, 30])
    """

    @classmethod
    def paper_config(cls, num_classes=20, **kwargs):
        """448 px, the 9 convolutions (16, 32, 64, 128, 256, 512 each with a max pool; 1024, 1024, 256), S = 7, B = 2,
        then the output layer."""
        defaults = dict(input_size=448, conv_layers=FAST_YOLO_LAYERS, hidden_units=None)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, **defaults)

    @classmethod
    def compact(cls, num_classes, width=0.5, **kwargs):
        """Fast YOLO at 256 px for 2 CPU cores: the 9 convolutions at `width` (0.5) with batch norm, one max pool
        fewer (an 8 x 8 grid at 256 px, the paper's 7 x 7 at 448 scaled)."""
        layers = list(FAST_YOLO_LAYERS)
        del layers[len(layers) - 1 - layers[::-1].index("M")]  # the last max pool (after the 512-filter conv)
        defaults = dict(input_size=256, conv_layers=tuple(layers), hidden_units=None, batch_norm=True, width=width)
        defaults.update(kwargs)
        return cls(num_classes=num_classes, **defaults)
