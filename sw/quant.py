"""Quantisation of a float 3×3 layer into the accelerator's integer Winograd-domain form.

Number formats (see docs/golden.md for the equations):

- activations ``x = in_scale * x_q`` with ``x_q`` in ``cfg.act_range`` (one scale per tensor);
- Winograd-domain weights ``U = w_scale[k] * U_q`` with ``U_q`` in ``cfg.wgt_range`` (one scale per
  output channel); ``U = G g G^T`` is quantised *after* the filter transform, because the
  hardware multiplies in the Winograd domain and ``G`` has fractional entries;
- the accumulator scale is ``in_scale * w_scale[k]``; the int32 bias lives at that scale;
- the requantiser maps the accumulator scale to ``out_scale`` with ``multiplier / 2**shift``.

Spatial weights need more Winograd-domain bits under F(4,3) than under F(2,3): ``G`` scales
coordinates by factors from 1 down to 1/24 and ``A^T`` (entries up to 8) amplifies the small
ones' rounding, so one int8 scale per output channel loses a trained network
(:data:`RECOMMENDED_WGT_BITS`, :func:`precision_problem`; measured in docs/golden.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sw.config import AccelConfig
from sw import winograd

__all__ = ["QuantLayer", "RECOMMENDED_WGT_BITS", "choose_scale", "precision_problem",
           "quantize_multiplier", "quantize_layer", "winograd_weights"]

#: Narrowest ``wgt_bits`` per tile at which spatial weights of a trained network keep their
#: accuracy: every layer's output correlates >= 0.99 with onnxruntime and top-1 stays within a
#: point (``python -m sw.accuracy measure tests/data/mnist_cnn.onnx ...``, docs/golden.md
#: "Accuracy on a real network"; tests/test_accuracy.py holds it). At 12 bits a tile-4 weight
#: times its 15-bit ``V`` still fits one 18×18 hardware multiplier.
RECOMMENDED_WGT_BITS = {2: 8, 4: 12}


@dataclass(frozen=True, eq=False)  # arrays have no single truth value, so no __eq__
class QuantLayer:
    """One quantised 3×3 stride-1 convolution, in the form the accelerator executes.

    Parameters
    ----------
    name : str
        Layer name, used in error messages.
    U : numpy.ndarray
        int64 ``[n*n, K, C]`` Winograd-domain weights in ``cfg.wgt_range``; coordinate
        ``xi = i*n + j`` (row-major over the n×n tile).
    bias : numpy.ndarray
        int64 ``[K]`` bias at the accumulator scale ``in_scale * w_scale[k]``.
    multiplier, shift : numpy.ndarray
        int64 ``[K]`` requantisation: ``out = (acc * multiplier) / 2**shift`` rounded half up.
    pad : int
        Zero padding, 0 or 1.
    winograd_relu : bool
        Apply ReLU to ``V = B^T d B`` before the products (Liu et al., 2018).
    spatial_relu : bool
        Apply ReLU after requantisation.
    in_scale : float
        Real value of one input activation step.
    w_scale : numpy.ndarray
        float ``[K]``, real value of one weight step per output channel.
    out_scale : float
        Real value of one output activation step.
    """

    name: str
    U: np.ndarray
    bias: np.ndarray
    multiplier: np.ndarray
    shift: np.ndarray
    pad: int
    winograd_relu: bool
    spatial_relu: bool
    in_scale: float
    w_scale: np.ndarray
    out_scale: float

    def __post_init__(self):
        if self.U.ndim != 3:
            raise ValueError(f"layer {self.name}: U must be [n*n, K, C], got shape {self.U.shape}")
        for field in ("bias", "multiplier", "shift", "w_scale"):
            shape = np.shape(getattr(self, field))
            if shape != (self.K,):
                raise ValueError(f"layer {self.name}: {field} must have shape ({self.K},), "
                                 f"got {shape}")
        if self.pad not in (0, 1):
            raise ValueError(f"layer {self.name}: pad={self.pad} is not supported (0 or 1)")

    @property
    def K(self) -> int:
        """Output channels."""
        return self.U.shape[1]

    @property
    def C(self) -> int:
        """Input channels."""
        return self.U.shape[2]

    @property
    def acc_scale(self) -> np.ndarray:
        """float ``[K]``: real value of one accumulator step, ``in_scale * w_scale``."""
        return self.in_scale * np.asarray(self.w_scale, dtype=np.float64)


def choose_scale(x_float: np.ndarray, bits: int) -> float:
    """Symmetric max-abs scale: ``max|x| / (2**(bits-1) - 1)``, or 1.0 for an all-zero tensor."""
    peak = float(np.max(np.abs(x_float))) if np.size(x_float) else 0.0
    return peak / ((1 << (bits - 1)) - 1) if peak > 0 else 1.0


def quantize_multiplier(real, cfg: AccelConfig) -> tuple[np.ndarray, np.ndarray]:
    """Represent non-negative reals as ``multiplier / 2**shift``.

    The multiplier is a non-negative ``cfg.mult_bits`` signed integer and the shift lies in
    ``[1, 2**cfg.shift_bits - 1]`` (at least 1 because rounding adds ``1 << (shift - 1)``). The
    largest shift whose multiplier still fits is chosen, which keeps the most precision.

    Returns
    -------
    multiplier, shift : numpy.ndarray
        int64 arrays with the shape of ``real``.

    Raises
    ------
    ValueError
        If a value is negative, not finite, or too large for ``multiplier / 2``.
    """
    real = np.asarray(real, dtype=np.float64)
    mult_max = (1 << (cfg.mult_bits - 1)) - 1
    shift_max = (1 << cfg.shift_bits) - 1
    mults = np.zeros(real.shape, dtype=np.int64)
    shifts = np.ones(real.shape, dtype=np.int64)
    for idx, value in np.ndenumerate(real):
        if not np.isfinite(value) or value < 0:
            raise ValueError(f"requantisation scale {value!r} must be finite and >= 0")
        for shift in range(shift_max, 0, -1):
            mult = round(value * 2.0 ** shift)
            if mult <= mult_max:
                break
        else:
            raise ValueError(f"requantisation scale {value!r} does not fit a "
                             f"{cfg.mult_bits}-bit multiplier with shift >= 1")
        mults[idx], shifts[idx] = mult, shift if mult else 1
    return mults, shifts


def precision_problem(weights: np.ndarray, cfg: AccelConfig, name: str = "conv") -> str | None:
    """Why quantising ``weights`` for ``cfg`` would lose the layer's answer, or None.

    Spatial weights ``[K, C, 3, 3]`` need ``cfg.wgt_bits >= RECOMMENDED_WGT_BITS[cfg.tile]``.
    Weights already in the Winograd domain ``[n*n, K, C]`` (trained there) are not judged:
    training spreads them over the coordinates, and F(4,3) keeps its accuracy at 8 bits on the
    Winograd-trained example model (docs/golden.md).
    """
    need = RECOMMENDED_WGT_BITS[cfg.tile]
    if np.ndim(weights) != 4 or cfg.wgt_bits >= need:
        return None
    return (f"layer {name}: spatial weights at F({cfg.tile},3) with {cfg.wgt_bits}-bit "
            f"Winograd-domain weights lose accuracy (G scales coordinates down to 1/24 and one "
            f"scale per output channel leaves the small ones a few levels); generate the "
            f"accelerator with wgt_bits >= {need} (python -m hw.gen --tile {cfg.tile} "
            f"--wgt-bits {need})")


def winograd_weights(weights: np.ndarray, m: int) -> np.ndarray:
    """Float spatial weights ``[K, C, 3, 3]`` → Winograd domain ``[n*n, K, C]`` (``G g G^T``)."""
    U = winograd.filter_transform(weights, m)                # K, C, n, n
    K, C, n, _ = U.shape
    return U.reshape(K, C, n * n).transpose(2, 0, 1).copy()


def quantize_layer(weights: np.ndarray, bias: np.ndarray | None, in_scale: float,
                   out_scale: float, cfg: AccelConfig, *, name: str = "conv", pad: int = 1,
                   winograd_relu: bool = False, spatial_relu: bool = False) -> QuantLayer:
    """Quantise a float layer for ``cfg``.

    Parameters
    ----------
    weights : numpy.ndarray
        Spatial float ``[K, C, 3, 3]`` or Winograd-domain float ``[n*n, K, C]``.
    bias : numpy.ndarray or None
        Float ``[K]`` at the output's real scale (None for no bias).
    in_scale, out_scale : float
        Real value of one input and one output activation step.

    Steps
    -----
    1. ``U = G g G^T`` (skipped for Winograd-domain weights);
    2. ``w_scale[k] = max|U[:, k, :]| / (2**(wgt_bits-1) - 1)``;
       ``U_q = clamp(round(U / w_scale))``;
    3. ``bias_q = clamp(round(bias / (in_scale * w_scale)))`` to ``bias_bits``;
    4. ``multiplier / 2**shift ≈ in_scale * w_scale / out_scale``.
    """
    weights = np.asarray(weights, dtype=np.float64)
    n = cfg.n
    if weights.ndim == 4 and weights.shape[2:] == (3, 3):
        U = winograd_weights(weights, cfg.tile)
    elif weights.ndim == 3 and weights.shape[0] == n * n:
        U = weights
    else:
        raise ValueError(f"layer {name}: weights of shape {weights.shape} are neither spatial "
                         f"[K, C, 3, 3] nor Winograd-domain [{n * n}, K, C] for F({cfg.tile},3)")
    if not (in_scale > 0 and out_scale > 0):
        raise ValueError(f"layer {name}: scales must be > 0 (in {in_scale}, out {out_scale})")
    K = U.shape[1]
    w_lo, w_hi = cfg.wgt_range
    w_scale = np.array([choose_scale(U[:, k, :], cfg.wgt_bits) for k in range(K)])
    U_q = np.clip(np.rint(U / w_scale[None, :, None]), w_lo, w_hi).astype(np.int64)
    acc_scale = in_scale * w_scale
    b_lo, b_hi = -(1 << (cfg.bias_bits - 1)), (1 << (cfg.bias_bits - 1)) - 1
    bias = np.zeros(K) if bias is None else np.asarray(bias, dtype=np.float64)
    if bias.shape != (K,):
        raise ValueError(f"layer {name}: bias must have shape ({K},), got {bias.shape}")
    bias_q = np.clip(np.rint(bias / acc_scale), b_lo, b_hi).astype(np.int64)
    multiplier, shift = quantize_multiplier(acc_scale / out_scale, cfg)
    return QuantLayer(name=name, U=U_q, bias=bias_q, multiplier=multiplier, shift=shift,
                      pad=pad, winograd_relu=winograd_relu, spatial_relu=spatial_relu,
                      in_scale=float(in_scale), w_scale=w_scale, out_scale=float(out_scale))
