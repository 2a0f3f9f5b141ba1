"""Training: the run contract (``runs/<run_id>/``) and the trainers that write it (obb: distilled YOLOv8-OBB)."""

from __future__ import annotations

from .run import RunDir, append_jsonl, new_run_id, read_jsonl, read_run_meta, update_run_meta

__all__ = ["RunDir", "new_run_id", "append_jsonl", "read_jsonl", "read_run_meta", "update_run_meta"]
