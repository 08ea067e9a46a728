"""Slow plain-loop references for mask helpers (the definitions, written out).

- tight box of a mask: ``[min col, min row, max col + 1, max row + 1]`` over its nonzero pixels
  (continuous coordinates, DESIGN.md section 3), None when empty;
- COCO RLE counts: run lengths over the column-major scan, the first run counting zeros;
- YOLO normalised centre box of an xyxy box in a W x H image.
"""


def tight_box(mask):
    height = len(mask)
    width = len(mask[0]) if height else 0
    x1 = y1 = None
    x2 = y2 = None
    for i in range(height):
        for j in range(width):
            if mask[i][j]:
                x1 = j if x1 is None else min(x1, j)
                y1 = i if y1 is None else min(y1, i)
                x2 = j + 1 if x2 is None else max(x2, j + 1)
                y2 = i + 1 if y2 is None else max(y2, i + 1)
    if x1 is None:
        return None
    return [float(x1), float(y1), float(x2), float(y2)]


def rle_counts(mask):
    height = len(mask)
    width = len(mask[0]) if height else 0
    counts = []
    current = 0
    run = 0
    for j in range(width):
        for i in range(height):
            value = 1 if mask[i][j] else 0
            if value != current:
                counts.append(run)
                run = 0
                current = value
            run += 1
    counts.append(run)
    return counts


def yolo_line_values(box, width, height):
    x1, y1, x2, y2 = box
    return [(x1 + x2) / 2.0 / width, (y1 + y2) / 2.0 / height, (x2 - x1) / width,
            (y2 - y1) / height]
