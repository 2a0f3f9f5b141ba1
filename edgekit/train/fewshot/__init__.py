"""The few-shot reference detector (RefDet): losses and episodic data (the model and stages come later).

Submodules import torch (losses) or OpenCV (data) and are imported explicitly, not from here.
"""

from __future__ import annotations

__all__: list = []
