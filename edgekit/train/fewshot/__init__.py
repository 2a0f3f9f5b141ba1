"""The few-shot reference detector (RefDet): losses, episodic data, model (model.py) and checkpoints (checkpoint.py).

Submodules import torch (losses) or OpenCV (data) and are imported explicitly, not from here.
"""

from __future__ import annotations

__all__: list = []
