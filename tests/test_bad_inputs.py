"""Bad input on every CLI: exit != 0, one ``Error:`` line naming the key or file, no traceback, nothing written.

Each case runs the CLI in-process (click's runner) with ``--outdir``/``--out`` pointed at an empty folder where the CLI
has one; the folder must stay empty. The cases are what a new user (or an adversary) types: unknown keys, numbers out
of range, missing, empty, text, truncated or foreign files, wrong presets, seeds and devices.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from common.stylegan2.pretrained import SourceTraining, pretrained_source_gan


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("bad")
    (root / "text.txt").write_text("not a checkpoint\n")
    (root / "text.pt").write_text("not a checkpoint\n")
    (root / "empty.pt").write_bytes(b"")
    (root / "random.pt").write_bytes(np.random.default_rng(0).bytes(500))
    torch.save({"weights": torch.zeros(2)}, root / "foreign.pt")
    source = pretrained_source_gan(SourceTraining(total_kimg=0.032))
    (root / "cut.pt").write_bytes(source.read_bytes()[:2000])
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(root / "image.png")
    (root / "notes.png").write_text("not an image")
    (root / "emptydir").mkdir()
    (root / "afile").write_text("")
    script = root / "linear_script.pt"  # a TorchScript file of another network
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), script)
    (root / "script_cut.pt").write_bytes(script.read_bytes()[:300])
    # a pickle that would call os.system('true') when loaded: every importer must refuse it without running it
    (root / "payload.pkl").write_bytes(b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.")
    from common.config import load_config
    from es_ddpm.config import ESDDPMConfig, config_path
    from es_ddpm.train import train_ddpm

    es_cfg = load_config(ESDDPMConfig, config_path("tiny"), ["train.iterations=1", "train.snapshot_every=1"])
    train_ddpm(es_cfg, root / "es_run")  # another package's snapshot, written the way es_ddpm writes it
    es_snapshot = next((root / "es_run").glob("snapshot-*.pt"))
    named = {p.stem + p.suffix.replace(".", "_"): str(p) for p in root.iterdir()}  # text.pt -> text_pt
    return {"root": str(root), "source": str(source), "es_snapshot": str(es_snapshot), **named}


CASES = [
    # common.stylegan2.train
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.lr=1"], "unknown config key"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.batch=0"], "train.batch must be >= 1"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.total_kimg=nan"], "train.total_kimg"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.snap_ticks=0"], "train.snap_ticks"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.keep_snapshots=0"], "train.keep_snapshots"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "optim.g_lr=-1"], "optim.g_lr"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "loss.style_mixing_prob=2"], "style_mixing_prob"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.batch=oops"], "train.batch"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.batch_gpu=5"], "train.batch_gpu 5"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--device", "bogus"], "--device 'bogus'"),
    ("common.stylegan2.train", ["--cfg", "paper256"], "data.path is not set"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "data.source=path", "--set", "data.path={root}/none.zip"],
     "does not exist"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.init_from={text_pt}"], "text.pt"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "train.init_from={cut_pt}"], "cut.pt"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--set", "methods=[nope]"], "nope"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--outdir", "{afile}/runs"], "cannot create a run dir"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--resume", "{emptydir}"], "no snapshot-*.pt"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--resume", "{random_pt}"], "random.pt"),
    ("common.stylegan2.train", ["--cfg", "tiny", "--resume", "{foreign_pt}"], "not a genforce-papers snapshot"),
    # paper train CLIs
    ("insgen.train", ["--cfg", "nope"], "config 'nope' not found"),
    ("insgen.train", ["--cfg", "tiny", "--set", "insgen.temperature=oops"], "insgen.temperature"),
    ("dynamicd.train", ["--cfg", "tiny", "--set", "dynamicd.occupy_start=2"], "occupy_start"),
    ("dynamicd.train", ["--cfg", "tiny", "--set", "dynamicd.interval=0"], "dynamicd.interval"),
    ("eqgan.train", ["--cfg", "tiny", "--set", "eqgan.levels=[b64]"], "eqgan.levels"),
    ("eqgan.train", ["--cfg", "tiny", "--set", "eqgan.align_thres=1.5"], "align_thres"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--source", "{source}"], "no target"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{root}/missing.png", "--source", "{source}"],
     "does not exist"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{notes_png}", "--source", "{source}"], "cannot be decoded"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{text_txt}", "--source", "{source}"], "not an image file"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{emptydir}", "--source", "{source}"], "no image files"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{empty_pt}"], "is empty"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{root}/none.pkl"],
     "does not exist"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{source}", "--set",
                           "genda.method=freezed"], "D.freeze_layers"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{source}", "--set",
                           "genda.psi_train=0"], "psi_train"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{source}", "--set",
                           "data.resolution=64"], "the source G is"),
    # generation and evaluation
    ("common.stylegan2.generate", ["--network", "{text_pt}", "--outdir", "{out}"], "text.pt"),
    ("common.stylegan2.generate", ["--network", "{source}", "--seeds", "0-x", "--outdir", "{out}"], "0-x"),
    ("common.stylegan2.generate", ["--network", "{source}", "--seeds", "-3", "--outdir", "{out}"], "-3"),
    ("common.stylegan2.generate", ["--network", "{source}", "--noise-mode", "loud", "--outdir", "{out}"],
     "--noise-mode"),
    ("common.stylegan2.generate", ["--network", "{source}", "--device", "bogus", "--outdir", "{out}"], "bogus"),
    ("insgen.eval", ["--ckpt", "{random_pt}", "--data", "{root}"], "random.pt"),
    ("insgen.eval", ["--ckpt", "{payload_pkl}", "--data", "{root}"], "refusing to load global os.system"),
    ("common.stylegan2.generate", ["--network", "{payload_pkl}", "--outdir", "{out}"], "refusing to load global"),
    ("common.metrics.__main__", ["fid", "--real", "{root}", "--network", "{payload_pkl}"], "refusing to load global"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{payload_pkl}"],
     "refusing to load global"),
    ("insgen.eval", ["--ckpt", "{source}", "--data", "{root}/none.zip"], "does not exist"),
    ("insgen.eval", ["--ckpt", "{source}", "--data", "{emptydir}"], "no image files"),
    ("insgen.eval", ["--ckpt", "{source}", "--data", "{root}", "--metrics", "lpips"], "unknown metric"),
    ("oneshot_gan.eval", ["--ckpt", "{cut_pt}", "--data", "{root}", "--out", "{out}"], "cut.pt"),
    ("oneshot_gan.eval", ["--ckpt", "{source}", "--data", "{emptydir}", "--out", "{out}"], "no image files"),
    ("oneshot_gan.eval", ["--ckpt", "{source}", "--data", "{root}", "--metrics", "is", "--out", "{out}"],
     "unknown metric"),
    ("common.metrics.__main__", ["fid", "--real", "{root}/none.zip", "--fake", "{root}", "--out", "{out}/m.jsonl"],
     "does not exist"),
    ("common.metrics.__main__", ["fid", "--real", "{emptydir}", "--network", "{text_pt}", "--out", "{out}/m.jsonl"],
     "text.pt"),
    ("common.metrics.__main__", ["fid", "--real", "{root}", "--fake", "{root}", "--network", "{source}"],
     "exactly one"),
    ("common.metrics.__main__", ["kid", "--real", "{root}", "--fake", "{root}", "--weights", "{random_pt}"],
     "random.pt"),
    ("common.metrics.__main__", ["fid", "--real", "{root}", "--fake", "{root}", "--weights", "{linear_script_pt}"],
     "does not hold the FID Inception's weights"),
    ("common.metrics.__main__", ["fid", "--real", "{root}", "--fake", "{root}", "--weights", "{foreign_pt}"],
     "does not hold the FID Inception's weights"),
    ("common.metrics.__main__", ["fid", "--real", "{root}", "--fake", "{root}", "--weights", "{script_cut_pt}"],
     "truncated or corrupt"),
    ("common.metrics.__main__", ["pr", "--real", "{root}", "--fake", "{root}", "--weights", "{linear_script_pt}"],
     "does not behave like NVIDIA's vgg16.pt detector"),
    ("common.metrics.__main__", ["pr", "--real", "{root}", "--fake", "{root}", "--weights", "{script_cut_pt}"],
     "not a loadable TorchScript detector"),
    ("common.data.tool", ["--source", "{root}/none", "--dest", "{out}/d.zip"], "does not exist"),
    ("common.data.tool", ["--source", "{emptydir}", "--dest", "{out}/d.zip"], "no image files"),
    ("common.data.tool", ["--source", "{root}", "--dest", "{out}/d.zip", "--width", "24", "--height", "24"],
     "power of two"),
    # es_ddpm
    ("es_ddpm.train", ["--cfg", "tiny", "--set", "train.batch=0"], "train.batch=0 must be >= 1"),
    ("es_ddpm.train", ["--cfg", "tiny", "--set", "train.lr=nan"], "finite number > 0"),
    ("es_ddpm.train", ["--cfg", "tiny", "--set", "train.max_timestep=5000"], "max_timestep"),
    ("es_ddpm.train", ["--cfg", "nope"], "nope"),
    ("es_ddpm.train", ["--cfg", "tiny", "--what", "dcgan", "--set", "gan.iterations=0"], "gan.iterations=0 must be"),
    ("es_ddpm.train", ["--cfg", "tiny", "--what", "vae", "--set", "vae.lr=nan"], "vae.lr=nan must be"),
    ("es_ddpm.train", ["--cfg", "tiny", "--what", "dcgan", "--resume", "{emptydir}"], "trains in one go"),
    ("es_ddpm.sample", ["--cfg", "tiny", "--ckpt", "{text_pt}", "--prior", "noise"], "text.pt"),
    ("es_ddpm.sample", ["--cfg", "tiny", "--ckpt", "{source}", "--prior", "noise"], "snapshot"),
    ("es_ddpm.sample", ["--cfg", "tiny", "--ckpt", "{root}/none.pt", "--prior", "npz"], "none.pt"),
    # procA
    ("procA.train_src", ["--cfg", "tiny", "--set", "train_src.iters=0"], "iters"),
    ("procA.train_src", ["--cfg", "tiny", "--set", "train_src.lr=inf"], "lr"),
    ("procA.train_src", ["--cfg", "tiny", "--set", "data.source=gta5", "--set", "data.source_root={root}/none"],
     "none"),
    ("procA.eval", ["--cfg", "tiny", "--ckpt", "{text_pt}"], "text.pt"),
    ("procA.eval", ["--cfg", "tiny", "--ckpt", "{source}"], "snapshot"),
    ("procA.pseudo_label", ["--cfg", "tiny", "--ckpt", "{random_pt}"], "random.pt"),
    ("procA.init_prototypes", ["--cfg", "tiny", "--ckpt", "{empty_pt}"], "is empty"),
    ("procA.train_proca", ["--cfg", "tiny", "--set", "train_proca.batch_size=0"], "batch_size"),
    ("procA.train_ssl", ["--cfg", "tiny", "--set", "pseudo_label.labels_dir={root}/none"], "none"),
    ("dynamicd.generate", ["--network", "{empty_pt}", "--outdir", "{out}"], "is empty"),
    ("eqgan.generate", ["--network", "{foreign_pt}", "--outdir", "{out}"], "foreign.pt"),
    ("eqgan.eval", ["--ckpt", "{source}", "--data", "{emptydir}", "--metrics", "di"], "no image files"),
    ("oneshot_gan.generate", ["--network", "{cut_pt}", "--outdir", "{out}"], "cut.pt"),
    ("oneshot_gan.bench", ["--preset", "nope"], "unknown --preset"),
    # reproductions
    ("insgen.reproduce", ["--preset", "nope"], "nope"),
    ("eqgan.reproduce", ["--preset", "ffhq"], "DATA"),
    ("es_ddpm.reproduce", ["--preset", "nope"], "nope"),
    ("dynamicd.reproduce", ["--preset", "nope"], "unknown PRESET"),
    ("oneshot_gan.reproduce", ["--preset", "nope"], "unknown PRESET"),
    ("oneshot_gan.reproduce", ["--preset", "ffhq_babies"], "needs DATA"),
    ("oneshot_gan.reproduce", ["--seeds", "a,b"], "comma-separated integers"),
    ("oneshot_gan.reproduce", ["--workers", "0"], "--workers"),
    ("oneshot_gan.train", ["--cfg", "tiny", "--target", "{image_png}", "--source", "{es_snapshot}"],
     "not a StyleGAN2-family snapshot"),
    ("procA.reproduce", ["--seeds", "1.5"], "comma-separated integers"),
    # ghfeat
    ("ghfeat.train", ["--cfg", "tiny", "--generator", "{text_pt}"], "not a PyTorch file"),
    ("ghfeat.train", ["--cfg", "tiny", "--generator", "{payload_pkl}"], "refusing to load global"),
    ("ghfeat.train", ["--cfg", "tiny", "--generator", "{es_snapshot}"], "not a StyleGAN2-family snapshot"),
    ("ghfeat.train", ["--cfg", "tiny", "--generator", "{cut_pt}"], "cut.pt"),
    ("ghfeat.train", ["--cfg", "tiny", "--generator", "{source}", "--data", "{emptydir}"], "no image"),
    ("ghfeat.train", ["--cfg", "tiny", "--set", "loss.r1_every=0"], "loss.r1_every"),
    ("ghfeat.train", ["--cfg", "tiny", "--set", "optim.d_lr=nan"], "optim.d_lr"),
    ("ghfeat.train", ["--cfg", "tiny", "--set", "train.snapshot_kimg=0"], "train.snapshot_kimg"),
    ("ghfeat.train", ["--cfg", "ffhq256"], "no generator"),
    ("ghfeat.train", ["--cfg", "tiny", "--pretrained_D"], "--fresh-D"),
    ("ghfeat.eval", ["extract", "--encoder", "{payload_pkl}", "--images", "{image_png}", "-o", "{out}"],
     "refusing global os.system"),
    ("ghfeat.eval", ["extract", "--encoder", "{text_pt}", "--images", "{image_png}", "-o", "{out}"],
     "not a PyTorch file"),
    ("ghfeat.eval", ["extract", "--encoder", "{source}", "--images", "{image_png}", "-o", "{out}"],
     "not a GH-Feat snapshot"),
    ("ghfeat.eval", ["extract", "--encoder", "{es_snapshot}", "--images", "{image_png}", "-o", "{out}"],
     "not a GH-Feat snapshot"),
    ("ghfeat.eval", ["probe", "--encoder", "{text_txt}", "--train", "{root}", "--test", "{root}"],
     "is not a GH-Feat snapshot"),
    ("ghfeat.reproduce", ["--preset", "nope"], "unknown PRESET"),
    ("ghfeat.reproduce", ["--preset", "ffhq256"], "needs DATA"),
    ("ghfeat.reproduce", ["--workers", "0"], "--workers"),
    ("ghfeat.bench", ["--what", "nope"], "--what"),
    # cmpl
    ("cmpl.train", ["--cfg", "tiny", "--set", "ssl.tau=2"], "ssl.tau"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "train.batch=0"], "train.batch"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "primary.clip_len=7"], "must span the same frames"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "data.source=lists"], "give data.train_list"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "data.source=lists", "--set", "data.train_list={root}/none.txt",
                    "--set", "data.val_list={root}/none.txt"], "does not exist"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "data.label_fraction=0"], "label fraction"),
    ("cmpl.train", ["--cfg", "tiny", "--set", "primary.pretrained={text_pt}"], "not a PyTorch file"),
    ("cmpl.train", ["--cfg", "nope"], "not found"),
    ("cmpl.eval", ["--ckpt", "{text_pt}"], "not a PyTorch file"),
    ("cmpl.eval", ["--ckpt", "{es_snapshot}"], "not a CMPL snapshot"),
    ("cmpl.eval", ["--ckpt", "{emptydir}"], "holds no snapshot"),
    ("cmpl.bench", ["--what", "nope"], "--what"),
    ("cmpl.reproduce", ["--preset", "nope"], "unknown PRESET"),
    ("cmpl.reproduce", ["--preset", "ucf101_1pct"], "needs DATA"),
    ("cmpl.reproduce", ["--preset", "k400_1pct", "--data", "{emptydir}", "--outdir", "{out}"],
     "lacks kinetics400_train_list_videos.txt"),
    ("cmpl.reproduce", ["--report-only", "--outdir", "{out}"], "no results.json"),
    # insloc
    ("insloc.train", ["--cfg", "fpn_200ep"], "data.path is empty"),
    ("insloc.train", ["--cfg", "fpn_200ep", "--set", "data.path={emptydir}"], "no image files found"),
    ("insloc.train", ["--cfg", "fpn_200ep", "--set", "model.queue_size=100"], "multiple of train.batch"),
    ("insloc.train", ["--cfg", "nope"], "not found"),
    ("insloc.eval", ["--ckpt", "{text_pt}"], "not a PyTorch file"),
    ("insloc.eval", ["--ckpt", "{emptydir}"], "holds no snapshot"),
    ("insloc.transfer", ["--images", "{emptydir}", "--train", "{emptydir}/none.json", "--val-images", "{emptydir}",
                         "--val", "{emptydir}/none.json", "--out", "{out}"], "no COCO annotation file"),
    ("insloc.transfer", ["--images", "{emptydir}", "--train", "{text_pt}", "--val-images", "{emptydir}",
                         "--val", "{text_pt}", "--out", "{out}"], "is not a COCO instances file"),
    ("insloc.export", ["--ckpt", "{text_pt}", "--to", "torchvision", "--out", "{out}/x.pth"], "not a PyTorch file"),
    ("insloc.export", ["--ckpt", "{es_snapshot}", "--to", "detectron2", "--out", "{out}/x.pkl"],
     "not an insloc.train snapshot"),
    ("insloc.reproduce", ["--preset", "nope"], "unknown PRESET"),
    ("insloc.reproduce", ["--preset", "fpn_200ep"], "needs DATA"),
    ("insloc.reproduce", ["--preset", "fpn_200ep", "--data", "{emptydir}/none", "--outdir", "{out}"],
     "does not exist"),
    ("insloc.reproduce", ["--report-only", "--outdir", "{out}"], "no results.json"),
    ("insloc.bench", ["--what", "data", "--path", "{emptydir}"], "no image files found"),
]


RUN_DIR_CLIS = {"common.stylegan2.train", "insgen.train", "dynamicd.train", "eqgan.train", "oneshot_gan.train",
                "es_ddpm.train", "es_ddpm.sample", "procA.train_src", "procA.train_proca", "procA.train_ssl",
                "procA.eval", "procA.pseudo_label", "procA.init_prototypes",
                "ghfeat.train", "cmpl.train", "insloc.train"}  # CLIs that make <outdir>/NNNNN-<cfg>


def _ids(case: tuple) -> str:
    module, args, _ = case
    return f"{module} {' '.join(args)}"[:90]


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, files, tmp_path, monkeypatch):
    module, args, message = case
    monkeypatch.chdir(tmp_path)  # default output folders (runs/, results/) land here: they must not appear
    out = tmp_path / "out"
    out.mkdir()
    values = {**files, "out": str(out)}
    argv = [a.format(**values) for a in args]
    if "--outdir" not in argv and module in RUN_DIR_CLIS and module != "procA.train_ssl":
        argv += ["--outdir", str(out)]  # train_ssl: its default runs/ must not appear either
    command = importlib.import_module(module).main
    result = CliRunner().invoke(command, argv)
    assert result.exit_code != 0, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, result.output
    assert message.format(**values) in result.output, result.output
    assert not any(out.iterdir()), sorted(p.name for p in out.iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no runs/ or results/ either


def test_the_suite_covers_every_cli_with_sixty_cases():
    assert len(CASES) >= 60
    assert len({module for module, _, _ in CASES}) >= 20


def test_resuming_another_packages_run_dir_leaves_it_as_it_was(files, tmp_path):
    """A run dir with a snapshot but no config.yaml (as a reproduction's directly trained runs are) resumed by the
    wrong CLI: one line, and no config.yaml left behind in it."""
    import shutil

    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(files["es_snapshot"], run / "snapshot-000000001.pt")
    before = sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir())
    command = importlib.import_module("insloc.train").main
    result = CliRunner().invoke(command, ["--cfg", "tiny", "--resume", str(run)])
    assert result.exit_code != 0 and "Traceback" not in result.output, result.output
    assert "does not fit module" in result.output
    assert sorted((p.name, p.stat().st_mtime_ns) for p in run.iterdir()) == before
