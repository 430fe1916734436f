"""Drawing a confusion matrix as a BGR image (the ``confusion.png`` of ``realtime eval --report``).

Pure drawing with OpenCV: no files, no model; :mod:`realtime.tools.evaluate.report` encodes
and writes the image.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np


_FONT = cv2.FONT_HERSHEY_SIMPLEX
_LOW = np.array([255, 255, 255], np.float64)     # BGR: white for 0 % of the row
_HIGH = np.array([107, 48, 8], np.float64)       # BGR: dark blue for 100 % of the row


def _ascii(text: str) -> str:
    """OpenCV's Hershey fonts draw ASCII only."""
    return "".join(ch if 32 <= ord(ch) < 127 else "?" for ch in text)


def _fit(text: str, scale: float, thickness: int, max_width: int) -> str:
    """``text``, shortened with '..' until it is at most ``max_width`` pixels wide."""
    text = _ascii(text)
    if cv2.getTextSize(text, _FONT, scale, thickness)[0][0] <= max_width:
        return text
    while len(text) > 1 and cv2.getTextSize(text + "..", _FONT, scale, thickness)[0][0] > max_width:
        text = text[:-1]
    return text + ".."


def _shade(fraction: float) -> tuple[int, int, int]:
    colour = _LOW + (_HIGH - _LOW) * min(1.0, max(0.0, fraction))
    return tuple(int(round(c)) for c in colour)  # type: ignore[return-value]


def draw_confusion(matrix: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str],
                   title: str = "") -> np.ndarray:
    """A BGR image of a confusion matrix: rows true, columns predicted.

    Cells are shaded by their share of the row (the class's recall on the diagonal)
    and show their count; zeros are left blank. Cell and font sizes shrink with the
    number of classes (readable up to about 50); labels are cut to fit.
    """
    matrix = np.asarray(matrix)
    rows, cols = matrix.shape
    if rows != len(row_labels) or cols != len(col_labels):
        raise ValueError(f"matrix {matrix.shape} does not fit {len(row_labels)} x {len(col_labels)} labels")
    cell = int(np.clip(1100 // max(rows, cols, 1), 18, 64))
    scale = float(np.clip(cell / 64.0, 0.3, 0.6))      # label font
    thick = 1
    widest = max(cv2.getTextSize(_ascii(t), _FONT, scale, thick)[0][0]
                 for t in [*row_labels, *col_labels, "x"])
    label_px = int(np.clip(widest + 6, 40, 260))       # room for the row and column labels
    text_h = cv2.getTextSize("Ag", _FONT, scale, thick)[0][1]
    margin = 16
    title_scale = 0.6
    title_h = cv2.getTextSize("Ag", _FONT, title_scale, 1)[0][1] + 2 * margin if title else margin
    axis_h = text_h + 14                               # the "predicted" / "true" axis titles
    left = margin + axis_h + label_px + 6
    top = title_h + axis_h + label_px + 6
    bar_w = 16
    width = left + cols * cell + margin + bar_w + 60
    height = top + max(rows * cell, 40) + margin + 8
    width = max(width, cv2.getTextSize(_ascii(title), _FONT, title_scale, 1)[0][0] + 2 * margin)
    img = np.full((height, width, 3), 255, np.uint8)

    if title:
        cv2.putText(img, _ascii(title), (margin, margin + title_h // 2), _FONT, title_scale,
                    (0, 0, 0), 1, cv2.LINE_AA)

    totals = matrix.sum(axis=1, keepdims=True).astype(np.float64)
    share = np.divide(matrix, totals, out=np.zeros(matrix.shape, np.float64), where=totals > 0)
    count_scale = float(np.clip(cell / 70.0, 0.28, 0.6))
    for i in range(rows):
        for j in range(cols):
            x0, y0 = left + j * cell, top + i * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), _shade(share[i, j]), -1)
            count = int(matrix[i, j])
            if count:
                text = str(count)
                s = count_scale
                while s > 0.2 and cv2.getTextSize(text, _FONT, s, 1)[0][0] > cell - 4:
                    s -= 0.05
                (tw, th), _ = cv2.getTextSize(text, _FONT, s, 1)
                ink = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
                cv2.putText(img, text, (x0 + (cell - tw) // 2, y0 + (cell + th) // 2), _FONT, s,
                            ink, 1, cv2.LINE_AA)
    # grid, and a frame around the diagonal cells
    grid = (205, 205, 205)
    for i in range(rows + 1):
        cv2.line(img, (left, top + i * cell), (left + cols * cell, top + i * cell), grid, 1)
    for j in range(cols + 1):
        cv2.line(img, (left + j * cell, top), (left + j * cell, top + rows * cell), grid, 1)
    for i in range(min(rows, cols)):
        x0, y0 = left + i * cell, top + i * cell
        cv2.rectangle(img, (x0, y0), (x0 + cell, y0 + cell), (40, 40, 40), 1)
    if cols > rows:  # the "other" column(s): a separating line
        x = left + rows * cell
        cv2.line(img, (x, top), (x, top + rows * cell), (80, 80, 80), 2)

    # row labels (true), right-aligned next to the rows
    for i, label in enumerate(row_labels):
        text = _fit(label, scale, thick, label_px)
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        cv2.putText(img, text, (left - 6 - tw, top + i * cell + (cell + th) // 2), _FONT, scale,
                    (0, 0, 0), thick, cv2.LINE_AA)
    # column labels (predicted), written upwards above the columns
    strip = np.full((cell * cols, label_px, 3), 255, np.uint8)   # drawn sideways, then rotated
    for j, label in enumerate(col_labels):
        text = _fit(label, scale, thick, label_px - 4)
        (tw, th), _ = cv2.getTextSize(text, _FONT, scale, thick)
        y = j * cell + (cell + th) // 2                # rotated: y becomes x, x runs upwards
        cv2.putText(strip, text, (2, y), _FONT, scale, (0, 0, 0), thick, cv2.LINE_AA)
    img[top - 6 - label_px:top - 6, left:left + cols * cell] = cv2.rotate(
        strip, cv2.ROTATE_90_COUNTERCLOCKWISE)
    # axis titles
    axis_scale = float(np.clip(scale + 0.1, 0.4, 0.6))
    (tw, th), _ = cv2.getTextSize("predicted", _FONT, axis_scale, 1)
    cv2.putText(img, "predicted", (left + max(0, (cols * cell - tw) // 2), title_h + th), _FONT,
                axis_scale, (0, 0, 0), 1, cv2.LINE_AA)
    (tw2, _), _ = cv2.getTextSize("true", _FONT, axis_scale, 1)
    side = np.full((th + 8, tw2 + 4, 3), 255, np.uint8)
    cv2.putText(side, "true", (2, th + 2), _FONT, axis_scale, (0, 0, 0), 1, cv2.LINE_AA)
    side = cv2.rotate(side, cv2.ROTATE_90_COUNTERCLOCKWISE)
    y0 = top + max(0, (rows * cell - side.shape[0]) // 2)
    y1 = min(height, y0 + side.shape[0])
    img[y0:y1, margin:margin + side.shape[1]] = side[:y1 - y0]
    # colour bar: share of the row
    bx = left + cols * cell + margin
    bh = max(rows * cell, 40)
    for y in range(bh):
        img[top + y, bx:bx + bar_w] = _shade(1.0 - y / max(1, bh - 1))
    cv2.rectangle(img, (bx, top), (bx + bar_w, top + bh - 1), (120, 120, 120), 1)
    small = 0.35
    cv2.putText(img, "100%", (bx + bar_w + 4, top + 10), _FONT, small, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "0%", (bx + bar_w + 4, top + bh - 2), _FONT, small, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "of row", (bx + bar_w + 4, top + bh // 2), _FONT, small, (0, 0, 0), 1,
                cv2.LINE_AA)
    return img
