"""``sw/pack.py``: pack a CNN's 3×3 layers into the accelerator's on-chip weight format.

Usage::

    python sw/pack.py MODEL.onnx|MODEL.pt|MODEL.npz -o OUTDIR --hw winnow.json \\
        [--prune none|winograd|balanced|spatial-winograd --density D] \\
        [--relu model|winograd|spatial] \\
        [--overflow-check warn|refuse|off]

Reads the model through :func:`sw.model_import.load_model` (the one loading path: ONNX,
PyTorch state dict, or the ``.npz`` schema of docs/formats.md), places every layer (the
accelerator runs 3×3 stride-1 convolutions with pad 0 or 1; the host runs the rest, see
docs/import.md) and refuses what neither can run. It then optionally prunes, quantises with
:func:`sw.quant.quantize_layer`, lays out with :func:`sw.formats.pack_layer`, and writes into
OUTDIR: one ``$readmemh`` file per PE memory and pass (words and directory), ``weights.bin``
for the weight-load port, and ``manifest.json`` (whose ``graph`` lists every layer, where it
runs and why). Before writing, each layer's worst-case accumulator sum
(:func:`accumulator_bound`) is checked against the config's ``acc_bits``: a warning line per
layer that can overflow, or a refusal with ``--overflow-check refuse``; and a layer of spatial
weights too coarse for the tile (F(4,3) below 12-bit Winograd-domain weights,
:func:`check_precision`) gets a warning line. Everything is written
to a temporary directory next to OUTDIR and renamed into place at the end, so an error leaves
no partial output. Bad input (model, ``--hw`` config, or an OUTDIR that cannot be written)
prints one line naming the file, the node or layer and the problem, and exits 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``sw`` and ``hw`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from sw.config import SUPPORTED_TILES, AccelConfig, ConfigError, signed_bits  # noqa: E402
from sw import formats, host_ops, model_import, quant  # noqa: E402
from sw import prune as pruning  # noqa: E402  (pack_layers has a parameter named prune)

__all__ = ["PackError", "ModelLayer", "PlacedLayer", "place_layers", "prune_magnitude",
           "pack_layers", "accumulator_bound", "check_overflow", "check_precision", "pack_model",
           "check_outdir", "write_atomically", "summary_table", "placement_table", "main"]

PRUNE_MODES = ("none", "winograd", "balanced", "spatial-winograd")
#: ``model``: each layer's own ReLU (a fused ONNX Relu is a spatial ReLU; a winnow .npz graph
#: records both kinds); ``winograd`` / ``spatial``: that ReLU on every accelerator layer.
RELU_MODES = ("model", "winograd", "spatial")
#: ``--overflow-check``: what a layer whose worst-case accumulator sum exceeds ``acc_bits`` gets.
OVERFLOW_CHECKS = ("warn", "refuse", "off")
#: Exit status for bad input.
EXIT_BAD_INPUT = 2
BIN_NAME = "weights.bin"
MANIFEST_NAME = "manifest.json"


class PackError(Exception):
    """Bad input to the packer; the message names the file, the layer and the problem."""


@dataclass(frozen=True)
class ModelLayer:
    """One 3×3 layer as read from the ``.npz``, before pruning and quantisation."""

    name: str
    weight: np.ndarray          # float64, spatial [K, C, 3, 3] or Winograd [n*n, K, C]
    bias: np.ndarray            # float64 [K]
    in_scale: float
    out_scale: float
    pad: int
    winograd_relu: bool = False
    spatial_relu: bool = False

    @property
    def spatial(self) -> bool:
        return self.weight.ndim == 4

    @property
    def K(self) -> int:
        return self.weight.shape[0] if self.spatial else self.weight.shape[1]

    @property
    def C(self) -> int:
        return self.weight.shape[1] if self.spatial else self.weight.shape[2]


def _default_scale(cfg: AccelConfig) -> float:
    """Activations in [-1, 1] when the model gives no scale."""
    return 1.0 / cfg.act_range[1]


def _check_weight(w: np.ndarray, where: str, cfg: AccelConfig) -> None:
    coords = {t: (t + 2) ** 2 for t in SUPPORTED_TILES}
    if w.ndim == 4:
        if w.shape[2:] != (3, 3):
            raise PackError(f"{where}: kernel {w.shape[2]}x{w.shape[3]} is not supported "
                            "(only 3x3, stride 1)")
        K, C = w.shape[:2]
    elif w.ndim == 3:
        if w.shape[0] != cfg.coords:
            other = [t for t, c in coords.items() if c == w.shape[0]]
            if other:
                raise PackError(f"{where}: Winograd-domain weights are for F({other[0]},3) "
                                f"({w.shape[0]} coordinates) but the config is F({cfg.tile},3) "
                                f"({cfg.coords} coordinates)")
            raise PackError(f"{where}: weight shape {w.shape} is neither spatial [K, C, 3, 3] "
                            f"nor Winograd-domain [{cfg.coords}, K, C]")
        K, C = w.shape[1:]
    else:
        raise PackError(f"{where}: weight shape {w.shape} is neither spatial [K, C, 3, 3] "
                        f"nor Winograd-domain [{cfg.coords}, K, C]")
    if K < 1 or C < 1:
        raise PackError(f"{where}: weight shape {w.shape} has no channels")
    if C > cfg.c_max:
        raise PackError(f"{where}: C = {C} input channels exceeds c_max = {cfg.c_max} of the "
                        "config")


@dataclass(frozen=True)
class PlacedLayer:
    """Where one layer of the model runs, and why.

    Attributes
    ----------
    name, op : str
        The layer and its op (``conv3x3`` for an accelerator layer).
    placement : str
        ``"accelerator"``, ``"host"`` or ``"refused"``.
    reason : str
        Why it runs there (or why it cannot run).
    inputs : tuple of str
        The tensors it reads.
    output : str
        The tensor it writes.
    """

    name: str
    op: str
    placement: str
    reason: str
    inputs: tuple[str, ...]
    output: str

    def to_json(self) -> dict:
        """The manifest's ``graph`` entry."""
        return {"name": self.name, "op": self.op, "placement": self.placement,
                "reason": self.reason, "inputs": list(self.inputs), "output": self.output}


def _load(path: Path) -> model_import.Model:
    try:
        return model_import.load_model(path)
    except model_import.ModelError as err:
        raise PackError(str(err)) from None


def place_layers(model: model_import.Model, cfg: AccelConfig, source: str = "model"
                 ) -> tuple[list[PlacedLayer], list[ModelLayer]]:
    """Place every layer of ``model`` for ``cfg``: the placement rows and the accelerator layers.

    An accelerator layer is refused when ``cfg`` cannot hold it (more input channels than
    ``c_max``, Winograd-domain weights of another tile); the whole model is refused when the
    driver could not run it (a branch: :func:`sw.host_ops.chain_problem`). Layers without
    calibration scales get the default scale (activations in [-1, 1]) and say so.

    Raises
    ------
    PackError
        One line naming the file, the first refused layer and why (and how many others are).
    """
    rows, accel, refused = [], [], []
    for layer in model.layers:
        where = f"{source}: layer {layer.name!r}"
        if layer.kind == "accel":
            reason = layer.reason or model_import.ACCEL_CONV.format(pad=layer.pad)
            try:
                _check_weight(layer.weight, where, cfg)
            except PackError as err:
                refused.append(str(err))
                rows.append(PlacedLayer(layer.name, "conv3x3", "refused",
                                        str(err)[len(where) + 2:], layer.inputs, layer.output))
                continue
            scales = {k: getattr(layer, k) for k in ("in_scale", "out_scale")}
            if None in scales.values():
                reason += "; no calibration: default scale 1/%d" % cfg.act_range[1]
            scales = {k: v if v is not None else _default_scale(cfg) for k, v in scales.items()}
            accel.append(ModelLayer(layer.name, np.asarray(layer.weight, dtype=np.float64),
                                    np.asarray(layer.bias, dtype=np.float64),
                                    scales["in_scale"], scales["out_scale"], layer.pad,
                                    layer.winograd_relu, layer.spatial_relu))
            rows.append(PlacedLayer(layer.name, "conv3x3", "accelerator", reason, layer.inputs,
                                    layer.output))
        else:
            rows.append(PlacedLayer(layer.name, layer.op, "host",
                                    layer.reason or "runs on the host", layer.inputs,
                                    layer.output))
    if refused:
        more = f" ({len(refused) - 1} more layer(s) refused)" if len(refused) > 1 else ""
        raise PackError(refused[0] + more)
    problem = host_ops.chain_problem(model)
    if problem:
        raise PackError(f"{source}: {problem}")
    if not accel:
        raise PackError(f"{source}: no layer for the accelerator (3x3 stride-1 convolutions "
                        "with pad 0 or 1)")
    return rows, accel


def prune_magnitude(layer: ModelLayer, mode: str, density: float, cfg: AccelConfig,
                    source: str = "model") -> np.ndarray:
    """Simple per-layer magnitude pruning, one threshold per layer; returns float weights.

    * ``none``: the weights unchanged (spatial or Winograd-domain).
    * ``winograd``: transform spatial weights to ``U = G g G^T``, then keep the ``density``
      fraction of ``U`` with the largest magnitude (Liu et al. prune in this domain).
    * ``balanced``: as ``winograd``, but with :func:`sw.prune.prune_balanced` for this
      configuration: every coordinate (PE) keeps the same count, and every lane of a column
      (``cfg.lanes_per_coord``), in each pass's block of ``cfg.k_max`` output channels, so
      the PEs and their lanes get equal work.
    * ``spatial-winograd``: keep the ``density`` fraction of the spatial kernel, transform, then
      keep the ``density`` fraction of ``U`` (spatial sparsity alone does not survive ``G``).

    These are the baselines and the accelerator's balance; sw/prune.py holds the papers'
    methods. No retraining here: ``sw/train.py --prune balanced`` retrains with the mask.
    """
    if mode == "none":
        return layer.weight
    if not 0.0 < density <= 1.0:
        raise PackError(f"{source}: layer {layer.name!r}: density {density} is not in (0, 1]")
    weight = layer.weight
    if mode == "spatial-winograd":
        if not layer.spatial:
            raise PackError(f"{source}: layer {layer.name!r}: --prune spatial-winograd needs "
                            "spatial [K, C, 3, 3] weights, got Winograd-domain weights")
        weight = weight * pruning.prune_spatial(weight, density, "weight", layer.name)
    U = _winograd_domain(weight, cfg, f"{source}: layer {layer.name!r}")
    if mode == "balanced":
        return U * pruning.prune_balanced(U, density, layer.name, **pruning.balance_for(cfg))
    return U * pruning.prune_winograd(U, density, layer.name)


def _winograd_domain(weight: np.ndarray, cfg: AccelConfig, where: str) -> np.ndarray:
    """``U = G g G^T`` of spatial weights (Winograd-domain weights unchanged), finite.

    Raises
    ------
    PackError
        The transform overflows float64 (weights near the largest float).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        U = quant.winograd_weights(weight, cfg.tile) if weight.ndim == 4 else weight
    if not np.all(np.isfinite(U)):
        raise PackError(f"{where}: weights too large: the Winograd transform G g G^T "
                        f"overflows (largest |weight| {float(np.abs(weight).max()):.3g})")
    return U


def _check_scales(U: np.ndarray, in_scale: float, cfg: AccelConfig, where: str) -> None:
    """Refuse weights whose quantisation steps would be 0 or not finite (NaN in the output)."""
    peak = np.abs(U).max(axis=(0, 2)) if U.size else np.zeros(0)
    with np.errstate(all="ignore"):
        acc_scale = in_scale * (peak / cfg.wgt_range[1])
    bad = np.flatnonzero((peak > 0) & ~((acc_scale > 0) & np.isfinite(acc_scale)))
    if bad.size:
        k = int(bad[0])
        raise PackError(f"{where}: output channel {k}: weights (largest |U| "
                        f"{float(peak[k]):.3g}) times in_scale {in_scale:.3g} give an "
                        "accumulator step of 0 or infinity: out of floating-point range")


@dataclass(frozen=True)
class PackedModelLayer:
    """A layer after pruning, quantisation and packing."""

    source: ModelLayer
    qlayer: quant.QuantLayer
    packed: formats.PackedLayer


def _file_stem(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def pack_layers(layers: list[ModelLayer], cfg: AccelConfig, *, prune: str = "none",
                density: float = 1.0, relu: str = "model", source: str = "model",
                progress=None) -> list[PackedModelLayer]:
    """Prune, quantise and pack every layer in memory (no file is touched).

    ``relu`` is one of :data:`RELU_MODES`: ``model`` keeps each layer's own ReLU flags.
    """
    out = []
    for i, layer in enumerate(layers):
        if progress:
            progress(f"[{i + 1}/{len(layers)}] {layer.name}: K={layer.K} C={layer.C} "
                     f"({'spatial' if layer.spatial else 'winograd'})")
        where = f"{source}: layer {layer.name!r}"
        weight = _winograd_domain(prune_magnitude(layer, prune, density, cfg, source), cfg,
                                  where)
        _check_scales(weight, layer.in_scale, cfg, where)
        try:
            with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
                q = quant.quantize_layer(weight, layer.bias, layer.in_scale, layer.out_scale, cfg,
                                         name=layer.name, pad=layer.pad,
                                         winograd_relu=(layer.winograd_relu if relu == "model"
                                                        else relu == "winograd"),
                                         spatial_relu=(layer.spatial_relu if relu == "model"
                                                       else relu == "spatial"))
        except (FloatingPointError, OverflowError) as err:
            raise PackError(f"{where}: weights, bias or scales out of floating-point range in "
                            f"quantisation ({err})") from None
        except ValueError as err:
            raise PackError(f"{where}: {_strip_layer(err, layer.name)}") from None
        try:
            packed = formats.pack_layer(q.U, cfg, name=layer.name)
        except formats.FormatError as err:
            raise PackError(f"{source}: layer {layer.name!r}: {err}") from None
        out.append(PackedModelLayer(layer, q, packed))
    return out


def accumulator_bound(U: np.ndarray, cfg: AccelConfig, winograd_relu: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Worst-case accumulator sums of a quantised layer, per Winograd coordinate.

    The accumulator of coordinate ``xi`` and output channel ``k`` sums
    ``M = sum_c U[xi, k, c] * V[xi, c]`` over the layer's ``C`` input channels, where
    ``V = B^T d B`` of int ``act_bits`` activations ``d``. Each channel's ``V[xi, c]`` can take
    any value of its coordinate's range independently of the others, so the extremes of ``M``
    are ``sum_c min(U*v_lo, U*v_hi)`` and ``sum_c max(U*v_lo, U*v_hi)``: exact, reachable
    bounds, not estimates.

    Parameters
    ----------
    U : numpy.ndarray
        int ``[n*n, K, C]`` quantised Winograd-domain weights (:attr:`sw.quant.QuantLayer.U`).
    cfg : AccelConfig
        Gives ``B^T`` and the activation range; ``V``'s range is taken per coordinate (within
        :attr:`AccelConfig.v_range`).
    winograd_relu : bool
        The layer applies ReLU to ``V`` before the products, so ``V >= 0``.

    Returns
    -------
    lo, hi : numpy.ndarray
        int64 ``[n*n]``: the smallest and largest sum any output channel of each coordinate
        can reach. The layer needs ``signed_bits(lo.min(), hi.max())`` accumulator bits.
    """
    U = np.asarray(U, dtype=np.int64)
    if U.ndim != 3 or U.shape[0] != cfg.coords:
        raise ValueError(f"U has shape {U.shape}; expected [{cfg.coords}, K, C]")
    a_lo, a_hi = cfg.act_range
    coef = np.einsum("ik,jl->ijkl", cfg.BT, cfg.BT).reshape(cfg.coords, -1)
    pos = np.where(coef > 0, coef, 0).sum(axis=1)
    neg = np.where(coef < 0, coef, 0).sum(axis=1)
    v_lo, v_hi = pos * a_lo + neg * a_hi, pos * a_hi + neg * a_lo     # [n*n]
    if winograd_relu:
        v_lo, v_hi = np.maximum(v_lo, 0), np.maximum(v_hi, 0)
    at_lo, at_hi = U * v_lo[:, None, None], U * v_hi[:, None, None]
    sum_lo = np.minimum(at_lo, at_hi).sum(axis=2)                     # [n*n, K]
    sum_hi = np.maximum(at_lo, at_hi).sum(axis=2)
    empty = np.zeros(cfg.coords, dtype=np.int64)
    return (sum_lo.min(axis=1) if U.shape[1] else empty,
            sum_hi.max(axis=1) if U.shape[1] else empty)


def _print_warning(line: str) -> None:
    """The packer's default warning: one ``pack: warning: ...`` line on stderr."""
    print(f"pack: warning: {one_line(line)}", file=sys.stderr)


def check_overflow(layers: list[PackedModelLayer], cfg: AccelConfig, mode: str = "warn",
                   source: str = "model", warn=None) -> list[str]:
    """Compare each layer's :func:`accumulator_bound` with ``cfg.acc_bits``.

    Parameters
    ----------
    layers : list of PackedModelLayer
        The packed layers (their quantised ``U`` and Winograd-ReLU flag are used).
    cfg : AccelConfig
        Gives ``acc_bits`` and what an overflow does (``overflow``: wrap or saturate).
    mode : str
        One of :data:`OVERFLOW_CHECKS`: ``warn`` calls ``warn`` once per layer that can
        overflow, ``refuse`` raises on the first, ``off`` checks nothing.
    source : str
        The model file, named in the messages.
    warn : callable, optional
        Takes one message line; default: print ``pack: warning: ...`` to stderr.

    Returns
    -------
    list of str
        One line per layer whose worst-case sum does not fit ``acc_bits``.

    Raises
    ------
    PackError
        ``mode`` is ``refuse`` and a layer can overflow, or ``mode`` is not allowed.
    """
    if mode not in OVERFLOW_CHECKS:
        raise PackError(f"{source}: --overflow-check {mode!r} is not one of "
                        f"{', '.join(OVERFLOW_CHECKS)}")
    if mode == "off":
        return []
    warn = warn or _print_warning
    lines = []
    for pl in layers:
        lo, hi = accumulator_bound(pl.qlayer.U, cfg, pl.qlayer.winograd_relu)
        need = signed_bits(int(lo.min()), int(hi.max()))
        if need <= cfg.acc_bits:
            continue
        xi = int(np.argmax(np.maximum(-lo, hi)))
        effect = "wrap around" if cfg.overflow == "wrap" else "saturate"
        line = (f"{source}: layer {pl.source.name!r}: worst-case accumulator sum "
                f"[{int(lo.min())}, {int(hi.max())}] (coordinate {xi}, {pl.packed.C} input "
                f"channels) needs {need} bits, more than acc_bits = {cfg.acc_bits}: the "
                f"accumulators can {effect}")
        if mode == "refuse":
            raise PackError(line + " (--overflow-check refuse)")
        warn(line)
        lines.append(line)
    return lines


def _strip_layer(err: Exception, name: str) -> str:
    text = str(err)
    prefix = f"layer {name}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _write_outputs(tmp: Path, layers: list[PackedModelLayer], cfg: AccelConfig,
                   meta: dict) -> dict:
    files: list[str] = []
    entries = []
    for pl in layers:
        stem, lf = _file_stem(pl.packed.name), {}
        for im in pl.packed.passes:
            for xi in range(cfg.coords):
                slay, dlay = formats.slot_layout(cfg, xi), formats.directory_layout(cfg, xi)
                base = f"{stem}.p{im.index}.pe{xi}"
                formats.write_hex(tmp / f"{base}.hex", im.words[xi], slay.hex_digits,
                                  f"winnow layer {pl.packed.name} pass {im.index} PE {xi}: "
                                  f"{len(im.words[xi])} words x {slay.word_bits} bits")
                formats.write_hex(tmp / f"{base}.dir.hex",
                                  formats.directory_words(im, cfg, xi), dlay.hex_digits,
                                  f"winnow layer {pl.packed.name} pass {im.index} PE {xi}: "
                                  f"directory, {pl.packed.C} entries x {dlay.entry_bits} bits "
                                  "(start low, count high)")
                lf[f"p{im.index}.pe{xi}"] = f"{base}.hex"
                lf[f"p{im.index}.pe{xi}.dir"] = f"{base}.dir.hex"
        files += lf.values()
        q = pl.qlayer
        entries.append(formats.layer_manifest(
            pl.packed, q.U, cfg, source_shape=pl.source.weight.shape, files=lf,
            quant={"bias": q.bias.tolist(), "multiplier": q.multiplier.tolist(),
                   "shift": q.shift.tolist(), "in_scale": q.in_scale,
                   "w_scale": [float(x) for x in q.w_scale], "out_scale": q.out_scale,
                   "pad": q.pad, "winograd_relu": q.winograd_relu,
                   "spatial_relu": q.spatial_relu}))
    (tmp / BIN_NAME).write_bytes(formats.encode_stream([pl.packed for pl in layers], cfg))
    files.append(BIN_NAME)
    manifest = formats.build_manifest(entries, cfg, tmp, files)
    manifest.update(meta)
    manifest["stream"] = BIN_NAME
    (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def check_precision(layers: list[ModelLayer], cfg: AccelConfig, source: str = "model",
                    warn=None) -> list[str]:
    """Warn of each layer whose weights are too coarse at ``cfg.wgt_bits`` for its tile.

    Spatially trained weights at F(4,3) need the wider Winograd-domain weights of
    :data:`sw.quant.RECOMMENDED_WGT_BITS` (:func:`sw.quant.precision_problem`; docs/golden.md,
    "Accuracy on a real network"). The packed file is still exact for the hardware: this is a
    warning about accuracy, never a refusal. Returns the lines given to ``warn`` (default:
    ``pack: warning: ...`` on stderr).
    """
    warn = warn or _print_warning
    lines = []
    for layer in layers:
        problem = quant.precision_problem(layer.weight, cfg, repr(layer.name))
        if problem:
            lines.append(f"{source}: {problem}")
            warn(lines[-1])
    return lines


def pack_model(model: str | Path, outdir: str | Path, cfg: AccelConfig, *,
               prune: str = "none", density: float = 1.0, relu: str = "model",
               force: bool = False, progress=None, overflow_check: str = "warn",
               warn=None) -> tuple[dict, list[PackedModelLayer]]:
    """Pack ``model`` (``.onnx``, ``.pt``/``.pth`` or ``.npz``) into ``outdir`` atomically.

    Returns the manifest (its ``graph`` lists every layer's placement and reason) and the
    packed accelerator layers. ``overflow_check`` and ``warn`` go to :func:`check_overflow`,
    before anything is written.

    Raises
    ------
    PackError
        Bad input, a layer that can overflow the accumulators with ``overflow_check="refuse"``,
        or an ``outdir`` that cannot be written; ``outdir`` is then left exactly as it was.
    """
    model, outdir = Path(model), Path(outdir)
    if prune not in PRUNE_MODES:
        raise PackError(f"{model}: --prune {prune!r} is not one of {', '.join(PRUNE_MODES)}")
    if relu not in RELU_MODES:
        raise PackError(f"{model}: --relu {relu!r} is not one of {', '.join(RELU_MODES)}")
    if prune != "none" and not (math.isfinite(density) and 0.0 < density <= 1.0):
        raise PackError(f"{model}: --density {density} is not in (0, 1]")
    if overflow_check not in OVERFLOW_CHECKS:
        raise PackError(f"{model}: --overflow-check {overflow_check!r} is not one of "
                        f"{', '.join(OVERFLOW_CHECKS)}")
    check_outdir(outdir, force)
    placed, model_layers = place_layers(_load(model), cfg, str(model))
    stems: dict[str, str] = {}
    for layer in model_layers:
        stem = _file_stem(layer.name)
        if stem in stems:
            other = stems[stem]
            what = ("another layer has the same name" if other == layer.name else
                    f"its file names would collide with those of layer {other!r} ({stem}.*)")
            raise PackError(f"{model}: layer {layer.name!r}: {what}; rename one of them")
        stems[stem] = layer.name
    layers = pack_layers(model_layers, cfg, prune=prune, density=density, relu=relu,
                         source=str(model), progress=progress)
    check_overflow(layers, cfg, overflow_check, str(model), warn)
    check_precision(model_layers, cfg, str(model), warn)
    meta = {"model": model.name, "prune": prune,
            "density_target": density if prune != "none" else None, "relu": relu,
            "graph": [row.to_json() for row in placed]}
    try:
        manifest = write_atomically(outdir, lambda tmp: _write_outputs(tmp, layers, cfg, meta))
    except OSError as err:
        raise PackError(f"{outdir}: cannot write the output ({_os_reason(err)})") from None
    return manifest, layers


def _os_reason(err: OSError) -> str:
    reason = err.strerror or str(err)
    if err.filename is not None:
        reason += f": {err.filename}"
    return reason


def check_outdir(outdir: Path, force: bool) -> None:
    """Refuse, before any work, an OUTDIR that is not empty (without ``force``) or that cannot
    be made: an ancestor that is a file, a parent that is not writable."""
    try:
        if outdir.exists() and not force and (not outdir.is_dir() or any(outdir.iterdir())):
            raise PackError(f"{outdir}: already exists and is not empty; pass --force to "
                            "replace it")
        ancestor = outdir.parent
        while not ancestor.exists() and ancestor != ancestor.parent:
            ancestor = ancestor.parent
    except OSError as err:
        raise PackError(f"{outdir}: cannot write the output ({_os_reason(err)})") from None
    if not ancestor.is_dir():
        raise PackError(f"{outdir}: cannot write the output ({ancestor} is not a directory)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PackError(f"{outdir}: cannot write the output (directory {ancestor} is not "
                        "writable)")


def write_atomically(outdir: Path, write):
    """``write(tmp)`` into a new directory next to ``outdir``, then rename it to ``outdir``.

    On any error nothing is left behind: the temporary directory and any parent directories
    made for it are removed, and an existing ``outdir`` is kept.
    """
    made = []
    ancestor = outdir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        made.append(ancestor)
        ancestor = ancestor.parent
    tmp = None
    try:
        outdir.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name[:40]}.tmp-", dir=outdir.parent))
        result = write(tmp)
        if outdir.exists():
            old = outdir.with_name(f".{outdir.name[:40]}.old-{os.getpid()}")
            outdir.rename(old)
            try:
                tmp.rename(outdir)
            except BaseException:
                old.rename(outdir)
                raise
            shutil.rmtree(old) if old.is_dir() else old.unlink()
        else:
            tmp.rename(outdir)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for directory in made:                  # deepest first
            try:
                directory.rmdir()
            except OSError:
                pass
        raise
    return result


def summary_table(layers: list[PackedModelLayer], cfg: AccelConfig,
                  graph: list[dict] | None = None):
    """A rich table: one row per packed layer, then totals; with ``graph``, a second table.

    Parameters
    ----------
    layers : list of PackedModelLayer
        The packed accelerator layers.
    cfg : AccelConfig
        The configuration they were packed for.
    graph : list of dict, optional
        The manifest's ``graph`` (:meth:`PlacedLayer.to_json`): adds a table with every layer
        of the model, in order, where it runs (accelerator, host, refused) and why.
    """
    from rich.console import Group
    from rich.table import Table

    table = Table(title=f"winnow packed weights, F({cfg.tile},3), lanes {cfg.lanes}, "
                        f"wmem_depth {cfg.wmem_depth}")
    for col in ("layer", "K x C", "passes x Kp", "density", "coord density", "nnz",
                "max words/PE", "padding", "bits/nnz", "vs dense"):
        table.add_column(col, justify="left" if col == "layer" else "right")
    tot_nnz = tot_slots = tot_pad = tot_bits = tot_dense = 0
    for pl in layers:
        p, s = pl.packed, pl.packed.stats
        cd = (pl.qlayer.U != 0).reshape(cfg.coords, -1).mean(axis=1)
        table.add_row(p.name, f"{p.K} x {p.C}", f"{p.num_passes} x {p.Kp}",
                      f"{s.nnz / (cfg.coords * p.K * p.C):.3f}", f"{cd.min():.2f}-{cd.max():.2f}",
                      f"{s.nnz}", f"{max(s.max_words_per_pass)}",
                      f"{s.padding_slots / s.slots:.1%}" if s.slots else "-",
                      f"{s.bits_per_nonzero:.1f}" if s.nnz else "-",
                      f"{s.overhead_vs_dense:.3f}")
        tot_nnz += s.nnz
        tot_slots += s.slots
        tot_pad += s.padding_slots
        tot_bits += s.weight_bits + s.directory_bits
        tot_dense += s.dense_bits
    table.add_section()
    table.add_row("total", "", "", f"{tot_nnz * cfg.wgt_bits / tot_dense:.3f}", "", f"{tot_nnz}",
                  "", f"{tot_pad / tot_slots:.1%}" if tot_slots else "-",
                  f"{tot_bits / tot_nnz:.1f}" if tot_nnz else "-", f"{tot_bits / tot_dense:.3f}")
    if graph is None:
        return table
    return Group(table, placement_table(graph))


def placement_table(graph: list[dict]):
    """A rich table of the manifest's ``graph``: every layer, its op, where it runs and why."""
    from rich.table import Table

    table = Table(title="where each layer runs")
    for col in ("layer", "op", "runs on", "why"):
        table.add_column(col, overflow="fold")
    for row in graph:
        table.add_row(row["name"], row["op"], row["placement"], row["reason"])
    return table


def one_line(text: str) -> str:
    """``text`` with every character that is not printable escaped (``\\n``, ``\\x1e``...).

    Error messages quote names read from the user's files (layer names, archive members, JSON
    keys); escaping keeps each message on the one line that scripts and people expect.
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="sw/pack.py",
        description="Pack a CNN (.onnx, PyTorch state dict .pt/.pth, or .npz as in "
                    "docs/formats.md) for the winnow accelerator: every layer is placed on the "
                    "accelerator (3x3 stride-1 convolutions, pad 0 or 1) or the host, or "
                    "refused (docs/import.md); the accelerator's layers are written in its "
                    "on-chip weight format: $readmemh files per PE memory, a weight-load stream "
                    "(weights.bin) and manifest.json.",
        epilog="Bad input exits with status 2 and leaves OUTDIR untouched.")
    ap.add_argument("model", metavar="MODEL",
                    help="model .onnx, .pt/.pth (state dict) or .npz (<layer>.weight, ...)")
    ap.add_argument("-o", "--outdir", required=True, metavar="OUTDIR",
                    help="output directory (created atomically)")
    ap.add_argument("--hw", required=True, metavar="winnow.json",
                    help="accelerator config written by python -m hw.gen")
    ap.add_argument("--prune", choices=PRUNE_MODES, default="none",
                    help="magnitude pruning in the Winograd domain: one threshold per layer "
                         "(winograd, spatial-winograd), or balanced for the configuration's "
                         "PEs and lanes (equal counts per coordinate and per lane of every "
                         "column, docs/pruning.md) (default: none)")
    ap.add_argument("--density", type=float, default=None, metavar="D",
                    help="fraction of Winograd-domain weights kept, in (0, 1]; needed with --prune")
    ap.add_argument("--relu", choices=RELU_MODES, default="model",
                    help="each layer's ReLU as the model has it (default), or on every "
                         "accelerator layer: in the Winograd domain (Liu et al.) or after "
                         "requantisation")
    ap.add_argument("--overflow-check", choices=OVERFLOW_CHECKS, default="warn",
                    help="a layer whose worst-case accumulator sum (from its packed weights, "
                         "the activation range and its input channels) needs more than the "
                         "config's acc_bits: warn (default, one line per layer), refuse "
                         "(exit 2, no output) or off")
    ap.add_argument("--force", action="store_true", help="replace a non-empty OUTDIR")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress or table")
    return ap


def main(argv: list[str] | None = None) -> int:
    from rich.console import Console

    args = _parser().parse_args(argv)
    err = Console(stderr=True, highlight=False)
    # Wide enough for the summary table when stdout is a pipe or a log file.
    out = Console(highlight=False, width=max(120, shutil.get_terminal_size().columns))
    try:
        if args.prune != "none" and args.density is None:
            raise PackError(f"{args.model}: --prune {args.prune} needs --density D")
        if args.prune == "none" and args.density is not None:
            raise PackError(f"{args.model}: --density needs --prune "
                            "winograd|balanced|spatial-winograd")
        if args.density is not None and not (math.isfinite(args.density)
                                             and 0.0 < args.density <= 1.0):
            raise PackError(f"{args.model}: --density {args.density} is not in (0, 1]")
        try:
            cfg = AccelConfig.load(args.hw)
        except ConfigError as cerr:
            raise PackError(f"--hw {cerr}") from None
        manifest, layers = pack_model(
            args.model, args.outdir, cfg, prune=args.prune,
            density=args.density if args.density is not None else 1.0, relu=args.relu,
            force=args.force, progress=None if args.quiet else err.print,
            overflow_check=args.overflow_check)
    except PackError as perr:
        print(f"pack: error: {one_line(str(perr))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not args.quiet:
        out.print(summary_table(layers, cfg, manifest["graph"]))
        out.print(f"wrote {len(manifest['checksums'])} files and {MANIFEST_NAME} to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
