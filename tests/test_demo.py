"""The demo CLI (snntorch_clif.demo): arguments, errors, data, and a tiny end-to-end run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import snntorch_clif
from snntorch_clif import demo


def _error(capsys: pytest.CaptureFixture, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        demo.main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_defaults() -> None:
    args = demo.parse_args([])
    assert args.dataset == ["digits", "mnist1d"]
    assert args.neurons == ["clif", "leaky"]
    assert args.seeds == 3 and args.device == "cpu"
    assert demo._settings(args, "mnist1d") == demo.DEFAULTS["mnist1d"]
    args = demo.parse_args(["--dataset", "digits", "digits", "--T", "4", "--epochs", "2"])
    assert args.dataset == ["digits"]
    assert demo._settings(args, "digits") == (2, 128, 4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--neurons", "izhikevich"], "invalid choice"),
        (["--dataset", "imagenet"], "invalid choice"),
        (["--seeds", "0"], "expected a positive int"),
        (["--epochs", "many"], "expected a positive int"),
        (["--lr", "-1"], "expected a positive float"),
        (["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "nonsense"], "device"),
    ],
)
def test_bad_arguments_are_argparse_errors(capsys: pytest.CaptureFixture, argv: list[str], message: str) -> None:
    err = _error(capsys, argv)
    assert "usage:" in err and message in err


def test_torchvision_data_needs_data_root(capsys: pytest.CaptureFixture) -> None:
    err = _error(capsys, ["--dataset", "mnist"])
    assert "--data-root" in err and "never downloads" in err


def test_missing_data_root_folder(capsys: pytest.CaptureFixture, tmp_path) -> None:
    err = _error(capsys, ["--dataset", "cifar10", "--data-root", str(tmp_path / "nowhere")])
    assert "no such folder" in err


def test_data_root_without_the_data(capsys: pytest.CaptureFixture, tmp_path) -> None:
    err = _error(capsys, ["--dataset", "fashion-mnist", "--data-root", str(tmp_path)])
    assert "fashion-mnist not found under" in err
    assert not any(tmp_path.iterdir()), "nothing may be downloaded"


def test_mnist1d_sequence_chunks_the_signal() -> None:
    data = demo.load_data("mnist1d-seq", T=6)
    assert data.x_train.shape == (4000, 6, 7)  # 40 samples padded to 42
    assert data.kind == "sequence"
    flat = demo.load_data("mnist1d", T=6)
    assert torch.equal(data.x_train.flatten(1)[:, :40], flat.x_train)


def test_same_seed_gives_the_twins_the_same_weights() -> None:
    data = demo.load_data("digits", T=2)
    nets = []
    for neuron in ("clif", "leaky"):
        torch.manual_seed(0)
        nets.append(demo.build_model(data, neuron, T=2, hidden=16))
    weights = [{k: v for k, v in net.state_dict().items() if k.endswith("weight")} for net in nets]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_backend_name(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.device("cpu")
    assert demo.backend_name("leaky", cpu) == "snntorch (eager)"
    monkeypatch.delattr(snntorch_clif, "backends", raising=False)
    assert demo.backend_name("clif", cpu) == "reference"
    monkeypatch.setattr(snntorch_clif, "backends", lambda: {"cpu": "fused C++", "cuda": "unavailable"}, raising=False)
    assert demo.backend_name("clif", cpu) == "fused C++"


def test_tiny_run_writes_table_json_and_png(capsys: pytest.CaptureFixture, tmp_path) -> None:
    out = tmp_path / "demo"
    doc = demo.run_demo(["--dataset", "digits", "--epochs", "2", "--seeds", "2", "--hidden", "32", "--T", "3",
                         "--quiet", "--out", str(out)])
    table = capsys.readouterr().out
    assert "clif" in table and "leaky" in table and "±" in table and "s/epoch" in table
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["seeds"] == 2
    for neuron in ("clif", "leaky"):
        r = saved["results"]["digits"][neuron]
        assert len(r["accs"]) == 2 and len(r["runs"][0]["test_acc"]) == 2
        assert r["acc_mean"] > 0.5  # 10 classes: chance is 0.1
        assert r["T"] == 3 and r["epochs"] == 2
    assert doc["results"]["digits"]["clif"]["accs"] == saved["results"]["digits"]["clif"]["accs"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_main_returns_exit_status_zero(tmp_path) -> None:
    # console_scripts call sys.exit(main()): anything but 0/None would be an error exit
    assert demo.main(["--dataset", "digits", "--epochs", "1", "--seeds", "1", "--hidden", "8", "--quiet",
                      "--neurons", "clif", "--out", str(tmp_path)]) == 0


def test_module_entry_point_help() -> None:
    done = subprocess.run([sys.executable, "-m", "snntorch_clif.demo", "--help"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0
    assert "--data-root" in done.stdout and "reset_delay=False" in done.stdout


def test_backend_name_reads_the_report_of_the_package() -> None:
    class Report:
        devices = {"cpu": "fused", "cuda": "reference (no kernel built for this device)"}
        cpu_isa = "avx2"

    import snntorch_clif as pkg

    original = getattr(pkg, "backends", None)
    try:
        pkg.backends = lambda: Report()  # type: ignore[attr-defined]
        assert demo.backend_name("clif", torch.device("cpu")) == "fused (avx2)"
    finally:
        if original is None:
            del pkg.backends
        else:
            pkg.backends = original
