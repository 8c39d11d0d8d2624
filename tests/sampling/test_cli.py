"""``spikeshield sample``: help, bad input as one line, and the commands end to end on small data."""

import json
import shutil

import pytest

from spikeshield.cli import main

TINY = [
    "--epochs",
    "1",
    "--limit-train",
    "200",
    "--hidden",
    "4",
    "--recon-hidden",
    "8",
    "--recon-layers",
    "2",
]


COMPRESS = ["sample", "compress", "--run", "{runs}/spiking", "--rate", "0.1"]


def one_line_error(capsys, argv, code):
    assert main(argv) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("spikeshield: error: ") and "\n" not in err, err
    return err


@pytest.mark.parametrize("command", ["", "train", "evaluate", "compress", "experiment"])
def test_every_sample_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as done:
        main(["sample", *([command] if command else []), "--help"])
    assert done.value.code == 0
    assert "usage: spikeshield sample" in capsys.readouterr().out


@pytest.fixture(scope="module")
def digits_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "digits"
    assert (
        main(
            [
                "sample",
                "train",
                "--masks",
                "spiking",
                "random",
                "--rates",
                "0.2",
                "0.4",
                *TINY,
                "--out",
                str(out),
            ]
        )
        == 0
    )
    return out


@pytest.mark.parametrize(
    "argv",
    [
        ["sample", "train", "--rates", "0", "--out", "{tmp}/a"],
        ["sample", "train", "--rates", "0.2", "1.5", "--out", "{tmp}/a"],
        ["sample", "evaluate", "--run", "{runs}", "--rates", "-0.1", "--out", "{tmp}/e"],
        ["sample", "compress", "--run", "{runs}/spiking", "--rate", "0", "--out", "{tmp}/c.tar.gz"],
        ["sample", "compress", "--run", "{runs}/spiking", "--rate", "1.01", "--out", "{tmp}/c.tar.gz"],
    ],
)
def test_a_rate_outside_zero_one_is_a_one_line_usage_error(argv, capsys, tmp_path, digits_runs):
    argv = [a.format(tmp=tmp_path, runs=digits_runs) for a in argv]
    err = one_line_error(capsys, argv, 2)
    assert "must be in (0, 1]" in err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c.tar.gz").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["sample", "evaluate", "--run", "{runs}", "--limit", "0", "--out", "{tmp}/e"], "--limit must be"),
        (["sample", "evaluate", "--run", "{runs}", "--batch-size", "0", "--out", "{tmp}/e"], "--batch-size"),
        (["sample", "evaluate", "--run", "{runs}", "--seed", "-1", "--out", "{tmp}/e"], "--seed must be"),
        (["sample", "evaluate", "--run", "{tmp}/none", "--out", "{tmp}/e"], "does not exist"),
        (["sample", "evaluate", "--run", "{tmp}", "--out", "{tmp}/e"], "holds no sampling run"),
        ([*COMPRESS, "--seed", "-2", "--out", "{tmp}/c.tar.gz"], "--seed must be"),
        ([*COMPRESS, "--out", "{tmp}/c.bin"], "*.tar.gz"),
        ([*COMPRESS, "--out", "{tmp}/c.tar.gz"], "not on event data"),
        (["sample", "train", "--dataset", "nosuch", "--out", "{tmp}/a"], "nosuch"),
        (["sample", "train", "--epochs", "0", "--out", "{tmp}/a"], "epochs must be"),
    ],
)
def test_bad_options_are_one_line_usage_errors_that_write_nothing(
    argv, message, capsys, tmp_path, digits_runs
):
    argv = [a.format(tmp=tmp_path, runs=digits_runs) for a in argv]
    assert message in one_line_error(capsys, argv, 2)
    assert not any(tmp_path.iterdir())


def test_an_empty_event_file_is_a_one_line_error(capsys, tmp_path, digits_runs, small_nmnist):
    root = tmp_path / "data"
    shutil.copytree(small_nmnist, root)
    empty = root / "NMNIST" / "Test" / "0" / "00001.bin"
    empty.parent.mkdir(parents=True)
    empty.write_bytes(b"")
    (root / "NMNIST" / "Train").mkdir()
    out = tmp_path / "sampler"
    assert main(["sample", "train", "--dataset", "nmnist", "--data-root", str(small_nmnist), "-T", "4", *TINY,
                 "--rates", "0.2", "--out", str(out)]) == 0  # fmt: skip
    argv = ["sample", "compress", "--run", str(out / "spiking"), "--rate", "0.2", "--data-root", str(root)]
    err = one_line_error(capsys, [*argv, "--out", str(tmp_path / "c.tar.gz")], 1)
    assert "00001.bin: empty file (no events)" in err
    assert not (tmp_path / "c.tar.gz").exists()


def test_evaluate_writes_the_table_and_figures_and_keeps_them(digits_runs, capsys, tmp_path):
    out = tmp_path / "ev"
    assert (
        main(["sample", "evaluate", "--run", str(digits_runs), "--rates", "0.2", "1", "--out", str(out)]) == 0
    )
    text = capsys.readouterr().out
    assert "spiking − random-equal-bits" in text and "| 1 |" in text
    saved = json.loads((out / "evaluation.json").read_text())
    by = {(r["mask"], r["rate"]): r for r in saved["records"]}
    assert by[("spiking", 1.0)]["psnr"]["mean"] == float("inf")  # every pixel kept: exact
    assert by[("random", 0.2)]["measured_rate"] == pytest.approx(by[("spiking", 0.2)]["measured_rate"])
    assert by[("random-equal-bits", 0.2)]["measured_rate"] > by[("random", 0.2)]["measured_rate"]
    for name in ("table.md", "psnr.png", "masks.png"):
        assert (out / name).is_file()
    before = (out / "evaluation.json").read_bytes()
    one_line_error(capsys, ["sample", "evaluate", "--run", str(digits_runs), "--out", str(out)], 2)
    assert (out / "evaluation.json").read_bytes() == before


def test_compress_writes_a_file_that_reads_back(capsys, tmp_path, small_nmnist):
    out = tmp_path / "sampler"
    assert main(["sample", "train", "--dataset", "nmnist", "--data-root", str(small_nmnist), "-T", "4", *TINY,
                 "--rates", "0.1", "--out", str(out)]) == 0  # fmt: skip
    argv = ["sample", "compress", "--run", str(out / "spiking"), "--rate", "0.1", "--data-root"]
    argv += [str(small_nmnist), "--out", str(tmp_path / "k.tar.gz"), "--random", str(tmp_path / "r.tar.gz")]
    capsys.readouterr()
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and all("read back: exactly the kept events" in line for line in lines)
    before = (tmp_path / "k.tar.gz").read_bytes()
    assert "already exists" in one_line_error(capsys, argv, 2)
    assert (tmp_path / "k.tar.gz").read_bytes() == before
