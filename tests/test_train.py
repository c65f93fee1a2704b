"""sw/train.py: a tiny train → prune → export → pack run on real digits (needs the torch extra)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the optional train extra (torch) is not installed")

from sw.config import AccelConfig  # noqa: E402
from sw import model_import, train  # noqa: E402

pytestmark = pytest.mark.train
ROOT = Path(__file__).resolve().parent.parent


def test_winograd_layer_equals_direct_conv():
    for tile in (2, 4):
        cfg = train.TrainConfig(relu="spatial", method="spatial", tile=tile, channels=(3, 4))
        net = train.build_model(cfg, (8, 8))
        x = torch.randn(2, 1, 7, 5, generator=torch.Generator().manual_seed(0))
        ref = torch.relu(torch.nn.functional.conv2d(x, net.conv1.weight, net.conv1.bias,
                                                    padding=1))
        assert torch.allclose(net.conv1(x), ref, atol=1e-4)


def test_train_prune_export_pack(tmp_path):
    out = tmp_path / "m.npz"
    assert train.main(["-o", str(out), "--epochs", "2", "--retrain-epochs", "1", "--steps", "2",
                       "--density", "0.25", "--channels", "4", "8", "-q"]) == 0
    model = model_import.load_npz(out)
    assert [layer.name for layer in model.layers] == ["conv1", "conv2", "pool", "flatten", "fc"]
    conv2 = model.layers[1]
    assert conv2.weight.shape == (16, 8, 4)
    assert np.count_nonzero(conv2.weight) == round(0.25 * conv2.weight.size)
    assert conv2.winograd_relu and conv2.spatial_relu and conv2.in_scale > 0
    assert model.layers[4].arrays["weight"].shape == (10, 8 * 4 * 4)
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert [h[1] for h in meta["history"]] == [1.0, 0.5, 0.25]
    hw = tmp_path / "winnow.json"
    hw.write_text(AccelConfig().to_json())
    run = subprocess.run([sys.executable, str(ROOT / "sw" / "pack.py"), str(out), "-o",
                          str(tmp_path / "packed"), "--hw", str(hw), "-q"],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    manifest = json.loads((tmp_path / "packed" / "manifest.json").read_text())
    assert "conv1" in json.dumps(manifest) and "conv2" in json.dumps(manifest)


def test_bad_arguments(tmp_path, capsys):
    assert train.main(["-o", str(tmp_path / "m.npz"), "--density", "1.5"]) == 2
    assert "--density: density 1.5 is outside (0, 1]" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.txt")]) == 2
    assert "the output must be a .npz path" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def _idx(path, arr):
    import gzip
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def test_fashion_idx_reader(tmp_path, monkeypatch):
    # Same file names as the Debian package dataset-fashion-mnist.
    rng = np.random.default_rng(3)
    imgs = rng.integers(0, 256, (5, 28, 28))
    labels = np.arange(5)
    for split in ("train", "t10k"):
        _idx(tmp_path / f"{split}-images-idx3-ubyte.gz", imgs)
        _idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", labels)
    monkeypatch.setattr(train, "FASHION_DIR", tmp_path)
    xtr, ytr, xte, yte = train.load_dataset("fashion", 0)
    assert xtr.shape == (5, 1, 28, 28) and ytr.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(xte[:, 0] * 255, imgs, atol=1e-4)
    monkeypatch.setattr(train, "FASHION_DIR", tmp_path / "missing")
    with pytest.raises(train.TrainError, match="apt-get install dataset-fashion-mnist"):
        train.load_dataset("fashion", 0)
