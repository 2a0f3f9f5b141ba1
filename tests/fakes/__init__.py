"""Test doubles shared by the calibration, TensorRT build and TensorRT runner tests."""
