"""Deploy: the runner contract and its backends, and the frame -> Detections detector.

Runs on the Jetson (Python 3.8, numpy < 1.24). Never imports edgekit.export or edgekit.train, and
imports no torch/onnxruntime/tensorrt until a backend is activated.
"""

from .detector import Detector
from .runners import RUNNERS, Runner, TensorMeta, create_runner, runner_class

__all__ = ["Detector", "Runner", "TensorMeta", "RUNNERS", "create_runner", "runner_class"]
