"""edgekit: train a detector, export it to INT8/TensorRT and serve it on a Jetson Xavier NX.

Importing ``edgekit`` is cheap: no heavy framework is imported until a stage needs it.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
