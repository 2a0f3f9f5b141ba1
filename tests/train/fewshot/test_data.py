"""RefDet episodic data on a real synthetic dataset: seeking vs sequential decoding, the LRU cache, episodes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.core.errors import ConfigError
from edgekit.train.fewshot.data import EpisodeSampler, FrameCache, RefDetDataset, VideoFrameReader

FRAMES = 40  # past mp4v's keyframe interval, so a seek really has to decode from a keyframe


@pytest.fixture(scope="module")
def refdet_root(tmp_path_factory) -> Path:
    from edgekit.data.synth.refdet import generate_refdet_dataset

    out = generate_refdet_dataset(tmp_path_factory.mktemp("refdet") / "synth", n_train=4, n_test=1, frames=FRAMES,
                                  imgsz=96, seed=0, progress=False)
    return out / "train"


def _sequential_frames(video: Path) -> list:
    import cv2

    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.mark.parametrize("mode", ["always", "auto", "never"])
def test_random_access_matches_sequential_decoding(refdet_root: Path, mode: str):
    dataset = RefDetDataset(refdet_root, cache_size=0)
    video = dataset.records[0].video
    expected = _sequential_frames(video)
    assert len(expected) == FRAMES
    order = [37, 3, 20, 21, 39, 0, 30, 12, 12, 5]  # backwards jumps, a short forward step, a repeat
    with VideoFrameReader(video, seek=mode, max_grab=0 if mode == "always" else 16) as reader:
        for i in order:
            assert np.array_equal(reader.read(i), expected[i]), (mode, i)
        if mode == "auto":
            assert reader.seek_reliable is True  # the probe found mp4v seeking exact
        with pytest.raises(IndexError):
            reader.read(FRAMES)


class _SeekLandsOneFrameLate(VideoFrameReader):
    """A decoder whose seeks land on the next frame, as keyframe-inexact seeking can."""

    def _seek(self, index):
        return super()._seek(min(index + 1, self.frame_count - 1))


def test_auto_falls_back_to_sequential_when_seeking_is_inexact(refdet_root: Path):
    video = RefDetDataset(refdet_root, cache_size=0).records[0].video
    expected = _sequential_frames(video)
    with _SeekLandsOneFrameLate(video, seek="auto", max_grab=0) as reader:
        for i in (30, 4, 25, 2):
            assert np.array_equal(reader.read(i), expected[i]), i
        assert reader.seek_reliable is False
    with _SeekLandsOneFrameLate(video, seek="always", max_grab=0) as reader:  # the failure the probe guards
        assert not np.array_equal(reader.read(30), expected[30])


def test_frames_differ_so_the_comparison_can_fail(refdet_root: Path):
    frames = _sequential_frames(RefDetDataset(refdet_root).records[0].video)
    assert not np.array_equal(frames[3], frames[30])


def test_frame_cache_evicts_least_recently_used_at_its_size():
    cache = FrameCache(2)
    a, b, c = (np.full((2, 2), i, np.uint8) for i in range(3))
    cache.put("a", a)
    cache.put("b", b)
    assert cache.get("a") is a  # "a" is now the most recent
    cache.put("c", c)
    assert cache.keys() == ["a", "c"] and "b" not in cache and len(cache) == 2
    assert cache.get("b") is None and (cache.hits, cache.misses) == (1, 1)
    disabled = FrameCache(0)
    disabled.put("a", a)
    assert len(disabled) == 0
    with pytest.raises(ConfigError, match="cache_size"):
        FrameCache(-1)


def test_dataset_frames_come_from_the_cache_and_respect_its_size(refdet_root: Path):
    dataset = RefDetDataset(refdet_root, cache_size=3)
    vid = dataset.records[1].video_id
    first = dataset.frame(vid, 10)
    assert dataset.frame(vid, 10) is first and dataset.cache.hits == 1
    for i in (11, 12, 13):
        dataset.frame(vid, i)
    assert len(dataset.cache) == 3 and (vid, 10) not in dataset.cache
    assert np.array_equal(dataset.frame(vid, 10), first)  # decoded again after eviction
    refs = dataset.references(vid)
    assert len(refs) == 3 and refs[0].ndim == 3
    dataset.close()


def test_sampler_yields_the_configured_episode_shapes(refdet_root: Path):
    dataset = RefDetDataset(refdet_root)
    sampler = EpisodeSampler(dataset, n_way=3, n_query=4, n_episodes=5, n_negative=6, seed=1)
    episodes = list(sampler)
    assert len(sampler) == len(episodes) == 5
    for ep in episodes:
        assert len(ep.tasks) == 3 and len({t.video_id for t in ep.tasks}) == 3
        for task in ep.tasks:
            record = dataset.record(task.video_id)
            assert len(task.support) == 3 and task.support == record.references
            assert len(task.queries) == 4 and len(task.negatives) == 6
            for q in task.queries:
                assert q.kind == "query" and q.video_id == task.video_id and q.frame in record.boxes
                assert q.boxes.shape[1] == 4 and len(q.boxes) >= 1
            kinds = [n.kind for n in task.negatives]
            assert kinds.count("cross_class") == 3 and kinds.count("background") == 3
            for n in task.negatives:
                assert n.boxes.shape == (0, 4)
                if n.kind == "background":
                    assert n.video_id == task.video_id and n.frame not in record.boxes
                else:
                    assert n.video_id != task.video_id and n.frame in dataset.record(n.video_id).boxes
    for ref in (r for task in episodes[0].tasks for r in task.queries + task.negatives):  # every ref decodes
        assert dataset.frame(ref.video_id, ref.frame).shape == (96, 96, 3)


def _signature(episodes) -> list:
    return [[(t.video_id, [(q.frame, q.boxes.tolist()) for q in t.queries],
              [(n.video_id, n.frame, n.kind) for n in t.negatives]) for t in ep.tasks] for ep in episodes]


def test_sampler_is_deterministic_per_seed(refdet_root: Path):
    records = RefDetDataset(refdet_root).records
    make = lambda seed: EpisodeSampler(records, n_way=2, n_query=3, n_episodes=6, seed=seed)  # noqa: E731
    assert _signature(make(7)) == _signature(make(7))
    assert _signature(make(7)) != _signature(make(8))
    # episode i depends on (seed, i) only: drawn alone it equals the i-th of an iteration
    assert _signature([make(7).episode(4)]) == _signature(make(7))[4:5]


def test_sampler_rejects_impossible_configs(refdet_root: Path):
    records = RefDetDataset(refdet_root).records
    with pytest.raises(ConfigError, match="n_way=9"):
        EpisodeSampler(records, n_way=9, n_query=1, n_episodes=1)
    with pytest.raises(ConfigError, match="n_query"):
        EpisodeSampler(records, n_way=1, n_query=0, n_episodes=1)


def test_boxes_past_the_video_end_are_ignored_with_a_warning(refdet_root: Path, tmp_path: Path, caplog):
    """A box on a frame the video does not have cannot be trained or scored; it is dropped, and said so."""
    import json
    import logging
    import shutil

    from edgekit.data.formats.refdet import ANNOTATIONS
    from edgekit.train.fewshot.data import RefDetDataset

    root = tmp_path / "root"
    shutil.copytree(refdet_root, root)
    doc = json.loads((root / ANNOTATIONS).read_text())
    doc[0]["annotations"][0]["bboxes"].append({"frame": FRAMES + 5, "x1": 1, "y1": 1, "x2": 9, "y2": 9})
    (root / ANNOTATIONS).write_text(json.dumps(doc))
    with caplog.at_level(logging.WARNING, logger="edgekit.train.fewshot.data"):
        ds = RefDetDataset(root)
    rec = ds.record(doc[0]["video_id"])
    assert max(rec.annotated_frames) < FRAMES
    assert any("past the video" in r.getMessage() and doc[0]["video_id"] in r.getMessage() for r in caplog.records)
    ds.close()
