"""Geometry of the synthetic dataset's classes: outlines as float polygons around (0, 0).

Every function takes the object's radius ``r`` (half its extent in pixels), its rotation
``theta`` (radians) and a numpy Generator, and returns a `Shape`: filled outlines, holes cut
out of them, and keypoints (or None). Coordinates are continuous pixels relative to the centre.
Colour never enters here: classes differ by outline only.
"""

import collections

import numpy as np

Shape = collections.namedtuple("Shape", ["outer", "holes", "keypoints"])


def _rotate(points, theta):
    c, s = np.cos(theta), np.sin(theta)
    return points @ np.array([[c, s], [-s, c]])


def _regular(n, radius, theta, phase=0.0):
    angles = theta + phase + 2.0 * np.pi * np.arange(n) / n
    return np.stack([radius * np.cos(angles), radius * np.sin(angles)], axis=1)


def _round_vertices(r):
    return int(np.clip(2.0 * r, 16, 72))


def circle(r, theta, rng):
    return Shape([_regular(_round_vertices(r), r, theta)], [], None)


def ring(r, theta, rng):
    inner = r * rng.uniform(0.45, 0.62)
    n = _round_vertices(r)
    return Shape([_regular(n, r, theta)], [_regular(n, inner, theta)], None)


def crescent(r, theta, rng):
    n = _round_vertices(r)
    bite = r * rng.uniform(0.78, 0.95)
    shift = r * rng.uniform(0.38, 0.6)
    hole = _regular(n, bite, theta) + shift * np.array([np.cos(theta), np.sin(theta)])
    return Shape([_regular(n, r, theta)], [hole], None)


def triangle(r, theta, rng):
    angles = theta + np.deg2rad(np.array([0.0, 120.0, 240.0]) + rng.uniform(-12, 12, 3))
    radii = r * rng.uniform(0.88, 1.0, 3)
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    return Shape([pts], [], None)


def square(r, theta, rng):
    return Shape([_regular(4, r, theta, np.pi / 4)], [], None)


def rectangle(r, theta, rng):
    aspect = rng.uniform(1.8, 3.0)
    phi = np.arctan(1.0 / aspect)
    hx, hy = r * np.cos(phi), r * np.sin(phi)
    pts = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
    return Shape([_rotate(pts, theta)], [], None)


def hexagon(r, theta, rng):
    return Shape([_regular(6, r, theta)], [], None)


def star(r, theta, rng):
    """Five-pointed star; keypoints are its tips, topmost first, then clockwise on screen."""
    inner = r * rng.uniform(0.38, 0.5)
    angles = theta + np.pi * np.arange(10) / 5.0
    radii = np.where(np.arange(10) % 2 == 0, r, inner)
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    tips = pts[0::2]
    # With y pointing down, increasing atan2(y, x) runs clockwise on screen. The tips are
    # already in that order; start the cycle at the topmost (smallest y).
    start = int(np.argmin(tips[:, 1]))
    tips = np.roll(tips, -start, axis=0)
    return Shape([pts], [], tips)


def cross(r, theta, rng):
    w = r * rng.uniform(0.24, 0.36)
    pts = np.array([
        [w, -r], [w, -w], [r, -w], [r, w], [w, w], [w, r],
        [-w, r], [-w, w], [-r, w], [-r, -w], [-w, -w], [-w, -r]])
    return Shape([_rotate(pts, theta)], [], None)


def arrow(r, theta, rng):
    shaft = r * rng.uniform(0.14, 0.22)
    head = r * rng.uniform(0.5, 0.62)
    neck = r * rng.uniform(0.05, 0.3)
    pts = np.array([
        [-r, -shaft], [neck, -shaft], [neck, -head], [r, 0.0],
        [neck, head], [neck, shaft], [-r, shaft]])
    return Shape([_rotate(pts, theta)], [], None)


# Label order of the dataset (label = index, COCO category id = index + 1).
BUILDERS = (circle, ring, crescent, triangle, square, rectangle, hexagon, star, cross, arrow)
