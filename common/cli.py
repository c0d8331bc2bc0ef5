"""Command-line conventions shared by every ``train.py`` / ``eval.py``.

    python train.py --cfg configs/ffhq2k.yaml --set train.kimg=5000 --outdir runs/ --seed 0 --device cuda
    python train.py --resume runs/insgen/00003-ffhq2k          # continue that run in place

Options (:func:`common_options`): ``--cfg``, repeated ``--set``, ``--outdir``, ``--resume``, ``--seed``, ``--device``.
Runs go to ``<outdir>/<NNNNN>-<cfgname>`` (default outdir ``runs/<pkg>``); the number is one past the highest
existing one and the directory is created exclusively, so two runs never share or overwrite a directory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import click

from common import dist
from common.checkpoint import CheckpointError
from common.config import ConfigError, load_config, save_config
from common.data import DatasetError
from common.threads import configure_threads

F = TypeVar("F", bound=Callable[..., Any])
RESOLVED_CONFIG = "config.yaml"
_RUN_DIR = re.compile(r"^(\d{5})-")


def common_options(func: F | None = None, *, rows: Sequence[str] = ()) -> Any:
    """Add the shared options to a click command (they arrive as keyword arguments of the same names). Used bare
    (``@common_options``) or with the package's config rows for ``--cfg``'s help (``@common_options(rows=[...])``)."""
    cfg_help = f"Config row ({', '.join(rows)}) or a YAML file." if rows else "YAML config file."

    def decorate(function: F) -> F:
        options = [
            click.option("--cfg", "cfg", type=click.Path(dir_okay=False), default=None, help=cfg_help),
            click.option(
                "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable)."
            ),
            click.option(
                "--outdir", type=click.Path(file_okay=False), default=None, help="Parent of run dirs [runs/<pkg>]."
            ),
            click.option("--resume", type=click.Path(exists=True), default=None,
                         help="Run dir or snapshot to continue."),
            click.option("--seed", type=int, default=None, help="Random seed (overrides the config's)."),
            click.option("--device", default=None, help="cpu, cuda or cuda:N [auto: cuda if available]."),
        ]
        for option in reversed(options):
            function = option(function)
        return function

    return decorate(func) if func is not None else decorate


def row_config_file(cfg: str | None, resume: str | None, config_path: Callable[[str], Path], package: str,
                    default: str) -> str | None:
    """The YAML file of ``--cfg`` (a file or a row of ``<package>/configs/``); ``default``'s row when neither
    ``--cfg`` nor a resumable run dir is given; ``None`` when a run dir's own config applies."""
    cfg_file = str(config_path(cfg)) if cfg else None
    if cfg_file and not Path(cfg_file).is_file():
        raise click.UsageError(f"config {cfg!r} not found: give a YAML file or one of the rows in {package}/configs/")
    if cfg_file is None and not (resume and Path(resume).is_dir()):
        cfg_file = str(config_path(default))
    return cfg_file


def config_name(cfg_path: str | os.PathLike | None) -> str:
    """The run-dir suffix for a config file: its stem, or 'default'."""
    return Path(cfg_path).stem if cfg_path else "default"


def next_run_dir(outdir: str | os.PathLike, name: str) -> Path:
    """Create and return ``outdir/<NNNNN>-<name>`` with NNNNN one past the highest existing run number."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    numbers = [int(m.group(1)) for p in outdir.iterdir() if (m := _RUN_DIR.match(p.name))]
    run_id = max(numbers, default=-1) + 1
    while True:
        run_dir = outdir / f"{run_id:05d}-{name}"
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:  # another process took this number meanwhile
            run_id += 1


@dataclass(frozen=True)
class RunSetup:
    """What a CLI needs after parsing its shared options."""

    cfg: Any
    run_dir: Path
    resume_from: Path | None
    info: dist.DistInfo
    created: bool = False  # this start made run_dir
    made_parents: tuple[Path, ...] = ()  # folders above run_dir this start created (removed again if it fails)
    previous_config: str | None = None  # run_dir's config.yaml before this start rewrote it (resuming a run dir)
    snapshots: frozenset[tuple[str, int]] = frozenset()  # run_dir's snapshot files (name, mtime) at the start


_SNAPSHOT_NAME = re.compile(r"^.+-\d{9}\.pt$")  # CheckpointManager's <prefix>-<step:09d>.pt (snapshot-, vae-, gan-)


def _snapshot_files(run_dir: Path) -> frozenset[tuple[str, int]]:
    return frozenset((p.name, p.stat().st_mtime_ns) for p in Path(run_dir).glob("*-*.pt")
                     if _SNAPSHOT_NAME.match(p.name))


def setup_run(
    schema: type,
    package: str,
    cfg: str | None,
    overrides: Sequence[str],
    outdir: str | None,
    resume: str | None,
    seed: int | None,
    device: str | None,
    seed_key: str = "seed",
) -> RunSetup:
    """Load and validate the config, initialise distributed mode, seed this rank and create the run dir.

    Resuming a run dir reuses it and its saved ``config.yaml`` (``--cfg``/``--set`` then apply on top); resuming a
    snapshot file starts a new run dir. Config errors become ``click.UsageError`` so users see one clear line.
    CPU threads are set by :func:`common.threads.configure_threads` (1 unless ``GENFORCE_NUM_THREADS`` says).
    """
    resume_path = Path(resume) if resume else None
    if cfg is None and resume_path is not None and resume_path.is_dir():
        cfg = str(resume_path / RESOLVED_CONFIG)
    try:
        config = load_config(schema, cfg, overrides)
        if seed is not None:
            config = _with_seed(config, seed_key, seed)
    except ConfigError as err:
        raise click.UsageError(str(err)) from None
    configure_threads()
    try:
        info = dist.init_distributed(device)
    except dist.DeviceError as err:
        raise click.UsageError(str(err)) from None
    dist.seed_all(getattr(config, seed_key, 0))
    created, previous = False, None
    if resume_path is not None and resume_path.is_dir():
        run_dir = resume_path
        if (run_dir / RESOLVED_CONFIG).is_file():
            previous = (run_dir / RESOLVED_CONFIG).read_text()
    else:
        parent = Path(outdir or Path("runs") / package)
        made_parents = tuple(p for p in (parent, *parent.parents) if not p.exists())  # innermost first
        made: Path | str | None = None
        if info.is_main:
            try:
                made = next_run_dir(parent, config_name(cfg))
            except OSError as err:  # every rank stops with the same line
                made = f"--outdir {parent}: cannot create a run dir there ({err.strerror or err}); give a folder"
        run_dir = dist.broadcast_object(made)
        if isinstance(run_dir, str):
            raise click.UsageError(run_dir)
        created = True
    if info.is_main:
        save_config(config, run_dir / RESOLVED_CONFIG)
        dist.print0(f"run dir: {run_dir}")
    return RunSetup(cfg=config, run_dir=Path(run_dir), resume_from=resume_path, info=info, created=created,
                    made_parents=made_parents if created else (), previous_config=previous,
                    snapshots=_snapshot_files(run_dir))


def _remove_run_dir(setup: RunSetup) -> None:
    """A run dir this start created, and the then-empty folders above it that it created too."""
    shutil.rmtree(setup.run_dir, ignore_errors=True)
    for folder in setup.made_parents:
        try:
            folder.rmdir()  # only if empty: another run may have appeared there meanwhile
        except OSError:
            break


@contextlib.contextmanager
def failed_start_undone(setup: RunSetup, remove_untrained: bool = True) -> Iterator[None]:
    """A start that fails before writing its first snapshot leaves no trace: a run dir it created is removed, a run
    dir it resumed gets its ``config.yaml`` back, or none if it had none (e.g. after ``--resume RUN --set
    G.channel_max=32`` did not fit the snapshot). Failures after a new snapshot keep everything (the work since then
    is what resume continues); a start that trained nothing (resuming a finished snapshot into a new run dir) leaves
    no run dir either, unless ``remove_untrained`` is False (trainers that write a final model file even then)."""
    try:
        yield
    except BaseException:
        if setup.info.is_main and _snapshot_files(setup.run_dir) <= setup.snapshots:
            if setup.created:
                _remove_run_dir(setup)
            elif setup.previous_config is not None:
                (setup.run_dir / RESOLVED_CONFIG).write_text(setup.previous_config)
            else:  # the resumed dir had no config.yaml (e.g. a run a reproduction trained directly)
                (setup.run_dir / RESOLVED_CONFIG).unlink(missing_ok=True)
        raise
    if remove_untrained and setup.info.is_main and setup.created and not _snapshot_files(setup.run_dir):
        _remove_run_dir(setup)  # nothing was trained (a finished snapshot resumed)


@contextlib.contextmanager
def output_run(setup: RunSetup) -> Iterator[None]:
    """For CLIs that write a result instead of training (sampling, evaluation, pseudo-labels, prototypes): a run dir
    given with ``--resume`` keeps the record of the run that made it (its ``config.yaml`` is put back, or removed if
    it had none), whether the command succeeds or fails; a run dir this command created is removed if it fails."""
    try:
        yield
    except BaseException:
        if setup.info.is_main and setup.created:
            _remove_run_dir(setup)
        raise
    finally:
        if setup.info.is_main and not setup.created:
            record = setup.run_dir / RESOLVED_CONFIG
            if setup.previous_config is not None:
                record.write_text(setup.previous_config)
            else:
                record.unlink(missing_ok=True)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn the errors users cause (bad config, dataset or checkpoint) into one ``Error: ...`` line, exit 1."""
    try:
        yield
    except (ConfigError, DatasetError, CheckpointError) as err:
        raise click.ClickException(worker_message(str(err))) from None


def worker_message(text: str) -> str:
    """The original one-line message of an error a DataLoader worker re-raised in the main process (torch wraps it
    as 'Caught X in DataLoader worker process N.' plus the worker's traceback); other text as it is."""
    if "in DataLoader worker process" not in text or "Traceback" not in text:
        return text
    last = text.strip().splitlines()[-1]  # '<module>.<Error>: <message>'
    return last.split(": ", 1)[1] if ": " in last else last


def _with_seed(config: Any, seed_key: str, seed: int) -> Any:
    if seed_key not in {f.name for f in dataclasses.fields(config)}:
        raise ConfigError(f"--seed given but the config has no '{seed_key}' key")
    return dataclasses.replace(config, **{seed_key: seed})
