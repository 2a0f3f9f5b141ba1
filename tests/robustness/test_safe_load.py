"""Code execution: no checkpoint edgekit reads may run its pickled code (export, train student=, --resume).

Real malicious pickles, zip and legacy formats, whose ``__reduce__`` creates a marker file when
unpickled. Each case runs the real CLI and asserts: exit 1, one line naming the file and the
refused global, the marker absent, nothing outside the target touched. ``--trust-checkpoint``
is the opt-out: with it the same file IS unpickled (proving the flag reaches the loader).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from tests.robustness.conftest import assert_one_line_error, run_cli, tree_hash

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")


class _Payload:
    """Unpickling this runs ``os.system`` (the classic payload); nothing else about it matters."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _evil(path: Path, marker: Path, legacy: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {"model": _Payload(marker), "train_args": {}, "date": "2026"}
    torch.save(ckpt, str(path), _use_new_zipfile_serialization=not legacy)
    return path


def _resume_run(tmp: Path, base: Path, last: Path) -> List[str]:
    """runs/r/ as training leaves it (config_resolved.yaml + last.pt), then last.pt replaced by ``last``."""
    from edgekit.core.config import dump_config
    from edgekit.train.obb.config import load_train_config

    run = tmp / "runs" / "r"
    (run / "checkpoints").mkdir(parents=True)
    (run / "reports").mkdir()
    cfg = load_train_config(None, [f"data={base}", f"project={tmp / 'runs'}", "device=cpu", "teacher.weights=random"])
    (run / "reports" / "config_resolved.yaml").write_text(dump_config(cfg))
    os.replace(str(last), str(run / "checkpoints" / "last.pt"))
    return ["train", "obb", "--run-id", "r", "--resume", f"project={tmp / 'runs'}"]


def _export_case(tmp: Path, base: Path, evil: Path) -> List[str]:
    return ["export", str(evil), "--imgsz", "160", "--calib-data", str(base / "images" / "val"), "--out",
            str(tmp / "bundle")]


def _student_case(tmp: Path, base: Path, evil: Path) -> List[str]:
    return ["train", "obb", "--run-id", "s", f"data={base}", f"project={tmp / 'runs'}", f"student={evil}",
            "device=cpu", "teacher.weights=random"]


CASES: Dict[str, Callable[[Path, Path, Path], List[str]]] = {
    "export": _export_case,
    "train student=": _student_case,
    "train --resume over a replaced last.pt": _resume_run,
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("case", list(CASES))
def test_malicious_checkpoint_never_runs(tmp_path: Path, base_dataset: Path, case: str, legacy: bool) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "in" / "evil.pt", marker, legacy)
    args = CASES[case](tmp_path, base_dataset, evil)
    shown = tmp_path / "runs" / "r" / "checkpoints" / "last.pt" if "resume" in case else evil
    before, base_before = tree_hash(tmp_path), tree_hash(base_dataset)
    res = run_cli(args, cwd=tmp_path)
    line = assert_one_line_error(res, 1, names=[str(shown), "posix.system", "--trust-checkpoint"])
    assert "allow-list" in line
    assert not marker.exists(), "the checkpoint's code ran"
    assert tree_hash(tmp_path) == before and tree_hash(base_dataset) == base_before


def test_trust_checkpoint_is_the_explicit_opt_out(tmp_path: Path, base_dataset: Path) -> None:
    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "in" / "evil.pt", marker, legacy=False)
    res = run_cli([*_export_case(tmp_path, base_dataset, evil), "--trust-checkpoint"], cwd=tmp_path)
    assert marker.exists()  # the user accepted the risk: unpickled without the allow-list
    assert_one_line_error(res, 1, names=[str(evil)])  # and it is still not a model: one line
    assert not (tmp_path / "bundle").exists()


def test_allow_list_covers_real_ultralytics_checkpoints(obb_pt: Path) -> None:
    from edgekit.checkpoints import ALLOWED_GLOBALS, allowed_globals, safe_load

    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(str(obb_pt)))
    assert needed <= set(ALLOWED_GLOBALS), needed - set(ALLOWED_GLOBALS)
    assert len(allowed_globals()) == len(ALLOWED_GLOBALS)  # every entry still exists in Ultralytics
    assert "model" in safe_load(obb_pt)


def test_guard_covers_ultralytics_own_loader_and_restores_torch_load(tmp_path: Path) -> None:
    from ultralytics.nn.tasks import load_checkpoint

    from edgekit.checkpoints import guarded_loading
    from edgekit.core.errors import ModelError

    marker = tmp_path / "PWNED"
    evil = _evil(tmp_path / "evil.pt", marker, legacy=True)
    original = torch.load
    with guarded_loading(), pytest.raises(ModelError, match="posix.system"):
        load_checkpoint(str(evil))  # Ultralytics passes weights_only=False itself
    assert torch.load is original and not marker.exists()


def test_deploy_torch_runner_loads_restricted(tmp_path: Path, obb_pt: Path) -> None:
    from edgekit.core.errors import ModelError
    from edgekit.deploy.runners.torch import _load_model

    marker = tmp_path / "PWNED"
    with pytest.raises(ModelError, match="posix.system"):
        _load_model(_evil(tmp_path / "evil.pt", marker, legacy=False))
    assert not marker.exists()
    assert _load_model(obb_pt) is not None  # a real checkpoint still loads


@pytest.mark.parametrize("content", [b"not a checkpoint\n", b"\x89PNG\r\n\x1a\n" + bytes(64), b"-- some text"],
                         ids=["text", "png", "dash"])
def test_a_file_that_is_no_pickle_is_called_so_not_refused_as_code(tmp_path: Path, content: bytes) -> None:
    """A photo or a text file given as a checkpoint is not pickled code: telling the user to pass
    --trust-checkpoint (which cannot help, and disables the guard) was wrong."""
    from edgekit.checkpoints import refused_pickle, safe_load
    from edgekit.core.errors import ModelError

    path = tmp_path / "x.pt"
    path.write_bytes(content)
    with pytest.raises(ModelError) as e:
        safe_load(path)
    msg = e.value.format()
    assert "not a PyTorch checkpoint" in msg and "trust-checkpoint" not in msg and "\n" not in msg, msg
    try:
        torch.load(str(path), weights_only=True)
    except Exception as raw:  # noqa: BLE001 - torch's own error, as timm passes it on
        assert refused_pickle(raw) is None


def test_a_directory_given_as_checkpoint_is_called_a_directory(tmp_path: Path) -> None:
    from edgekit.checkpoints import safe_load
    from edgekit.core.errors import ModelError

    with pytest.raises(ModelError) as e:
        safe_load(tmp_path)
    assert "is a directory, not a .pt file" in e.value.format() and "does not exist" not in e.value.format()
