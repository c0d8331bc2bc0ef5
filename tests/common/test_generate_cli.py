"""``python -m common.stylegan2.generate``: bad seeds, classes and devices are one usage line each (issue #24)."""

from __future__ import annotations

from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner

from common import dist
from common.stylegan2.generate import class_vector, main, parse_seeds


def test_parse_seeds_ranges_and_one_line_errors():
    assert parse_seeds("0-3,7") == [0, 1, 2, 3, 7] and parse_seeds(" 5 ") == [5]
    for bad in ("0-x", "-1", "3-1", "a", "", "0,,2", f"{2**32}"):
        with pytest.raises(click.BadParameter):
            parse_seeds(bad)


def test_class_vector_checks_the_range():
    conditional = SimpleNamespace(c_dim=3)
    assert class_vector(conditional, 2, 2, "cpu").tolist() == [[0, 0, 1], [0, 0, 1]]
    for bad in (-1, 3):  # -1 used to pick the last class silently
        with pytest.raises(click.UsageError, match="classes 0..2"):
            class_vector(conditional, bad, 1, "cpu")
    with pytest.raises(click.UsageError, match="pass --class"):
        class_vector(conditional, None, 1, "cpu")
    assert class_vector(SimpleNamespace(c_dim=0), None, 1, "cpu") is None


@pytest.mark.parametrize(("args", "message"), [
    (["--seeds", "0-x"], "give seeds like 0-15"),
    (["--seeds", "-3"], "give seeds like 0-15"),
    (["--device", "bogus"], "--device 'bogus' is not a device"),
    (["--device", "mps"], "only cpu and cuda"),
])
def test_generate_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, args, message):
    network = tmp_path / "network.pt"
    network.write_bytes(b"never read")
    result = CliRunner().invoke(main, ["--network", str(network), "--outdir", str(tmp_path / "out"), *args])
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_device_errors_are_device_errors():
    with pytest.raises(dist.DeviceError, match="not a device"):
        dist.resolve_device("gpu0")
    assert dist.resolve_device("cpu").type == "cpu"
