"""Class-balanced source sampling of the official loader and its ``*_label_info.p`` file (spec §4).

The official GTA5/SYNTHIA datasets (jiangzhengkai/ProCA: core/datasets/gtav.py, core/datasets/synthia.py), when
built for training with ``max_iters = SOLVER.MAX_ITER x SOLVER.BATCH_SIZE`` (core/datasets/build.py; train_src.py and
train_proca.py, not prototype_dist_init.py, which builds the source epoch-wise, nor train_ssl.py, whose "source" is
the Cityscapes pseudo-label set), replace the list file by a class-balanced list of file names:

- ``int(max_iters / 3000) + 1`` sub-epochs of 3,000 draws; the per-class counts restart at each sub-epoch;
- per draw, class c is chosen with probability proportional to ``1 / log(1 + 1e-2 + share_c)``, ``share_c`` = c's
  share of the class occurrences of the files drawn so far in this sub-epoch (uniform while nothing is drawn);
- the next file of ``label_to_file[c]`` is taken; when c's index runs past the end of its list, the list is shuffled
  in place and the index becomes ``index % (len - 1)`` (so the first file after a wrap is the 2nd of the shuffled
  list, an official quirk kept for parity); the classes of that file (``file_to_label[file]``) are counted.

The official code draws from numpy's global RNG, seeded once with ``np.random.seed(0)`` at import of
core/datasets/transform.py; :func:`class_balanced_list` uses ``np.random.RandomState(seed)`` with the same draws
(``choice`` with ``p``, then ``shuffle``), so ``seed=0`` gives the official list. Where the official loop crashes
this one goes on: a class without files gets probability 0 (official: IndexError), a class with one file keeps
taking it (official: ZeroDivisionError at its wrap).

``<source_root>/gtav_label_info.p`` (``synthia_label_info.p``) is ``pickle.dump((label_to_file, file_to_label))``
(datasets/generate_gtav_label_info.py): ``label_to_file`` a list of one list of label-file names per train id,
``file_to_label`` a dict file name -> train ids present (in increasing raw-id order, files without any class
included with ``[]``). It is read by :func:`read_label_info` without running pickled code, and built by

    python -m procA.label_info --dataset gta5 --root datasets/gtav          # -> datasets/gtav/gtav_label_info.p
    python -m procA.label_info --dataset synthia --root datasets/synthia    # -> datasets/synthia/synthia_label_info.p

File order inside ``label_to_file`` is sorted by name here; the official generator keeps ``os.listdir`` order, so
only the shipped pickles (jiangzhengkai/ProCA: datasets/gtav_label_info.p, datasets/synthia_label_info.p) give the
official list file for file; a file built here gives a list with the same statistics.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import click
import numpy as np

from common.data import DatasetError
from common.logging import Progress
from procA.config import DataConfig
from procA.data import (
    GTA5_LAYOUT,
    SYNTHIA_LAYOUT,
    SegmentationDataset,
    _pair_files,
    _read_index_png,
    _read_list,
    _read_synthia_label,
    _require_dir,
)
from procA.labels import GTA5_ID_TO_TRAINID, SYNTHIA_ID_TO_TRAINID

SUB_EPOCH = 3000  # official SUB_EPOCH_SIZE
LABEL_INFO_FILES = {"gta5": "gtav_label_info.p", "synthia": "synthia_label_info.p"}
NUM_CLASSES = {"gta5": 19, "synthia": 16}
LabelInfo = tuple[list[list[str]], dict[str, list[int]]]


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles only what needs no global: lists, tuples, dicts, str, int, float (and bool/None/bytes).

    Same mechanism as :class:`common.stylegan2.legacy.RestrictedUnpickler` (``find_class`` is the only way a pickle
    reaches code; persistent ids are refused), but with an empty allow-list: the official label-info pickles use no
    global at all, so any global (a class, a function, numpy) is refused before it is even imported.
    """

    def find_class(self, module: str, name: str) -> object:
        raise DatasetError(f"refusing global {module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise DatasetError("refusing a persistent id")


def _label_info_error(path: Path, why: str) -> DatasetError:
    return DatasetError(
        f"{path} is not a label-info file ({why}); expected pickle.dump((label_to_file, file_to_label)) of plain "
        "lists/dicts as datasets/generate_gtav_label_info.py writes; rebuild it with python -m procA.label_info"
    )


def read_label_info(path: str | os.PathLike, num_classes: int) -> LabelInfo:
    """``(label_to_file, file_to_label)`` of an official-structure pickle, checked; no pickled code can run."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no label-info file at {path}")
    try:
        data = _PlainUnpickler(io.BytesIO(path.read_bytes())).load()
    except DatasetError as err:
        raise _label_info_error(path, str(err)) from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as err:
        raise _label_info_error(path, f"unreadable: {err}") from None
    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise _label_info_error(path, f"holds a {type(data).__name__}, not a pair")
    label_to_file, file_to_label = data
    if not (isinstance(label_to_file, list) and all(isinstance(f, list) for f in label_to_file)):
        raise _label_info_error(path, "label_to_file is not a list of lists")
    if len(label_to_file) != num_classes:
        raise _label_info_error(path, f"{len(label_to_file)} classes, the config has {num_classes}")
    if not all(isinstance(name, str) for files in label_to_file for name in files):
        raise _label_info_error(path, "label_to_file holds a non-string file name")
    if not isinstance(file_to_label, dict):
        raise _label_info_error(path, "file_to_label is not a dict")
    for name, classes in file_to_label.items():
        if not (isinstance(name, str) and isinstance(classes, list)
                and all(type(c) is int and 0 <= c < num_classes for c in classes)):
            raise _label_info_error(path, f"file_to_label[{name!r}] is not a list of train ids < {num_classes}")
    missing = {name for files in label_to_file for name in files} - file_to_label.keys()
    if missing:
        raise _label_info_error(path, f"{len(missing)} files of label_to_file lack file_to_label, e.g. {min(missing)}")
    return label_to_file, file_to_label


def write_label_info(info: LabelInfo, path: str | os.PathLike) -> Path:
    """``pickle.dump((label_to_file, file_to_label), f)`` as the official generator, through a temporary file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            pickle.dump((info[0], info[1]), f)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def label_info_from_ids(names: Sequence[str], present_ids: Sequence[Sequence[int]],
                        id_to_trainid: Mapping[int, int], num_classes: int) -> LabelInfo:
    """The official structure from each file's raw label ids (any order; duplicates allowed)."""
    label_to_file: list[list[str]] = [[] for _ in range(num_classes)]
    file_to_label: dict[str, list[int]] = {}
    for name, ids in zip(names, present_ids):
        classes = [id_to_trainid[i] for i in sorted(set(int(i) for i in ids)) if i in id_to_trainid]
        file_to_label[name] = classes
        for c in classes:
            label_to_file[c].append(name)
    return label_to_file, file_to_label


def class_balanced_list(label_to_file: Sequence[Sequence[str]], file_to_label: Mapping[str, Sequence[int]],
                        max_iters: int, seed: int = 0) -> list[str]:
    """The official class-balanced list of ``(int(max_iters / 3000) + 1) * 3000`` file names (module docstring).

    ``label_to_file`` is copied, not shuffled in place; ``seed=0`` reproduces the official list.
    """
    rng = np.random.RandomState(seed)
    num_classes = len(label_to_file)
    files = [list(f) for f in label_to_file]
    absent = np.array([len(f) == 0 for f in files])
    if absent.all():
        raise DatasetError("class-balanced sampling: no class has any file in the label info")
    index = [0] * num_classes
    drawn: list[str] = []
    for _ in range(int(max_iters / SUB_EPOCH) + 1):
        counts = np.zeros(num_classes)
        for _ in range(SUB_EPOCH):
            share = counts.copy() if counts.sum() == 0 else counts / counts.sum()
            w = 1 / np.log(1 + 1e-2 + share)
            if absent.any():  # official: IndexError once such a class is drawn
                w[absent] = 0.0
            w = w / w.sum()
            c = rng.choice(num_classes, p=w)
            if index[c] > len(files[c]) - 1:
                rng.shuffle(files[c])
                index[c] = index[c] % (len(files[c]) - 1) if len(files[c]) > 1 else 0
            name = files[c][index[c]]
            drawn.append(name)
            index[c] += 1
            counts[list(file_to_label[name])] += 1
    return drawn


def _gta5_ids(path: Path) -> np.ndarray:
    return np.unique(_read_index_png(path))


def _synthia_ids(path: Path) -> np.ndarray:
    return np.unique(_read_synthia_label(path))


def build_label_info(dataset: str, root: str | os.PathLike, list_file: str = "", workers: int = 1) -> LabelInfo:
    """Label info of the GTA5 (Cityscapes label ids) or SYNTHIA (16-bit PNG, class id in channel 0) files under
    ``root``, read with the package's loaders; ``list_file`` restricts the files as ``data.source_list``."""
    root = Path(root)
    if dataset == "gta5":
        _require_dir(root, "GTA5", GTA5_LAYOUT)
        pairs = _pair_files(root / "images", root / "labels", _read_list(list_file, "GTA5"), lambda n: n, "GTA5",
                            GTA5_LAYOUT)
        read_ids: Callable[[Path], np.ndarray] = _gta5_ids
        id_map = GTA5_ID_TO_TRAINID
    else:
        base = root / "RAND_CITYSCAPES"
        _require_dir(base, "SYNTHIA", SYNTHIA_LAYOUT)
        pairs = _pair_files(base / "RGB", base / "GT" / "LABELS", _read_list(list_file, "SYNTHIA"), lambda n: n,
                            "SYNTHIA", SYNTHIA_LAYOUT)
        read_ids, id_map = _synthia_ids, SYNTHIA_ID_TO_TRAINID
    labels = [label for _, label in pairs]
    ids = []
    with Progress(len(labels), desc="label info", unit="file") as progress:
        if workers > 1:
            with multiprocessing.get_context("spawn").Pool(workers) as pool:
                for found in pool.imap(read_ids, labels, chunksize=16):
                    ids.append(found)
                    progress.update(1)
        else:
            for label in labels:
                ids.append(read_ids(label))
                progress.update(1)
    return label_info_from_ids([p[0].name for p in pairs], ids, id_map, NUM_CLASSES[dataset])


def label_info_path(cfg: DataConfig) -> Path:
    """``data.label_info``, else the official place ``<source_root>/gtav_label_info.p`` (``synthia_label_info.p``)."""
    return Path(cfg.label_info) if cfg.label_info else Path(cfg.source_root) / LABEL_INFO_FILES[cfg.source]


def source_label_info(cfg: DataConfig, dataset: SegmentationDataset, num_classes: int) -> LabelInfo:
    """The label info of the source set: read from its file (GTA5, SYNTHIA) or, for the synthetic scenes, computed
    from their in-memory labels (which are train ids already)."""
    if cfg.source == "synthetic":
        ids = [np.unique(dataset.load_raw(i)[1]) for i in range(len(dataset))]
        return label_info_from_ids(dataset.names, ids, {c: c for c in range(num_classes)}, num_classes)
    path = label_info_path(cfg)
    if not path.is_file():
        raise DatasetError(
            f"class-balanced sampling (data.class_balanced) needs {path}: build it with python -m procA.label_info "
            f"--dataset {cfg.source} --root {cfg.source_root} (or set data.label_info to the official "
            f"datasets/{LABEL_INFO_FILES[cfg.source]}, or data.class_balanced=false)"
        )
    return read_label_info(path, num_classes)


def class_balanced_source(cfg: DataConfig, dataset: SegmentationDataset, num_classes: int, max_iters: int,
                          seed: int = 0) -> SegmentationDataset:
    """``dataset`` re-indexed by the official class-balanced list of ``max_iters`` (+ rounding) draws.

    The training loop's sampler then walks a shuffled pass over this list, as the official DataLoader shuffles it
    (DistributedSampler / shuffle=True); the list is deterministic, so resumed loader positions stay exact.
    """
    label_to_file, file_to_label = source_label_info(cfg, dataset, num_classes)
    position = {name: i for i, name in enumerate(dataset.names)}
    unknown = {name for files in label_to_file for name in files} - position.keys()
    if unknown:
        raise DatasetError(
            f"the label info of {cfg.source} lists {len(unknown)} files that are not in the source set, e.g. "
            f"{min(unknown)} (another list file or dataset copy?); rebuild it with python -m procA.label_info"
        )
    names = class_balanced_list(label_to_file, file_to_label, max_iters, seed)
    order = [position[name] for name in names]
    return SegmentationDataset(names, lambda i: dataset.load_raw(order[i]), dataset.transform)


@click.command()
@click.option("--dataset", type=click.Choice(sorted(LABEL_INFO_FILES)), required=True, help="Source dataset.")
@click.option("--root", type=click.Path(file_okay=False), required=True,
              help="datasets/gtav (images/, labels/) or datasets/synthia (RAND_CITYSCAPES/).")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Output file [ROOT/gtav_label_info.p or ROOT/synthia_label_info.p, where training looks].")
@click.option("--list", "list_file", default="", help="Only the files of this list (as data.source_list).")
@click.option("--workers", type=int, default=1, show_default=True, help="Processes reading the label PNGs.")
@click.option("--force", is_flag=True, help="Rebuild an existing file.")
def main(dataset: str, root: str, out: str | None, list_file: str, workers: int, force: bool) -> None:
    """Build the label-info pickle of class-balanced source sampling (official generate_*_label_info.py)."""
    path = Path(out) if out else Path(root) / LABEL_INFO_FILES[dataset]
    if path.exists() and not force:
        click.echo(f"done: {path} exists, nothing written (--force rebuilds it)")
        return
    try:
        info = build_label_info(dataset, root, list_file, workers)
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    write_label_info(info, path)
    sizes = ", ".join(str(len(f)) for f in info[0])
    click.echo(f"done: {len(info[1])} files, files per class [{sizes}] -> {path}")


if __name__ == "__main__":
    main()
