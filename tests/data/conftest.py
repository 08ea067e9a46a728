"""Shared fixtures for the data tests: a few small synthetic samples."""

import pytest

from kerasdet.data import synthetic


@pytest.fixture(scope="session")
def shapes_samples():
    """Six synthetic (image, targets) numpy pairs at 96x96 (with masks and keypoints)."""
    return [synthetic.render(i, image_size=96, seed=21) for i in range(6)]
