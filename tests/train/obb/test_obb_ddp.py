"""DDP readiness on CPU: Ultralytics' real DDP launcher file rebuilds our trainer and its distiller in a new process."""

from __future__ import annotations

import os
import subprocess
import sys

import cloudpickle


def test_trainer_survives_the_ddp_pickle_and_rebuilds_its_distiller(tmp_path, tiny_overrides):
    from ultralytics.utils.dist import ddp_cleanup, generate_ddp_file

    from edgekit.train.obb.api import _spec_env, resolve_dataset, stage_overrides
    from edgekit.train.obb.config import load_train_config
    from edgekit.train.obb.trainer import DistillOBBTrainer, TrainSpec
    from edgekit.train.run import RunDir

    cfg = load_train_config(None, tiny_overrides)
    run = RunDir.create(cfg.project, "ddp")
    _, data_yaml = resolve_dataset(cfg, run)
    spec = TrainSpec(run_dir=str(run.root), stage_index=1, epoch_offset=1, config=cfg.model_dump(mode="json"))
    trainer = DistillOBBTrainer(overrides=stage_overrides(cfg, run, 1, data_yaml, cfg.student), spec=spec)
    cloudpickle.loads(cloudpickle.dumps(type(trainer)))  # the class itself pickles
    file = generate_ddp_file(trainer)  # exactly what a `device=0,1` launch writes for its workers
    try:
        state_file = file[:-3] + ".pt"
        # A worker process: same environment (the spec travels in it), state rebuilt as the DDP file does.
        code = (
            "from ultralytics.utils import DEFAULT_CFG_DICT\n"
            "from ultralytics.utils.patches import torch_load\n"
            f"state = torch_load({state_file!r}, map_location='cpu')\n"
            "cfg = DEFAULT_CFG_DICT.copy(); cfg.update(save_dir='')\n"
            "t = state['trainer'](cfg=cfg, overrides=state['args'], _callbacks=state['callbacks'])\n"
            "t.model = state['model']\n"
            "t.setup_model()\n"
            "print(type(t).__name__, t.stage.name, t.spec.epoch_offset, t.last,\n"
            "      sorted(t.distiller.projectors.convs), t.distiller.teacher.width)\n")
        with _spec_env(spec.to_json()):
            out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                                 env={**os.environ, "YOLO_OFFLINE": "1"})
    finally:
        ddp_cleanup(trainer, file)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == (
        f"DistillOBBTrainer b 1 {run.last} ['15', '18', '21'] 32")


def test_missing_spec_is_a_clear_error(monkeypatch):
    import pytest

    from edgekit.core.errors import ConfigError
    from edgekit.train.obb.trainer import ENV_SPEC, TrainSpec

    monkeypatch.delenv(ENV_SPEC, raising=False)
    with pytest.raises(ConfigError, match=ENV_SPEC):
        TrainSpec.from_env()
