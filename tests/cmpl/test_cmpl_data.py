"""Video lists, frame sampling, OpenCV decoding, unreadable videos and the saved label split (cmpl/data.py)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from cmpl.data import VideoClips, VideoRecord, decode_frames, label_split, read_list, sample_frames
from common.data import DatasetError


def _write_video(path, frames=20, size=32):
    """An MJPG .avi whose frame i is uniformly grey level 10 * i (so a decoded frame names its index)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (size, size))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(np.full((size, size, 3), 10 * i, dtype=np.uint8))
    writer.release()
    return path


def test_list_formats(tmp_path):
    (tmp_path / "videos.txt").write_text("a/x.mp4 3\nb/y.mp4 0\n")
    (tmp_path / "frames.txt").write_text("a/x 120 3\n")
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (tmp_path / "trainlist01.txt").write_text("Archery/v_Archery_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n")
    expected = [VideoRecord("root/a/x.mp4", 3), VideoRecord("root/b/y.mp4", 0)]
    assert read_list(tmp_path / "videos.txt", "root") == expected
    assert read_list(tmp_path / "frames.txt") == [VideoRecord("a/x", 3, 120)]
    index = str(tmp_path / "classInd.txt")
    assert read_list(tmp_path / "trainlist01.txt", class_index=index)[0].label == 1  # 1-based in the file
    assert read_list(tmp_path / "testlist01.txt", class_index=index)[0].label == 0  # from the folder name
    with pytest.raises(DatasetError, match="testlist01.txt:1"):
        read_list(tmp_path / "testlist01.txt")


def test_sample_frames_is_mmaction2s():
    assert sample_frames(100, 8, 8, test=True).tolist() == [18 + 8 * k for k in range(8)]  # centred: (100-64+1)/2
    assert sample_frames(30, 4, 2, num_clips=3, test=True).tolist() == [3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25]
    rng = np.random.default_rng(0)
    for _ in range(20):
        train = sample_frames(100, 8, 8, rng=rng)
        assert 0 <= train[0] <= 36 and np.all(np.diff(train) == 8)
    assert sample_frames(10, 8, 2, test=True).tolist() == [0, 2, 4, 6, 8, 0, 2, 4]  # short video: loops


def test_decode_reads_the_requested_frames(tmp_path):
    path = str(_write_video(tmp_path / "v.avi"))
    frames = decode_frames(path, np.array([0, 5, 19, 5]))
    assert frames.shape == (4, 32, 32, 3)
    assert np.abs(frames.mean(axis=(1, 2, 3)) - [0, 50, 190, 50]).max() < 3  # MJPG is lossy


def test_unreadable_videos_are_skipped_with_their_name_or_stop_in_one_line(tmp_path):
    good = str(_write_video(tmp_path / "good.avi"))
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"not a video")
    records = [VideoRecord(str(bad), 0), VideoRecord(good, 1)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clip, label = VideoClips(records, clip_len=4, frame_interval=2)[0]
    assert label == 1 and clip.shape == (4, 32, 32, 3)
    assert any("bad.avi" in str(w.message) for w in caught)
    with pytest.raises(DatasetError, match="bad.avi"):
        VideoClips(records, clip_len=4, on_error="stop")[0]


def test_label_split_is_per_class_deterministic_and_reused(tmp_path):
    labels = np.repeat(np.arange(5), [3, 50, 100, 7, 40])
    split = label_split(labels, 0.1, seed=1, path=tmp_path / "split.json")
    assert np.bincount(labels[split]).tolist() == [1, 5, 10, 1, 4]  # at least one per class
    assert np.array_equal(split, label_split(labels, 0.1, seed=1))
    assert not np.array_equal(split, label_split(labels, 0.1, seed=2))
    assert np.array_equal(label_split(labels, 0.1, seed=1, path=tmp_path / "split.json"), split)  # reused
    with pytest.raises(DatasetError, match="was made for"):
        label_split(labels, 0.01, seed=1, path=tmp_path / "split.json")
