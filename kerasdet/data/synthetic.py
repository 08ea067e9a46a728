"""The embedded dataset: coloured shapes on cluttered backgrounds, generated from a seed.

Every family trains, evaluates and demonstrates on it with no download (DESIGN.md section 5).
Each image holds 1 to 12 objects of 10 classes that differ by outline only (colours are
drawn independently of the class), from about 8 px across to 60% of the image, so that COCO's
small, medium and large ranges all have objects. Objects occlude each other by up to about
half of their area; masks are what remains visible, boxes are the tight boxes of the visible
masks, and objects left mostly hidden are dropped. Backgrounds are coloured gradients with
low-frequency noise and stripe or checker textures, overlaid with clutter (lines, open arcs,
zigzags, specks) that belongs to no class. Stars carry five keypoints (their tips).

Image ``i`` of a seed depends only on ``(seed, i)``: `generate(10)` is the first ten images
of `generate(1000)`, and `dataset` can render images in parallel in any order.

Example:
    >>> from kerasdet.data import synthetic
    >>> images, coco = synthetic.generate(4, image_size=128, seed=0)
    >>> images.shape, len(coco["images"])
    ((4, 128, 128, 3), 4)
    >>> ds = synthetic.dataset("train", 1000)          # tf.data of (image, targets)
    >>> gt = synthetic.as_coco("val", 500)             # for pycocotools
"""

import numpy as np
import cv2
import tensorflow as tf

from kerasdet.data import _masks
from kerasdet.data import _shapes
from kerasdet.data import coco

CLASS_NAMES = ("circle", "ring", "crescent", "triangle", "square", "rectangle", "hexagon",
               "star", "cross", "arrow")

# (node, parent) in parents-first order; every class is a leaf, inner nodes group them.
_TREE = (
    ("round", None), ("polygon", None),
    ("convex_polygon", "polygon"), ("concave_polygon", "polygon"),
    ("quadrilateral", "convex_polygon"),
    ("circle", "round"), ("ring", "round"), ("crescent", "round"),
    ("triangle", "convex_polygon"), ("square", "quadrilateral"), ("rectangle", "quadrilateral"),
    ("hexagon", "convex_polygon"),
    ("star", "concave_polygon"), ("cross", "concave_polygon"), ("arrow", "concave_polygon"),
)

KEYPOINT_CLASS = "star"
KEYPOINT_NAMES = ("tip_1", "tip_2", "tip_3", "tip_4", "tip_5")
# tip_1 is the topmost tip, the others follow clockwise on screen. A horizontal flip keeps the
# topmost tip and reverses the direction, so flipped keypoint k comes from keypoint FLIP_MAP[k].
KEYPOINT_FLIP_MAP = (0, 4, 3, 2, 1)
KEYPOINT_SKELETON = ((1, 2), (2, 3), (3, 4), (4, 5), (5, 1))  # 1-based, as in COCO
# OKS sigma of each tip, fixed here so that keypoint AP does not depend on who evaluates (COCO's
# `kpt_oks_sigmas` field of the category, read by kerasdet.metrics.coco_evaluate)
KEYPOINT_OKS_SIGMAS = (0.035,) * len(KEYPOINT_NAMES)

SPLIT_SEEDS = {"train": 1001, "val": 2002, "test": 3003}

MIN_SIZE = 8.0            # smallest object extent in pixels
MAX_SIZE_FRACTION = 0.8   # largest extent (circumscribed diameter) over the image side
MAX_OBJECTS = 12
MIN_VISIBLE_FRACTION = 0.5  # objects are occluded/truncated by at most half of their area
MIN_INSIDE_FRACTION = 0.75  # at most a quarter of an object may leave the image
MIN_VISIBLE_AREA = 10     # pixels
_PLACEMENT_TRIES = 25
_ORDER_JITTER = 1.5
_LARGE_MIX = 0.35
_LARGE_FROM = 0.3


def class_names():
    """Returns the class names in label order (label 0 first; COCO category id = label + 1)."""
    return list(CLASS_NAMES)


def hierarchy():
    """Returns the class hierarchy as ``(names, parents)`` for a YOLO9000 WordTree.

    Nodes come parents first; ``parents[i]`` is the index of node i's parent or -1 for a root.
    Every class name is a leaf; `class_node_indices` maps labels to node indices.

    Example:
        >>> names, parents = hierarchy()
        >>> names[parents[names.index("square")]]
        'quadrilateral'
    """
    names = [name for name, _ in _TREE]
    parents = [-1 if parent is None else names.index(parent) for _, parent in _TREE]
    return names, parents


def class_node_indices():
    """Returns, for every label, the index of its node in `hierarchy()`'s names."""
    names, _ = hierarchy()
    return [names.index(name) for name in CLASS_NAMES]


def keypoint_names():
    """Returns ``{class name: keypoint names}`` for the classes that have keypoints."""
    return {KEYPOINT_CLASS: list(KEYPOINT_NAMES)}


def keypoint_flip_map():
    """Returns the permutation that a horizontal flip applies to the star's keypoints."""
    return list(KEYPOINT_FLIP_MAP)


def categories():
    """Returns the COCO ``categories`` list (ids 1..10, supercategory = parent node; the star's keypoint
    names, skeleton and OKS sigmas)."""
    names, parents = hierarchy()
    result = []
    for label, name in enumerate(CLASS_NAMES):
        node = names.index(name)
        category = {"id": label + 1, "name": name, "supercategory": names[parents[node]]}
        if name == KEYPOINT_CLASS:
            category["keypoints"] = list(KEYPOINT_NAMES)
            category["skeleton"] = [list(edge) for edge in KEYPOINT_SKELETON]
            category["kpt_oks_sigmas"] = list(KEYPOINT_OKS_SIGMAS)
        result.append(category)
    return result


def split_seed(split):
    """Returns the fixed seed of a split ("train", "val" or "test")."""
    if split not in SPLIT_SEEDS:
        raise ValueError(
            f"split must be one of {sorted(SPLIT_SEEDS)}; received split={split!r}")
    return SPLIT_SEEDS[split]


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int; received {name}={value!r} "
                        f"of type {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}; received {name}={value}")
    return int(value)


def _check_args(num_images, image_size, seed):
    num_images = _check_count("num_images", num_images, 0)
    image_size = _check_count("image_size", image_size, 32)
    seed = _check_count("seed", seed, 0)
    return num_images, image_size, seed


# ---------------------------------------------------------------------------------------------
# Rendering


def _random_colour(rng):
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(60, 255), rng.uniform(60, 255)]]],
                   np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def _background(rng, size):
    coords = np.arange(size, dtype=np.float32) / size
    xx, yy = coords[None, :], coords[:, None]
    angle = rng.uniform(0, 2 * np.pi)
    t = xx * np.float32(np.cos(angle)) + yy * np.float32(np.sin(angle))
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    c1, c2 = rng.uniform(0, 255, 3).astype(np.float32), rng.uniform(0, 255, 3).astype(np.float32)
    cells = int(rng.integers(3, 9))
    blotches = rng.standard_normal((cells, cells, 3), dtype=np.float32) * np.float32(
        rng.uniform(10, 35))
    image = cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    image += c1
    image += t[..., None] * (c2 - c1)
    pattern = rng.integers(0, 3)
    if pattern == 0:  # stripes
        a = rng.uniform(0, np.pi)
        period = rng.uniform(0.02, 0.12)
        phase = 2 * np.pi / period
        wave = np.sin(xx * np.float32(phase * np.cos(a)) + yy * np.float32(phase * np.sin(a)))
        image += wave[..., None] * rng.uniform(-25, 25, 3).astype(np.float32)
    elif pattern == 1:  # checker
        cell = rng.uniform(0.03, 0.15)
        check = (np.floor(xx / cell) + np.floor(yy / cell)) % 2
        image += (check[..., None] - np.float32(0.5)) * rng.uniform(-40, 40, 3).astype(np.float32)
    return image


def _clutter(rng, image, size):
    """Draws distractors that belong to no class: lines, zigzags, open arcs, specks."""
    count = int(rng.integers(4, 16) * max(1.0, (size / 256.0) ** 2))
    max_thick = max(1, size // 128)
    for _ in range(count):
        colour = tuple(float(c) for c in _random_colour(rng))
        kind = rng.integers(0, 4)
        thick = int(rng.integers(1, max_thick + 2))
        if kind == 0:
            p, q = rng.integers(0, size, 2), rng.integers(0, size, 2)
            cv2.line(image, (int(p[0]), int(p[1])), (int(q[0]), int(q[1])), colour, thick)
        elif kind == 1:
            steps = int(rng.integers(3, 7))
            start = rng.uniform(0, size, 2)
            pts = start + np.cumsum(rng.normal(0, size * 0.08, (steps, 2)), axis=0)
            cv2.polylines(image, [pts.astype(np.int32)], False, colour, thick)
        elif kind == 2:
            centre = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            axes = (int(rng.integers(6, size // 3)), int(rng.integers(6, size // 3)))
            start = float(rng.uniform(0, 360))
            sweep = float(rng.uniform(40, 200))
            cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), start, start + sweep,
                        colour, thick)
        else:
            n = int(rng.integers(5, 30))
            ys, xs = rng.integers(0, size, n), rng.integers(0, size, n)
            image[ys, xs] = colour


def _rasterise(shape, frac_x, frac_y):
    """Fills a shape whose centre sits at (frac_x, frac_y) of a patch origin.

    Returns (mask uint8 [h, w], x0, y0): the patch and the integer offset of its top-left
    corner relative to the integer part of the centre.
    """
    pts_all = np.concatenate(shape.outer, axis=0)
    x0 = int(np.floor(pts_all[:, 0].min() + frac_x)) - 1
    y0 = int(np.floor(pts_all[:, 1].min() + frac_y)) - 1
    x1 = int(np.ceil(pts_all[:, 0].max() + frac_x)) + 1
    y1 = int(np.ceil(pts_all[:, 1].max() + frac_y)) + 1
    patch = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([frac_x - x0 - 0.5, frac_y - y0 - 0.5])

    def contour(pts):
        return np.round((pts + offset) * 16.0).astype(np.int32)

    for pts in shape.outer:
        cv2.fillPoly(patch, [contour(pts)], 1, lineType=cv2.LINE_8, shift=4)
    for pts in shape.holes:
        cv2.fillPoly(patch, [contour(pts)], 0, lineType=cv2.LINE_8, shift=4)
    return patch, x0, y0


def _paint(rng, image, region, inside):
    """Paints an object into image[region] where `inside`, with contrast to what is there."""
    sub = image[region]
    under = sub[inside].mean(axis=0)
    best, best_dist = None, -1.0
    for _ in range(6):
        colour = _random_colour(rng)
        dist = float(np.linalg.norm(colour - under))
        if dist > best_dist:
            best, best_dist = colour, dist
        if dist > 90:
            break
    colour = best
    style = rng.integers(0, 5)
    if style <= 2:
        sub[inside] = colour
    else:
        h, w = inside.shape
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        proj = xx * np.cos(a) + yy * np.sin(a)
        other = np.clip(colour + rng.uniform(-80, 80, 3), 0, 255).astype(np.float32)
        if style == 3:  # gradient
            t = (proj - proj.min()) / max(float(proj.max() - proj.min()), 1e-6)
        else:  # stripes
            t = (np.sin(proj * rng.uniform(0.3, 1.2)) > 0).astype(np.float32)
        fill = colour + t[..., None] * (other - colour)
        sub[inside] = fill[inside]
    if rng.uniform() < 0.25 and inside.shape[0] > 4 and inside.shape[1] > 4:
        edge = inside & ~cv2.erode(inside.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        sub[edge] = np.clip(colour + rng.uniform(-120, 120, 3), 0, 255)


def _place(rng, patch, x0, y0, size, owner, visible, full_areas):
    """Tries random positions for a rasterised patch; returns (origin, inside, covered) or None."""
    h, w = patch.shape
    full = int(patch.sum())
    if full < MIN_VISIBLE_AREA:
        return None
    mask = patch.astype(bool)
    n = len(visible)
    for _ in range(_PLACEMENT_TRIES):
        # patch origin: (cx + x0, cy + y0) for an integer centre (cx, cy)
        cx = int(rng.integers(-x0 - w // 4, size - x0 - w + w // 4 + 1))
        cy = int(rng.integers(-y0 - h // 4, size - y0 - h + h // 4 + 1))
        ox, oy = cx + x0, cy + y0
        ix0, iy0 = max(ox, 0), max(oy, 0)
        ix1, iy1 = min(ox + w, size), min(oy + h, size)
        if ix1 <= ix0 or iy1 <= iy0:
            continue
        inside = mask[iy0 - oy:iy1 - oy, ix0 - ox:ix1 - ox]
        in_area = int(inside.sum())
        if in_area < MIN_INSIDE_FRACTION * full:
            continue
        under = owner[iy0:iy1, ix0:ix1][inside]
        covered = np.bincount(under + 1, minlength=n + 1)[1:]
        if n and np.any(visible - covered < MIN_VISIBLE_FRACTION * full_areas):
            continue
        return (cx, cy), (slice(iy0, iy1), slice(ix0, ix1)), inside, covered, in_area, full
    return None


def _keypoints(shape, centre, index, owner, size):
    """Absolute star tips with COCO visibility (2 visible, 1 occluded, 0 outside the image)."""
    tips = shape.keypoints + centre
    radius = float(np.linalg.norm(shape.keypoints, axis=1).max())
    step = min(1.5, 0.25 * radius)
    out = np.zeros((len(tips), 3), np.float32)
    for k, tip in enumerate(tips):
        if not (0 <= tip[0] < size and 0 <= tip[1] < size):
            continue
        direction = centre - tip
        probe = tip + step * direction / max(float(np.linalg.norm(direction)), 1e-6)
        px = int(np.clip(np.floor(probe[0]), 0, size - 1))
        py = int(np.clip(np.floor(probe[1]), 0, size - 1))
        # occluded only when an object painted later covers the tip
        visibility = 1 if owner[py, px] > index else 2
        out[k] = (tip[0], tip[1], visibility)
    return out


def render(index, image_size=256, seed=0):
    """Renders image `index` of the dataset with `seed`.

    Args:
        index: int >= 0.
        image_size: int >= 32, the side of the square image.
        seed: int >= 0.

    Returns:
        (image uint8 [S, S, 3], targets) with targets a dict of numpy arrays: "boxes" float32
        [M, 4] xyxy, "labels" int32 [M], "masks" uint8 [M, S, S] (visible part of each object),
        "keypoints" float32 [M, 5, 3] (x, y, COCO visibility; zero rows for non-stars).

    Example:
        >>> image, targets = render(0, image_size=128)
        >>> image.shape, targets["masks"].shape[1:]
        ((128, 128, 3), (128, 128))
    """
    index = _check_count("index", index, 0)
    _, image_size, seed = _check_args(0, image_size, seed)
    return _render(seed, index, image_size)


def _sample_log_sizes(rng, size, count):
    """Object extents: log-uniform from MIN_SIZE, mixed with a uniform part biased to large."""
    hi = MAX_SIZE_FRACTION * size
    log_uniform = rng.uniform(np.log(MIN_SIZE), np.log(hi), count)
    linear = np.log(rng.uniform(_LARGE_FROM * size, hi, count))
    return np.where(rng.uniform(0, 1, count) < _LARGE_MIX, linear, log_uniform)


def _render(seed, index, size, single=False):
    """Image `index` of `seed`; with `single`, a classification image instead: one object of class
    `index % 10`, its size drawn as the detection images' objects are, on the same backgrounds and clutter."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index] + ([1] if single else [])))
    image = _background(rng, size)
    _clutter(rng, image, size)
    owner = np.full((size, size), -1, np.int16)
    visible = np.zeros((0,), np.int64)
    full_areas = np.zeros((0,), np.int64)
    placed = []  # (label, shape, centre, region)
    if single:
        count, labels = 1, np.array([index % len(CLASS_NAMES)])
        log_sizes = _sample_log_sizes(rng, size, 1)
    else:
        count = int(rng.integers(1, MAX_OBJECTS + 1))
        labels = rng.integers(0, len(CLASS_NAMES), count)
        log_sizes = _sample_log_sizes(rng, size, count)
    # mostly large objects first (behind), with enough shuffling that large ones also occlude
    order = np.argsort(-(log_sizes + rng.uniform(0, _ORDER_JITTER, count)))
    for label, log_size in zip(labels[order], log_sizes[order]):
        label = int(label)
        radius = 0.5 * float(np.exp(log_size))
        shape = _shapes.BUILDERS[label](radius, rng.uniform(0, 2 * np.pi), rng)
        frac_x, frac_y = rng.uniform(0, 1, 2)
        patch, x0, y0 = _rasterise(shape, frac_x, frac_y)
        result = _place(rng, patch, x0, y0, size, owner, visible, full_areas)
        if result is None:
            continue
        (cx, cy), region, inside, covered, in_area, full = result
        _paint(rng, image, region, inside)
        owner[region][inside] = len(placed)
        visible = np.append(visible - covered, in_area)
        full_areas = np.append(full_areas, full)
        placed.append((label, shape, np.array([cx + frac_x, cy + frac_y]), region))
    if rng.uniform() < 0.5:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.0))
    image += rng.standard_normal(image.shape, dtype=np.float32) * rng.uniform(2, 8)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    return image, _targets(placed, owner, size)


def _targets(placed, owner, size):
    boxes, labels, masks, keypoints = [], [], [], []
    for index, (label, shape, centre, region) in enumerate(placed):
        local = owner[region] == index
        if int(local.sum()) < MIN_VISIBLE_AREA:
            continue
        mask = np.zeros((size, size), np.uint8)
        mask[region] = local
        box = _masks.mask_tight_box(mask)
        boxes.append(box)
        labels.append(label)
        masks.append(mask)
        if shape.keypoints is not None:
            keypoints.append(_keypoints(shape, centre, index, owner, size))
        else:
            keypoints.append(np.zeros((len(KEYPOINT_NAMES), 3), np.float32))
    m = len(boxes)
    return {
        "boxes": np.array(boxes, np.float32).reshape(m, 4),
        "labels": np.array(labels, np.int32).reshape(m),
        "masks": np.array(masks, np.uint8).reshape(m, size, size),
        "keypoints": np.array(keypoints, np.float32).reshape(m, len(KEYPOINT_NAMES), 3),
    }


# ---------------------------------------------------------------------------------------------
# COCO export and tf.data


def _coco_dict(samples, image_size, seed):
    cats = categories()
    images, annotations = [], []
    for i, targets in enumerate(samples):
        image_id = i + 1
        images.append({"id": image_id, "file_name": f"{image_id:06d}.png",
                       "height": image_size, "width": image_size})
        for j in range(targets["labels"].shape[0]):
            annotations.append(coco._annotation(targets, j, image_id, len(annotations) + 1,
                                                cats[int(targets["labels"][j])],
                                                keypoint_decimals=3))
    return {
        "info": {"description": "kerasdet synthetic shapes", "seed": seed,
                 "image_size": image_size},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": cats,
    }


def generate(num_images, image_size=256, seed=0):
    """Generates `num_images` images and their COCO ground truth.

    Args:
        num_images: int >= 0.
        image_size: int >= 32, side of the square images.
        seed: int >= 0; the same seed gives identical bytes.

    Returns:
        (images uint8 [N, S, S, 3], coco dict) with image ids 1..N in order, category id =
        label + 1, ``area`` = visible mask area, segmentation as compressed RLE, and keypoints
        on star annotations.

    Example:
        >>> images, coco = generate(2, image_size=64, seed=3)
        >>> coco["images"][1]["id"]
        2
    """
    num_images, image_size, seed = _check_args(num_images, image_size, seed)
    images = np.zeros((num_images, image_size, image_size, 3), np.uint8)
    samples = []
    for i in range(num_images):
        images[i], targets = _render(seed, i, image_size)
        samples.append(targets)
    return images, _coco_dict(samples, image_size, seed)


def as_coco(split, num_images, image_size=256):
    """Returns the COCO ground-truth dict of a split (same images as `dataset`)."""
    seed = split_seed(split)
    num_images, image_size, seed = _check_args(num_images, image_size, seed)
    samples = (_render(seed, i, image_size)[1] for i in range(num_images))
    return _coco_dict(samples, image_size, seed)


def dataset(split, num_images, image_size=256, with_masks=True, with_keypoints=True):
    """Returns a tf.data.Dataset of ``(image, targets)`` for a split, rendered on the fly.

    Args:
        split: "train", "val" or "test" (each has its own fixed seed, see `SPLIT_SEEDS`).
        num_images: int >= 0.
        image_size: int >= 32.
        with_masks: include ``targets["masks"]`` uint8 [M, S, S].
        with_keypoints: include ``targets["keypoints"]`` float32 [M, 5, 3].

    Returns:
        Unbatched dataset; image uint8 [S, S, 3], targets dict with "boxes" float32 [M, 4],
        "labels" int32 [M] and the optional keys above (batch with `pipeline.padded_batch`).
        Element i equals `render(i, image_size, split_seed(split))`.

    Example:
        >>> ds = dataset("val", 8, image_size=128)
        >>> image, targets = next(iter(ds))
    """
    seed = split_seed(split)
    num_images, image_size, seed = _check_args(num_images, image_size, seed)
    keys = ["boxes", "labels"] + (["masks"] if with_masks else []) + (
        ["keypoints"] if with_keypoints else [])
    dtypes = {"boxes": tf.float32, "labels": tf.int32, "masks": tf.uint8,
              "keypoints": tf.float32}
    shapes = {"boxes": [None, 4], "labels": [None], "masks": [None, image_size, image_size],
              "keypoints": [None, len(KEYPOINT_NAMES), 3]}

    def render_one(index):
        image, targets = _render(seed, int(index), image_size)
        return [image] + [targets[k] for k in keys]

    def load(index):
        outs = tf.numpy_function(render_one, [index], [tf.uint8] + [dtypes[k] for k in keys],
                                 stateful=False)
        image = tf.ensure_shape(outs[0], [image_size, image_size, 3])
        targets = {k: tf.ensure_shape(v, shapes[k]) for k, v in zip(keys, outs[1:])}
        return image, targets

    return tf.data.Dataset.range(num_images).map(
        load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ---------------------------------------------------------------------------------------------
# YOLO9000's experiment: detection labelled partly at parent nodes, plus classification-only images

#: the classes that YOLO9000's detection split names only at their parent node ("quadrilateral",
#: "concave_polygon"), as COCO names no ImageNet-only class: the classification images teach the leaves
PARENT_ONLY_CLASSES = ("square", "rectangle", "star", "cross", "arrow")


def detection_nodes(labels, parent_only=PARENT_ONLY_CLASSES):
    """WordTree node indices (`hierarchy()`) of class labels, the classes in `parent_only` named by their parent."""
    names, parents = hierarchy()
    unknown = sorted(set(parent_only) - set(CLASS_NAMES))
    if unknown:
        raise ValueError(f"`parent_only` names no class: {unknown}; classes are {list(CLASS_NAMES)}")
    table = np.array([parents[names.index(c)] if c in parent_only else names.index(c) for c in CLASS_NAMES], np.int32)
    labels = np.asarray(labels, np.int64)
    return np.where(labels >= 0, table[np.maximum(labels, 0)], -1).astype(np.int32)


def render_classification(index, image_size=256, seed=0):
    """Classification image `index` of `seed`: one object of class `index % 10`, of a size drawn as the detection
    images' objects are (so that what the leaves learn here carries over to detection's object sizes).

    Returns:
        (image uint8 [S, S, 3], targets) with "boxes" float32 [1, 4] all -1 (no box is given: the image names its
        class only) and "nodes" int32 [1], the class's leaf node in `hierarchy()`.
    """
    index = _check_count("index", index, 0)
    _, image_size, seed = _check_args(0, image_size, seed)
    image, _ = _render(seed, index, image_size, single=True)
    node = class_node_indices()[index % len(CLASS_NAMES)]
    return image, {"boxes": np.full((1, 4), -1.0, np.float32), "nodes": np.array([node], np.int32)}


def word_tree_datasets(split, num_detection, num_classification, image_size=256, parent_only=PARENT_ONLY_CLASSES):
    """YOLO9000's joint-training data on the embedded dataset, the analogue of the paper's COCO + ImageNet.

    - detection: the split's images (`dataset(split, ...)`) with targets {"boxes", "nodes"}: each object's
      WordTree node, the classes of `parent_only` named only by their parent;
    - classification: `num_classification` images of one object each, of every class in turn, targets
      {"boxes": all -1, "nodes": the leaf node} (`render_classification`, from the split's seed).

    Returns:
        (detection, classification) unbatched tf.data datasets.

    Example:
        >>> detection, classification = word_tree_datasets("train", 1000, 1000)
    """
    seed = split_seed(split)
    num_detection, image_size, seed = _check_args(num_detection, image_size, seed)
    num_classification = _check_count("num_classification", num_classification, 0)
    detection_nodes([], parent_only)  # checks the names now

    def detection_one(index):
        image, targets = _render(seed, int(index), image_size)
        return image, targets["boxes"], detection_nodes(targets["labels"], parent_only)

    def classification_one(index):
        image, targets = render_classification(int(index), image_size, seed)
        return image, targets["boxes"], targets["nodes"]

    def loader(fn):
        def load(index):
            image, boxes, nodes = tf.numpy_function(fn, [index], [tf.uint8, tf.float32, tf.int32], stateful=False)
            return (tf.ensure_shape(image, [image_size, image_size, 3]),
                    {"boxes": tf.ensure_shape(boxes, [None, 4]), "nodes": tf.ensure_shape(nodes, [None])})
        return load

    detection = tf.data.Dataset.range(num_detection).map(loader(detection_one), num_parallel_calls=tf.data.AUTOTUNE,
                                                         deterministic=True)
    classification = tf.data.Dataset.range(num_classification).map(
        loader(classification_one), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    return detection, classification
