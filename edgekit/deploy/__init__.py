"""Deploy: the runner contract and its backends, the frame -> Detections detector and its sliced form.

Runs on the Jetson (Python 3.8, numpy < 1.24). Never imports edgekit.export or edgekit.train, and
imports no torch/onnxruntime/tensorrt until a backend is activated.
"""

from .detector import Detector
from .runners import RUNNERS, Runner, TensorMeta, create_runner, runner_class
from .tiling import TiledDetector, tiled

__all__ = ["Detector", "TiledDetector", "tiled", "Runner", "TensorMeta", "RUNNERS", "create_runner", "runner_class"]
