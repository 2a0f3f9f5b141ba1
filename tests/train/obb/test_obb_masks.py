"""The rotated-box mask against an independent reference: cv2.fillPoly of the true rotated polygons."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from edgekit.core.geometry import xywhr_to_corners
from edgekit.train.obb.masks import obb_mask

BOXES = [  # normalised xywhr, angle in radians
    (0.5, 0.5, 0.6, 0.2, 0.0),
    (0.5, 0.5, 0.6, 0.2, np.pi / 4),
    (0.3, 0.6, 0.5, 0.1, 1.1),
    (0.7, 0.3, 0.3, 0.25, -0.6),
    (0.45, 0.55, 0.8, 0.15, 2.0),
]


def _reference(box, img_hw, grid_hw):
    """fillPoly of the polygon in grid units (sub-pixel precise), plus each cell's distance to the edge."""
    gh, gw = grid_hw
    ih, iw = img_hw
    px = np.array(box) * [iw, ih, iw, ih, 1.0]
    corners = xywhr_to_corners(px[None])[0] * [gw / iw, gh / ih] - 0.5  # pixel-centre convention of cv2
    shift = 8
    ref = np.zeros((gh, gw), np.uint8)
    cv2.fillPoly(ref, [np.round(corners * (1 << shift)).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=shift)
    poly = corners.astype(np.float32).reshape(-1, 1, 2)
    edge = np.array([[abs(cv2.pointPolygonTest(poly, (float(x), float(y)), True)) for x in range(gw)]
                     for y in range(gh)])
    return ref, edge


@pytest.mark.parametrize("box", BOXES)
@pytest.mark.parametrize("img_hw, grid_hw", [((640, 640), (80, 80)), ((256, 256), (40, 40))])
def test_mask_matches_fillpoly_of_the_rotated_polygon(box, img_hw, grid_hw):
    mask = obb_mask(torch.tensor([box]), torch.tensor([0]), 1, grid_hw, img_hw)[0].numpy()
    ref, edge = _reference(box, img_hw, grid_hw)
    differ = mask.astype(np.uint8) != ref
    assert mask.sum() >= 0.5 * ref.sum()
    # fillPoly also paints cells its 8-connected edge walk touches; away from the edge (> 1 cell) the
    # two must agree exactly, which an axis-aligned hull or a shifted/rotated box would violate.
    assert (edge[differ] <= 1.0).all()


def test_rotated_mask_is_not_the_axis_aligned_hull():
    box = (0.5, 0.5, 0.8, 0.1, np.pi / 4)
    mask = obb_mask(torch.tensor([box]), torch.tensor([0]), 1, (64, 64), (640, 640))[0]
    corners = xywhr_to_corners(np.array([box]) * [64, 64, 64, 64, 1])[0]
    hull = (np.ptp(corners[:, 0]) * np.ptp(corners[:, 1]))
    assert mask.sum().item() < 0.3 * hull  # a thin diagonal bar covers far less than its hull


def test_boxes_land_in_their_own_image_and_empty_batches_are_zero():
    boxes = torch.tensor([BOXES[0], BOXES[3]])
    mask = obb_mask(boxes, torch.tensor([2, 0]), 3, (16, 16), (128, 128))
    assert mask.shape == (3, 16, 16) and mask[1].sum() == 0
    alone0 = obb_mask(boxes[1:], torch.tensor([0]), 1, (16, 16), (128, 128))[0]
    assert torch.equal(mask[0], alone0)
    assert obb_mask(torch.zeros(0, 5), torch.zeros(0), 2, (4, 4), (64, 64)).sum() == 0
