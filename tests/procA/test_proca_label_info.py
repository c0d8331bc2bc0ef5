"""Class-balanced source sampling (official core/datasets/gtav.py) and the ``*_label_info.p`` file: the list against
an independent re-implementation of the official loop, the safe reader, the builder CLI on official layouts, configs."""

import os
import pickle

import cv2
import numpy as np
import PIL.Image
import pytest
from click.testing import CliRunner
from test_proca_stages import SHRINK, TINY

from common.config import load_config
from common.data import DatasetError
from procA.config import ProCAConfig
from procA.data import SegmentationTransform, build_dataset, gta5
from procA.label_info import (
    class_balanced_list,
    class_balanced_source,
    main,
    read_label_info,
)
from procA.train_src import main as train_src_main
from procA.training import _source, balanced_draws

CONFIGS = TINY.parent


def _official_loop(label_to_file, file_to_label, num_classes, max_iters):
    """The list of the official GTAVDataSet.__init__ (max_iters given), written from its semantics: numpy's GLOBAL
    RNG after np.random.seed(0), label_to_file shuffled in place, the index wrap ``ind % (len - 1)``."""
    state = np.random.get_state()
    np.random.seed(0)
    try:
        drawn, ind = [], {i: 0 for i in range(num_classes)}
        for _ in range(int(max_iters / 3000) + 1):
            dist = np.zeros(num_classes)
            for _ in range(3000):
                share = dist.copy() if dist.sum() == 0 else dist / dist.sum()
                w = 1 / np.log(1 + 1e-2 + share)
                c = np.random.choice(num_classes, p=w / w.sum())
                if ind[c] > len(label_to_file[c]) - 1:
                    np.random.shuffle(label_to_file[c])
                    ind[c] = ind[c] % (len(label_to_file[c]) - 1)
                name = label_to_file[c][ind[c]]
                drawn.append(name)
                ind[c] += 1
                dist[file_to_label[name]] += 1
        return drawn
    finally:
        np.random.set_state(state)


def _small_label_info():
    """12 files, 5 classes: class 0 everywhere, class 3 in 3 files and class 4 in 2 (frequent wraps, len - 1 = 1)."""
    rng = np.random.RandomState(3)
    file_to_label = {}
    for i in range(12):
        classes = [0] + [c for c in (1, 2) if rng.rand() < 0.6] + ([3] if i in (2, 5, 9) else []) + (
            [4] if i in (7, 11) else [])
        file_to_label[f"{i:05d}.png"] = classes
    label_to_file = [[n for n, cs in file_to_label.items() if c in cs] for c in range(5)]
    return label_to_file, file_to_label


def test_class_balanced_list_equals_the_official_loop(tmp_path):
    label_to_file, file_to_label = _small_label_info()
    path = tmp_path / "gtav_label_info.p"
    with open(path, "wb") as f:  # written as datasets/generate_gtav_label_info.py writes it
        pickle.dump((label_to_file, file_to_label), f)
    info = read_label_info(path, num_classes=5)
    ours = class_balanced_list(*info, max_iters=6500)
    official = _official_loop([list(f) for f in label_to_file], file_to_label, 5, 6500)
    assert len(ours) == 9000 and ours == official
    assert info[0] == label_to_file  # the caller's lists are not shuffled in place
    counts = np.bincount([c for name in ours[:3000] for c in file_to_label[name]], minlength=5)
    assert counts[4] > 3000 / 12  # the rare class is drawn far above its file share: balancing works
    assert class_balanced_list(*info, max_iters=6500, seed=1) != ours


def test_class_balanced_list_survives_where_the_official_loop_crashes():
    label_to_file = [["a.png", "b.png"], ["a.png"], []]  # class 1: one file (official 1 % 0), class 2: none
    ours = class_balanced_list(label_to_file, {"a.png": [0, 1], "b.png": [0]}, max_iters=10)
    assert len(ours) == 3000 and set(ours) == {"a.png", "b.png"}
    with pytest.raises(DatasetError, match="no class has any file"):
        class_balanced_list([[], []], {}, max_iters=10)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.makedirs, (self.marker,)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ("code", "refusing global .*makedirs"),
        ("numpy", "refusing global numpy"),
        ("dict", "holds a dict, not a pair"),
        ("classes", "3 classes, the config has 5"),
        ("trainid", r"file_to_label\['a.png'\] is not a list of train ids < 5"),
    ],
)
def test_label_info_reader_runs_no_code_and_names_the_problem(tmp_path, payload, message):
    marker = tmp_path / "code_ran"
    data = {
        "code": ([["a.png"]] * 5, {"a.png": [_RunsCode(str(marker))]}),
        "numpy": ([["a.png"]] * 5, {"a.png": [np.int64(0)]}),
        "dict": {"a.png": [0]},
        "classes": ([["a.png"]] * 3, {"a.png": [0]}),
        "trainid": ([["a.png"]] * 5, {"a.png": [7]}),
    }[payload]
    path = tmp_path / "gtav_label_info.p"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(DatasetError, match=message) as err:
        read_label_info(path, num_classes=5)
    assert "\n" not in str(err.value) and "procA.label_info" in str(err.value)
    assert not marker.exists()


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.Image.fromarray(np.asarray(array, np.uint8)).save(path)


def _gta5_root(tmp_path):
    root = tmp_path / "gtav"
    ids = {"00001.png": [[7, 26], [0, 7]], "00002.png": [[33, 7], [255, 7]], "00003.png": [[0, 1], [3, 6]]}
    for name, label in ids.items():
        _png(root / "images" / name, np.full((2, 2, 3), 90))
        _png(root / "labels" / name, label)
    return root


def test_label_info_tool_writes_the_official_structure_for_gta5(tmp_path):
    root = _gta5_root(tmp_path)
    result = CliRunner().invoke(main, ["--dataset", "gta5", "--root", str(root)])
    assert result.exit_code == 0, result.output
    with open(root / "gtav_label_info.p", "rb") as f:
        info = pickle.load(f)
    expected_l2f = [[] for _ in range(19)]
    expected_l2f[0] = ["00001.png", "00002.png"]  # road (id 7)
    expected_l2f[13] = ["00001.png"]  # car (26)
    expected_l2f[18] = ["00002.png"]  # bicycle (33)
    assert info == (expected_l2f, {"00001.png": [0, 13], "00002.png": [0, 18], "00003.png": []})
    assert "3 files" in result.output
    again = CliRunner().invoke(main, ["--dataset", "gta5", "--root", str(root)])
    assert again.exit_code == 0 and "exists, nothing written" in again.output
    missing = CliRunner().invoke(main, ["--dataset", "gta5", "--root", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "GTA5 folder not found" in missing.output


def test_label_info_tool_reads_synthia_class_ids_from_the_first_channel(tmp_path):
    base = tmp_path / "synthia" / "RAND_CITYSCAPES"
    raw = np.zeros((2, 3, 3), np.uint16)
    raw[..., 2] = [[3, 1, 11], [3, 13, 0]]  # cv2 writes BGR: index 2 is the first (R) channel = class id
    raw[..., 0] = 1000  # instance ids elsewhere must not count
    (base / "GT" / "LABELS").mkdir(parents=True)
    cv2.imwrite(str(base / "GT" / "LABELS" / "0000000.png"), raw)
    _png(base / "RGB" / "0000000.png", np.full((2, 3, 3), 90))
    out = tmp_path / "info.p"
    result = CliRunner().invoke(main, ["--dataset", "synthia", "--root", str(tmp_path / "synthia"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    label_to_file, file_to_label = read_label_info(out, num_classes=16)
    assert file_to_label == {"0000000.png": [9, 0, 15]}  # increasing raw id (sky 1, road 3, bicycle 11) as official
    assert [c for c in range(16) if label_to_file[c]] == [0, 9, 15]


def test_balanced_source_follows_the_list_and_unknown_files_are_an_error(tmp_path):
    root = _gta5_root(tmp_path)
    assert CliRunner().invoke(main, ["--dataset", "gta5", "--root", str(root)]).exit_code == 0
    cfg = load_config(ProCAConfig, CONFIGS / "gta5.yaml", [f"data.source_root={root}"])
    plain = gta5(root, "", SegmentationTransform((2, 2)))
    balanced = class_balanced_source(cfg.data, plain, 19, max_iters=100)
    assert balanced.names == class_balanced_list(*read_label_info(root / "gtav_label_info.p", 19), 100)
    for i in (0, 1, 2, 2999):
        assert np.array_equal(balanced[i][1], plain[plain.names.index(balanced.names[i])][1])
    (root / "images" / "00002.png").unlink()  # a stale label info: it still lists 00002.png
    (root / "labels" / "00002.png").unlink()
    with pytest.raises(DatasetError, match="lists 1 files that are not in the source set, e.g. 00002.png"):
        class_balanced_source(cfg.data, gta5(root, "", SegmentationTransform((2, 2))), 19, max_iters=100)


def test_training_without_label_info_says_how_to_build_it(tmp_path):
    root = _gta5_root(tmp_path)
    result = CliRunner().invoke(train_src_main, [
        "--cfg", "tiny", "--outdir", str(tmp_path / "runs"), "--set", "data.source=gta5",
        "--set", f"data.source_root={root}", "--set", "data.class_balanced=true"])
    assert result.exit_code != 0
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "Traceback" not in result.output
    assert f"needs {root / 'gtav_label_info.p'}: build it with python -m procA.label_info --dataset gta5" in errors[0]
    assert not (tmp_path / "runs").exists()  # the failed start left no run dir behind (nor the --outdir it made)
    for value, message in (("source_only.iters=400", "source_only.iters=400 exceeds source_only.max_iters=300"),
                           ("source_only.snapshot_every=0", "source_only.snapshot_every=0 must be >= 1")):
        result = CliRunner().invoke(train_src_main, ["--cfg", "tiny", "--outdir", str(tmp_path / "runs"), "--set",
                                                     value])
        assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output, value
    assert not (tmp_path / "runs").exists()


def test_configs_switch_balancing_and_stages_use_the_official_list_length():
    gta, synthia = (load_config(ProCAConfig, CONFIGS / f"{n}.yaml") for n in ("gta5", "synthia"))
    tiny = load_config(ProCAConfig, TINY)
    assert gta.data.class_balanced and synthia.data.class_balanced and not tiny.data.class_balanced
    # official build.py: MAX_ITER x SOLVER.BATCH_SIZE (8: source-only batch; ProCA: 4 source + 4 target)
    assert balanced_draws(gta, "source_only") == 31250 * 8 and balanced_draws(gta, "proca") == 90000 * 8
    cfg = load_config(ProCAConfig, TINY, [*SHRINK, "data.class_balanced=true"])
    source = _source(cfg, "proca", "none")
    plain = build_dataset(cfg.data, "source", 6, seed=cfg.seed)
    labels = [np.unique(plain.load_raw(i)[1]).tolist() for i in range(len(plain))]
    label_to_file = [[n for n, ids in zip(plain.names, labels) if c in ids] for c in range(6)]
    expected = class_balanced_list(label_to_file, dict(zip(plain.names, labels)), cfg.proca.max_iters * 8)
    assert source.names == expected and len(source) == 3000
