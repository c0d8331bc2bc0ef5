"""Videos as users have them (spec cmpl.md §4, §6.1): list files, OpenCV decoding, frame sampling, label splits.

List formats:

- mmaction2 ``VideoDataset``: ``relative/path.mp4 label`` per line;
- mmaction2 ``RawframeDataset``: ``relative/frame_dir total_frames label`` (frames ``img_00001.jpg``...,
  ``filename_tmpl`` configurable);
- the official UCF-101 split files: ``trainlist01.txt`` (``Class/v_Class_g08_c01.avi 1``, 1-based labels) and
  ``testlist01.txt`` (no label; the class is the folder, numbered by ``classInd.txt``).

Frame sampling is mmaction2's ``SampleFrames`` (clip_len frames ``frame_interval`` apart; training: ``num_clips``
segment offsets with a random shift; testing: the segment centres; indices past the end loop). Decoding reads the
video once with OpenCV up to the last index it needs (BGR -> RGB). A video that cannot be opened or decoded is
skipped with a warning naming it (``on_error='skip'``: the dataset serves the next readable video) or stops with one
line (``'stop'``).

Labelled / unlabelled splits (1 % or 10 % of the training list, per class, at least one clip per class) come from a
seeded per-class draw saved as a JSON index file; an existing file is reused, so every run uses the same split.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from common.data import DatasetError


@dataclass(frozen=True)
class VideoRecord:
    """One list entry: a video file or a frame folder (``num_frames`` known), and its class index."""

    path: str
    label: int
    num_frames: int | None = None  # frame folders only


def _class_index(path: Path) -> dict[str, int]:
    """UCF-101 ``classInd.txt``: ``1 ApplyEyeMakeup`` per line -> {name: 0-based index}."""
    index = {}
    for line in path.read_text().splitlines():
        if line.strip():
            number, name = line.split()
            index[name] = int(number) - 1
    return index


def read_list(list_file: str | os.PathLike, root: str | os.PathLike = "", class_index: str | None = None
              ) -> list[VideoRecord]:
    """Entries of a list file (see the module docstring for the formats), paths joined to ``root``."""
    list_file, root = Path(list_file), Path(root)
    if not list_file.is_file():
        raise DatasetError(f"list file '{list_file}' does not exist")
    names = _class_index(Path(class_index)) if class_index else None
    records = []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{list_file}:{number}"
        try:
            if len(parts) == 3:  # RawframeDataset
                records.append(VideoRecord(str(root / parts[0]), int(parts[2]), int(parts[1])))
            elif len(parts) == 2:  # VideoDataset, or a UCF-101 trainlist (1-based)
                label = int(parts[1]) - (1 if names is not None else 0)
                records.append(VideoRecord(str(root / parts[0]), label))
            elif names is not None:  # UCF-101 testlist: the class is the folder
                records.append(VideoRecord(str(root / parts[0]), names[parts[0].split("/")[0]]))
            else:
                raise ValueError("no label")
        except (ValueError, KeyError) as err:
            raise DatasetError(f"{where}: cannot read '{line.strip()}' ({err}); expected 'path label', "
                               "'frame_dir total_frames label', or a UCF-101 split line with --class-index") from None
    if not records:
        raise DatasetError(f"list file '{list_file}' lists no videos")
    if min(r.label for r in records) < 0:
        raise DatasetError(f"{list_file}: labels must be >= 0 (a UCF-101 trainlist needs its classInd.txt)")
    return records


def sample_frames(num_frames: int, clip_len: int, frame_interval: int = 1, num_clips: int = 1, test: bool = False,
                  rng: np.random.Generator | None = None) -> np.ndarray:
    """mmaction2 ``SampleFrames``: (num_clips * clip_len,) frame indices, looping past the end."""
    span = clip_len * frame_interval
    if test:
        average = (num_frames - span + 1) / num_clips
        offsets = ((np.arange(num_clips) * average + average / 2).astype(np.int64) if num_frames > span - 1
                   else np.zeros(num_clips, dtype=np.int64))
    else:
        rng = rng or np.random.default_rng()
        average = (num_frames - span + 1) // num_clips
        if average > 0:
            offsets = np.arange(num_clips) * average + rng.integers(average, size=num_clips)
        elif num_frames > max(num_clips, span):
            offsets = np.sort(rng.integers(num_frames - span + 1, size=num_clips))
        elif average == 0:
            offsets = np.around(np.arange(num_clips) * (num_frames - span + 1.0) / num_clips).astype(np.int64)
        else:
            offsets = np.zeros(num_clips, dtype=np.int64)
    indices = offsets[:, None] + np.arange(clip_len)[None, :] * frame_interval
    return np.mod(indices.reshape(-1), max(num_frames, 1))


def count_frames(path: str) -> int:
    """Frames of a video file (OpenCV's count; 0 when it cannot be opened)."""
    capture = cv2.VideoCapture(path)
    try:
        return int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    finally:
        capture.release()


def decode_frames(path: str, indices: np.ndarray) -> np.ndarray:
    """uint8 (len(indices), H, W, 3) RGB frames of a video file, read once up to the largest index."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise DatasetError(f"cannot open video '{path}' (missing, not a video, or a codec OpenCV lacks)")
    wanted, frames, position = set(int(i) for i in indices), {}, 0
    try:
        while position <= max(wanted):
            ok, frame = capture.read()
            if not ok:
                break
            if position in wanted:
                frames[position] = frame[:, :, ::-1]
            position += 1
    finally:
        capture.release()
    if not frames:
        raise DatasetError(f"cannot decode any frame of video '{path}' (corrupt or empty)")
    last = frames[max(frames)]
    return np.stack([frames.get(int(i), last) for i in indices])  # a short read repeats its last frame


def read_frame_folder(record: VideoRecord, indices: np.ndarray, template: str = "img_{:05d}.jpg") -> np.ndarray:
    """uint8 (len(indices), H, W, 3) RGB frames of a ``RawframeDataset`` folder (1-based file numbers)."""
    frames = []
    for i in indices:
        path = os.path.join(record.path, template.format(int(i) + 1))
        frame = cv2.imread(path, cv2.IMREAD_COLOR)
        if frame is None:
            raise DatasetError(f"cannot read frame '{path}'")
        frames.append(frame[:, :, ::-1])
    return np.stack(frames)


class VideoClips(torch.utils.data.Dataset):
    """``(clip uint8 (num_clips * clip_len, H, W, 3), label)`` per list entry, sampled by :func:`sample_frames`.

    Training draws the offsets from numpy's global RNG (seeded per DataLoader worker by PyTorch, and saved in
    snapshots for the main process), so runs repeat; ``test`` takes the segment centres. ``on_error`` 'skip' warns
    (naming the file) and serves the next readable entry; 'stop' raises one :class:`DatasetError` line."""

    def __init__(self, records: list[VideoRecord], clip_len: int, frame_interval: int = 1, num_clips: int = 1,
                 test: bool = False, on_error: str = "skip", template: str = "img_{:05d}.jpg") -> None:
        if on_error not in ("skip", "stop"):
            raise ValueError(f"on_error is 'skip' or 'stop', got {on_error!r}")
        self.records, self.clip_len, self.frame_interval = records, clip_len, frame_interval
        self.num_clips, self.test, self.on_error, self.template = num_clips, test, on_error, template

    def __len__(self) -> int:
        return len(self.records)

    def _read(self, record: VideoRecord) -> np.ndarray:
        num_frames = record.num_frames if record.num_frames is not None else count_frames(record.path)
        if num_frames < 1:
            raise DatasetError(f"cannot open video '{record.path}' (missing, not a video, or a codec OpenCV lacks)")
        rng = np.random.default_rng(np.random.randint(2**31))
        indices = sample_frames(num_frames, self.clip_len, self.frame_interval, self.num_clips, self.test, rng)
        if record.num_frames is not None:
            return read_frame_folder(record, indices, self.template)
        return decode_frames(record.path, indices)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                return self._read(record), record.label
            except DatasetError as err:
                if self.on_error == "stop":
                    raise
                warnings.warn(f"skipping {err}", stacklevel=2)
        raise DatasetError("no readable video in the list")


def label_split(labels: np.ndarray, fraction: float, seed: int, path: str | os.PathLike | None = None
                ) -> np.ndarray:
    """Indices of the labelled subset: ``max(1, round(fraction x n_c))`` clips of every class c, drawn with ``seed``;
    saved to / reused from ``path`` (JSON with the fraction, seed and list size, checked on reuse)."""
    if not 0 < fraction <= 1:
        raise DatasetError(f"label fraction must be in (0, 1], got {fraction}")
    key = {"fraction": fraction, "seed": seed, "num_clips": int(len(labels))}
    if path is not None and Path(path).is_file():
        saved = json.loads(Path(path).read_text())
        if {k: saved.get(k) for k in key} != key:
            raise DatasetError(f"split file '{path}' was made for {({k: saved.get(k) for k in key})}, not {key}; "
                               "give another path or delete it")
        return np.asarray(saved["labelled"], dtype=np.int64)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        chosen.extend(rng.choice(members, size=max(1, round(fraction * len(members))), replace=False).tolist())
    labelled = np.sort(np.asarray(chosen, dtype=np.int64))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(f"{path}.tmp")
        tmp.write_text(json.dumps({**key, "labelled": labelled.tolist()}))
        os.replace(tmp, path)
    return labelled
