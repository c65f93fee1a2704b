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
    assert [layer.name for layer in model.layers] == ["conv1", "conv2", "pool2", "flatten", "fc"]
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


def test_balanced_lanes_survive_retraining(tmp_path):
    # --prune balanced --lanes 2: the exported conv keeps its density, the same count per
    # coordinate and, in every column but at most one per coordinate, per lane (k mod 2).
    out = tmp_path / "m.npz"
    assert train.main(["-o", str(out), "--epochs", "1", "--retrain-epochs", "1", "--steps", "1",
                       "--density", "0.3", "--channels", "4", "8", "--prune", "balanced",
                       "--lanes", "2", "-q"]) == 0
    U = model_import.load_npz(out).layers[1].weight                         # [16, 8, 4]
    kept = U != 0
    assert kept.reshape(16, -1).sum(axis=1).tolist() == [round(0.3 * 32)] * 16
    uneven = (kept[:, 0::2].sum(axis=1) != kept[:, 1::2].sum(axis=1)).sum(axis=1)
    assert uneven.max() <= 1


def test_vgg_chain_with_pooling_between_convs(tmp_path):
    # Three convs, pooling after the first and the last: the export puts host maxpools between
    # the accelerator layers, each conv's in_scale is the scale of the conv before it (pooling
    # keeps it), and the golden int8 path agrees with the float net on most test images.
    out, split = tmp_path / "m.npz", tmp_path / "test.npz"
    assert train.main(["-o", str(out), "--channels", "4", "6", "8", "--pool-after", "1", "3",
                       "--epochs", "3", "--retrain-epochs", "1", "--steps", "1",
                       "--density", "0.5", "--save-test", str(split), "-q"]) == 0
    model = model_import.load_npz(out)
    assert [layer.name for layer in model.layers] == ["conv1", "pool1", "conv2", "conv3",
                                                      "pool3", "flatten", "fc"]
    conv1, conv2, conv3 = model.accel_layers
    assert conv2.in_scale == conv1.out_scale and conv3.in_scale == conv2.out_scale
    # Winograd ReLU: no spatial ReLU inside the chain, the last conv ends in one.
    assert [c.spatial_relu for c in (conv1, conv2, conv3)] == [False, False, True]
    assert all(c.winograd_relu for c in (conv1, conv2, conv3))
    assert model.layers[-1].arrays["weight"].shape == (10, 8 * 2 * 2)    # 8×8 → 4 → 2
    assert json.loads(out.with_suffix(".json").read_text())["meta"]["train_config"][
        "pool_after"] == [1, 3]
    images, labels = train.load_test_split(split)
    _, _, xte, yte = train.load_dataset("digits", 0)
    np.testing.assert_array_equal(images, xte)
    np.testing.assert_array_equal(labels, yte)
    from sw import driver
    history_acc = json.loads(out.with_suffix(".json").read_text())["meta"]["history"][-1][2]
    int8 = (driver.golden_predict(model, xte, AccelConfig()).argmax(1) == yte).mean()
    assert history_acc > 0.5 and abs(int8 - history_acc) < 0.05


def test_bad_arguments(tmp_path, capsys):
    assert train.main(["-o", str(tmp_path / "m.npz"), "--density", "1.5"]) == 2
    assert "--density: density 1.5 is outside (0, 1]" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.txt")]) == 2
    assert "the output must be a .npz path" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--save-test", str(tmp_path / "t")]) == 2
    assert "t: the output must be a .npz path" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--channels", "4", "8",
                       "--pool-after", "3"]) == 2
    assert "--pool-after 3: each must be a distinct conv index in 1..2" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--channels", "4", "0"]) == 2
    assert "--channels 4 0: give one count >= 1 per conv" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--lr", "0"]) == 2
    assert "--lr 0.0: the learning rate must be > 0" in capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--prune", "balanced", "--lanes", "0"]) == 2
    assert "--lanes 0: give the accelerator's multiplier lanes per PE, an integer >= 1" in \
        capsys.readouterr().err
    assert train.main(["-o", str(tmp_path / "m.npz"), "--lanes", "4"]) == 2
    assert "--lanes 4 balances lanes only with --prune balanced, not --prune winograd" in \
        capsys.readouterr().err
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


def test_experiments_sweep_seeds_table_and_replot(tmp_path, capsys):
    from sw import experiments
    args = ["--out", str(tmp_path), "--dataset", "digits", "--channels", "2", "3",
            "--pool-after", "1", "2", "--densities", "1.0", "0.5", "--seeds", "0", "1",
            "--epochs", "1", "--retrain-epochs", "0", "--steps", "1", "--test-images", "30"]
    assert experiments.main(args) == 0
    results = json.loads((tmp_path / "pruning_results.json").read_text())
    # 2 ReLU placements × 2 densities × 2 seeds, and the balanced run at the lowest density.
    assert len(results) == 9
    assert {(r["relu"], r["seed"]) for r in results if r["method"] == "winograd"} == {
        ("winograd", 0), ("winograd", 1), ("spatial", 0), ("spatial", 1)}
    for r in results:
        assert r["test_images"] == 30 and 0 <= r["int8"] <= 1
        # Counted after the pooling between the convs: sparse never above dense Winograd.
        assert 0 < r["mults"]["sparse_winograd"] <= r["mults"]["dense_winograd"]
    table = capsys.readouterr().out
    assert "| 0.50 |" in table and "| 1.00 |" in table and "balanced per coordinate" in table
    assert "Mean over seeds 0, 1" in table
    for png in ("pruning_accuracy.png", "pruning_mult_reduction.png",
                "pruning_coord_density.png"):
        (tmp_path / png).unlink()
    assert experiments.main(["--out", str(tmp_path), "--replot"]) == 0
    assert (tmp_path / "pruning_accuracy.png").stat().st_size > 0
    assert experiments.main(["--out", str(tmp_path / "x"), "--pool-after", "5"]) == 2
    assert "--pool-after 5: each must be a distinct conv index in 1..2" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
