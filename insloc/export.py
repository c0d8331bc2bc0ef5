"""``python -m insloc.export --ckpt CKPT --to detectron2|torchvision --out FILE``: InsLoc weights in the formats users
fine-tune in, and official checkpoints in.

- ``mmdet``: the official checkpoint layout (``{'meta', 'state_dict'}`` as mmcv's ``save_checkpoint`` writes it;
  names of ``InsLocFPN``: ``backbone.*`` (torchvision ResNet names), ``neck.{lateral,fpn}_convs.i.{conv,bn}``,
  ``roi_head.bbox_head.shared_convs.j.{conv,bn}``, ``shared_fcs.k``, ``fc_cls``, the key copies ``backbone_k``,
  ``neck_k``, ``roi_head_k``, and ``queues`` / ``queue_ptr``);
- ``detectron2``: the pickle of the official ``transfer/detection/convert_pretrained.py``: FPN mode: backbone,
  FPN, the 4 head convs and fc1 in detectron2 names as numpy arrays, ``{'model', '__author__',
  'matching_heuristics': True}``; the projection is dropped and fc2 kept under its mmdet name, as officially
  (detectron2 ignores it); ``--c4`` mode for a C4 model (R50-C4: ``backbone.stem``, ``backbone.res2-4``,
  ``roi_heads.res5``), chosen from the weights (the C4 RoI head holds res5);
- ``torchvision``: a ``FasterRCNN`` state dict fragment (``backbone.body``, ``backbone.fpn``, and the 4conv-1fc box
  head ``roi_heads.box_head`` of ``fasterrcnn_resnet50_fpn_v2``), loadable with ``strict=False``.

A MoCo v2 run (the baseline) exports its ResNet trunk only (``backbone.body`` / detectron2 ``bottom_up``, as MoCo's
own detection transfer uses it); tiny runs export at their own sizes (:class:`insloc.detection.DetectorSize`).
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping
from pathlib import Path

import click
import torch
from torch import Tensor

from common.checkpoint import FORMAT, CheckpointError, atomic_save, read_weights, resolve_resume, saved_module
from common.cli import user_errors


def to_mmdet_name(name: str) -> str | None:
    """An :class:`insloc.model.InsLocFPN` parameter / buffer name -> the official one (query side); ``None`` for
    names the official model does not have."""
    if name.startswith("backbone."):
        return name
    if name.startswith("shared_head."):  # the C4 variant's res5 RoI head
        return "roi_head." + name
    match = re.fullmatch(r"neck\.(inner|layer)_blocks\.(\d)\.([01])\.(.+)", name)
    if match:
        kind, level, part, rest = match.groups()
        block = "lateral_convs" if kind == "inner" else "fpn_convs"
        return f"neck.{block}.{level}.{'conv' if part == '0' else 'bn'}.{rest}"
    match = re.fullmatch(r"head\.convs\.(\d+)\.(.+)", name)
    if match:
        index, rest = int(match.group(1)), match.group(2)
        conv, part = divmod(index, 3)
        return f"roi_head.bbox_head.shared_convs.{conv}.{'conv' if part == 0 else 'bn'}.{rest}"
    match = re.fullmatch(r"head\.fcs\.(\d)\.(.+)", name)
    if match:
        return f"roi_head.bbox_head.shared_fcs.{match.group(1)}.{match.group(2)}"
    if name.startswith("head.projection."):
        return "roi_head.bbox_head.fc_cls." + name.removeprefix("head.projection.")
    return None


def _key_side(name: str) -> str:
    for part in ("backbone", "neck", "roi_head"):
        if name.startswith(part + "."):
            return f"{part}_k." + name.removeprefix(part + ".")
    raise ValueError(name)


def mmdet_state_dict(query: dict[str, Tensor], key: dict[str, Tensor], queues: Tensor, queue_ptr: Tensor
                     ) -> dict[str, Tensor]:
    """The official ``InsLocFPN`` state dict from the query / key encoders' state dicts and the queues."""
    out = {to_mmdet_name(k): v for k, v in query.items()}
    out.update({_key_side(to_mmdet_name(k)): v for k, v in key.items()})
    out["queues"], out["queue_ptr"] = queues, queue_ptr
    return out


def _detectron2_name(mmdet: str, c4: bool = False) -> str | None:
    """The official converter's rule (FPN mode, or ``--c4``) for one query-side name; ``None`` for what it drops.
    C4: the stem under ``backbone.stem``, res2-res4 under ``backbone``, the RoI head's res5
    (``roi_head.shared_head.layer4``) under ``roi_heads.res5``, nothing of the box head."""
    mmdet = mmdet.replace("roi_head.shared_head.", "backbone.")  # the converter's first rename
    if mmdet.startswith("backbone."):
        rest = mmdet.removeprefix("backbone.")
        if not rest.startswith("layer"):
            return ("backbone.stem." if c4 else "backbone.bottom_up.stem.") + rest.replace("bn1", "conv1.norm")
        prefix = "roi_heads." if c4 and rest.startswith("layer4") else "backbone." if c4 else "backbone.bottom_up."
        for i in range(1, 5):
            rest = rest.replace(f"layer{i}", f"res{i + 1}")
        for i in range(1, 4):
            rest = rest.replace(f"bn{i}", f"conv{i}.norm")
        return prefix + rest.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
    match = re.fullmatch(r"neck\.(lateral|fpn)_convs\.(\d)\.(conv|bn)\.(.+)", mmdet)
    if match:
        kind, level, part, rest = match.groups()
        block = f"fpn_{'lateral' if kind == 'lateral' else 'output'}{int(level) + 2}"
        return f"backbone.{block}.{'norm.' if part == 'bn' else ''}{rest}"
    match = re.fullmatch(r"roi_head\.bbox_head\.shared_convs\.(\d)\.(conv|bn)\.(.+)", mmdet)
    if match:
        conv, part, rest = match.groups()
        return f"roi_heads.box_head.conv{int(conv) + 1}.{'norm.' if part == 'bn' else ''}{rest}"
    if c4:
        return None
    if mmdet.startswith("roi_head.bbox_head.shared_fcs.0."):
        return "roi_heads.box_head.fc1." + mmdet.removeprefix("roi_head.bbox_head.shared_fcs.0.")
    if mmdet.startswith("roi_head.bbox_head.shared_fcs."):
        return mmdet  # the official converter passes fc2 through unrenamed; detectron2 ignores it
    return None


def is_c4(mmdet_state: Mapping[str, Tensor]) -> bool:
    """Whether an official-layout state dict is the C4 variant (its RoI head holds res5)."""
    return any(name.startswith("roi_head.shared_head.") for name in mmdet_state)


def detectron2_checkpoint(mmdet_state: dict[str, Tensor]) -> dict:
    """What ``convert_pretrained.py`` pickles for an official state dict (``--c4`` for a C4 one)."""
    model, c4 = {}, is_c4(mmdet_state)
    for name, value in mmdet_state.items():
        target = _detectron2_name(name, c4)
        if target is not None:
            model[target] = value.detach().cpu().numpy()
    return {"model": model, "__author__": "genforce-papers insloc", "matching_heuristics": True}


def torchvision_state_dict(encoder: dict[str, Tensor]) -> dict[str, Tensor]:
    """``FasterRCNN`` names (``fasterrcnn_resnet50_fpn_v2`` box head: 4 x Conv2dNormActivation, Flatten, fc; a
    smaller encoder's head convs likewise): backbone, FPN, the head convs and fc1. The C4 variant gives its ResNet
    trunk with res5 (``shared_head.layer4``) as ``backbone.body.layer4`` (torchvision has no C4 detector)."""
    convs = max((int(name.split(".")[2]) // 3 + 1 for name in encoder if name.startswith("head.convs.")), default=0)
    out = {}
    for name, value in encoder.items():
        if name.startswith("backbone."):
            out["backbone.body." + name.removeprefix("backbone.")] = value
        elif name.startswith("shared_head."):
            out["backbone.body." + name.removeprefix("shared_head.")] = value
        elif name.startswith("neck."):
            out["backbone.fpn." + name.removeprefix("neck.")] = value
        elif name.startswith("head.convs."):
            index, rest = name.removeprefix("head.convs.").split(".", 1)
            conv, part = divmod(int(index), 3)
            out[f"roi_heads.box_head.{conv}.{part}.{rest}"] = value
        elif name.startswith("head.fcs.0."):
            out[f"roi_heads.box_head.{convs + 1}." + name.removeprefix("head.fcs.0.")] = value
    return out


def official_encoder_state(mmdet_state: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
    """The query encoder of an official state dict in this project's names (strict: a missing name is one line):
    :class:`insloc.model.InsLocFPN` for an FPN checkpoint; for a C4 one (its RoI head holds res5) the ResNet trunk
    of :class:`insloc.model.InsLocC4` (``backbone.*``, ``shared_head.layer4.*``), all the official ``--c4``
    conversion keeps (the C4 box head's names are not published)."""
    from insloc.model import InsLocC4, InsLocFPN

    state = {k.removeprefix("module."): v for k, v in mmdet_state.items()}
    c4 = is_c4(state)
    with torch.device("meta"):
        keys = [k for k in InsLocC4().state_dict() if not k.startswith("head.")] if c4 else \
            list(InsLocFPN().state_dict())
    out, missing = {}, []
    for name in keys:
        official = to_mmdet_name(name)
        if official in state:
            out[name] = state[official]
        else:
            missing.append(official or name)
    if missing:
        raise CheckpointError(f"{source} is not an InsLoc {'C4' if c4 else 'FPN'} checkpoint: it lacks {missing[0]}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return out


def read_encoder(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """(query encoder state in :class:`insloc.model.InsLocFPN` / ``InsLocC4`` names, the whole model's official
    state dict or ``None``) of a project snapshot or run dir (``insloc.train``; a MoCo v2 run gives its trunk as
    ``backbone.*``, nothing else), or of an official checkpoint (mmcv ``{'meta', 'state_dict', 'optimizer'}``, or a
    bare state dict: :func:`official_encoder_state`), read weights-only."""
    if Path(path).is_dir():
        path = resolve_resume(path, flag="--ckpt")
    saved = read_weights(path)
    if not isinstance(saved, Mapping):
        raise CheckpointError(f"{path} holds a {type(saved).__name__}, not an mmcv checkpoint or a state dict")
    if saved.get("format") == FORMAT:  # a project snapshot: its own names and its own (possibly tiny) sizes
        model = saved_module(saved, "model", str(path))
        query = {k.removeprefix("encoder_q."): v for k, v in model.items() if k.startswith("encoder_q.")}
        if "queue" in model and "encoder_q.fc.0.weight" in model:  # MoCo v2: the ResNet trunk without the MLP head
            return {"backbone." + k: v for k, v in query.items() if not k.startswith("fc.")}, None
        if "queues" not in model or not any(k.startswith("head.") for k in query):
            raise CheckpointError(f"{path} is not an insloc.train snapshot (its model has no InsLoc / MoCo queue)")
        key = {k.removeprefix("encoder_k."): v for k, v in model.items() if k.startswith("encoder_k.")}
        return query, mmdet_state_dict(query, key, model["queues"], model["queue_ptr"])
    state = saved.get("state_dict", saved)
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: 'state_dict' is a {type(state).__name__}, not a state dict")
    return official_encoder_state(state, str(path)), None


def read_official(path: str | Path) -> dict[str, Tensor]:
    """The query encoder's state dict of an official checkpoint (or a project snapshot): :func:`read_encoder`."""
    return read_encoder(path)[0]


FORMATS = ("detectron2", "torchvision", "mmdet")


@click.command()
@click.option("--ckpt", required=True, help="An insloc.train run dir / snapshot, or an official InsLoc FPN or C4 "
              "checkpoint (mmdet format, e.g. the model zoo's).")
@click.option("--to", "fmt", type=click.Choice(FORMATS), required=True,
              help="detectron2 .pkl, torchvision .pth, or mmdet (the official checkpoint layout, project runs only).")
@click.option("--out", required=True, help="The file to write.")
def main(ckpt: str, fmt: str, out: str) -> None:
    """Convert InsLoc weights for fine-tuning: detectron2 (as the official convert_pretrained.py), torchvision, or
    the official mmdet checkpoint layout."""
    with user_errors():
        if Path(out).exists():
            raise CheckpointError(f"{out} exists; give a new file name")
        encoder, whole = read_encoder(ckpt)
        if fmt == "mmdet":
            if whole is None:
                raise CheckpointError(f"{ckpt} is an official checkpoint or a MoCo v2 run; --to mmdet converts "
                                      "insloc.train runs of method insloc")
            atomic_save({"meta": {"source": "genforce-papers insloc"}, "state_dict": whole}, out)
        elif fmt == "detectron2":
            state = {to_mmdet_name(k): v for k, v in encoder.items()}
            tmp = Path(f"{out}.tmp")
            with open(tmp, "wb") as f:
                pickle.dump(detectron2_checkpoint(state), f)
            tmp.replace(out)
        else:
            atomic_save(torchvision_state_dict(encoder), out)
    click.echo(f"wrote {out} ({fmt})")


if __name__ == "__main__":
    main()
