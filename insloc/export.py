"""``python -m insloc.export --ckpt CKPT --to detectron2|torchvision --out FILE``: InsLoc weights in the formats users
fine-tune in, and official checkpoints in.

- ``mmdet``: the official checkpoint layout (``{'meta', 'state_dict'}`` as mmcv's ``save_checkpoint`` writes it;
  names of ``InsLocFPN``: ``backbone.*`` (torchvision ResNet names), ``neck.{lateral,fpn}_convs.i.{conv,bn}``,
  ``roi_head.bbox_head.shared_convs.j.{conv,bn}``, ``shared_fcs.k``, ``fc_cls``, the key copies ``backbone_k``,
  ``neck_k``, ``roi_head_k``, and ``queues`` / ``queue_ptr``);
- ``detectron2``: the pickle of the official ``transfer/detection/convert_pretrained.py`` (FPN mode): backbone,
  FPN, the 4 head convs and fc1 in detectron2 names as numpy arrays, ``{'model', '__author__',
  'matching_heuristics': True}``; the projection is dropped and fc2 kept under its mmdet name, as officially
  (detectron2 ignores it);
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


def _detectron2_name(mmdet: str) -> str | None:
    """The official converter's FPN-mode rule for one query-side name; ``None`` for what it drops."""
    if mmdet.startswith("backbone."):
        rest = mmdet.removeprefix("backbone.")
        if not rest.startswith("layer"):
            return "backbone.bottom_up.stem." + rest.replace("bn1", "conv1.norm")
        for i in range(1, 5):
            rest = rest.replace(f"layer{i}", f"res{i + 1}")
        for i in range(1, 4):
            rest = rest.replace(f"bn{i}", f"conv{i}.norm")
        rest = rest.replace("downsample.0", "shortcut").replace("downsample.1", "shortcut.norm")
        return "backbone.bottom_up." + rest
    match = re.fullmatch(r"neck\.(lateral|fpn)_convs\.(\d)\.(conv|bn)\.(.+)", mmdet)
    if match:
        kind, level, part, rest = match.groups()
        block = f"fpn_{'lateral' if kind == 'lateral' else 'output'}{int(level) + 2}"
        return f"backbone.{block}.{'norm.' if part == 'bn' else ''}{rest}"
    match = re.fullmatch(r"roi_head\.bbox_head\.shared_convs\.(\d)\.(conv|bn)\.(.+)", mmdet)
    if match:
        conv, part, rest = match.groups()
        return f"roi_heads.box_head.conv{int(conv) + 1}.{'norm.' if part == 'bn' else ''}{rest}"
    if mmdet.startswith("roi_head.bbox_head.shared_fcs.0."):
        return "roi_heads.box_head.fc1." + mmdet.removeprefix("roi_head.bbox_head.shared_fcs.0.")
    if mmdet.startswith("roi_head.bbox_head.shared_fcs."):
        return mmdet  # the official converter passes fc2 through unrenamed; detectron2 ignores it
    return None


def detectron2_checkpoint(mmdet_state: dict[str, Tensor]) -> dict:
    """What ``convert_pretrained.py`` (FPN mode) pickles for an official state dict."""
    model = {}
    for name, value in mmdet_state.items():
        target = _detectron2_name(name)
        if target is not None:
            model[target] = value.detach().cpu().numpy()
    return {"model": model, "__author__": "genforce-papers insloc", "matching_heuristics": True}


def torchvision_state_dict(encoder: dict[str, Tensor]) -> dict[str, Tensor]:
    """``FasterRCNN`` names (``fasterrcnn_resnet50_fpn_v2`` box head: 4 x Conv2dNormActivation, Flatten, fc; a
    smaller encoder's head convs likewise): backbone, FPN, the head convs and fc1."""
    convs = max((int(name.split(".")[2]) // 3 + 1 for name in encoder if name.startswith("head.convs.")), default=0)
    out = {}
    for name, value in encoder.items():
        if name.startswith("backbone."):
            out["backbone.body." + name.removeprefix("backbone.")] = value
        elif name.startswith("neck."):
            out["backbone.fpn." + name.removeprefix("neck.")] = value
        elif name.startswith("head.convs."):
            index, rest = name.removeprefix("head.convs.").split(".", 1)
            conv, part = divmod(int(index), 3)
            out[f"roi_heads.box_head.{conv}.{part}.{rest}"] = value
        elif name.startswith("head.fcs.0."):
            out[f"roi_heads.box_head.{convs + 1}." + name.removeprefix("head.fcs.0.")] = value
    return out


def official_encoder_state(mmdet_state: Mapping[str, Tensor], model_keys: list[str], source: str
                           ) -> dict[str, Tensor]:
    """The query encoder of an official state dict in :class:`insloc.model.InsLocFPN` names (strict: a missing or
    foreign name is one line)."""
    state = {k.removeprefix("module."): v for k, v in mmdet_state.items()}
    out, missing = {}, []
    for name in model_keys:
        official = to_mmdet_name(name)
        if official in state:
            out[name] = state[official]
        else:
            missing.append(official or name)
    if missing:
        raise CheckpointError(f"{source} is not an InsLoc FPN checkpoint: it lacks {missing[0]}"
                              + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
    return out


def read_encoder(path: str | Path, model_keys: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """(query encoder state in :class:`insloc.model.InsLocFPN` names, the whole model's official state dict or
    ``None``) of a project snapshot or run dir (``insloc.train``; a MoCo v2 run gives its trunk as ``backbone.*``,
    nothing else), or of an official checkpoint (mmcv ``{'meta', 'state_dict', 'optimizer'}``, or a bare state
    dict, checked against ``model_keys``), read weights-only."""
    if Path(path).is_dir():
        path = resolve_resume(path)
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
    return official_encoder_state(state, model_keys, str(path)), None


def read_official(path: str | Path, model_keys: list[str]) -> dict[str, Tensor]:
    """The query encoder's state dict of an official checkpoint (or a project snapshot): :func:`read_encoder`."""
    return read_encoder(path, model_keys)[0]


FORMATS = ("detectron2", "torchvision", "mmdet")


@click.command()
@click.option("--ckpt", required=True, help="An insloc.train run dir / snapshot, or an official InsLoc FPN checkpoint "
              "(mmdet format, e.g. the model zoo's).")
@click.option("--to", "fmt", type=click.Choice(FORMATS), required=True,
              help="detectron2 .pkl, torchvision .pth, or mmdet (the official checkpoint layout, project runs only).")
@click.option("--out", required=True, help="The file to write.")
def main(ckpt: str, fmt: str, out: str) -> None:
    """Convert InsLoc weights for fine-tuning: detectron2 (as the official convert_pretrained.py), torchvision, or
    the official mmdet checkpoint layout."""
    from insloc.model import InsLocFPN

    with user_errors():
        if Path(out).exists():
            raise CheckpointError(f"{out} exists; give a new file name")
        with torch.device("meta"):
            keys = list(InsLocFPN().state_dict())
        encoder, whole = read_encoder(ckpt, keys)
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
