"""A small CNN as an ONNX file, built with ``onnx.helper``: what a user's first model looks like.

The graph has the ops real small CNNs have, in one chain::

    conv1   Conv 3x3 pad 1          accelerator
    prelu1  PRelu, slope per channel host
    conv2   Conv 3x3 pad 0          accelerator
    leaky2  LeakyRelu alpha 0.1      host
    pool    MaxPool 2x2 stride 2     host
    flat    Flatten                  host
    fc      Gemm transB 1            host
    softmax Softmax axis 1           host

The ``python -m verif.run`` tests run it on the golden model and the RTL and compare it with
onnxruntime; no torch needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["TENSORS", "save_tiny_cnn"]

#: The graph's tensors in order: the input, then each node's output.
TENSORS = ("x", "c1", "a1", "c2", "a2", "p", "f", "logits", "y")


def save_tiny_cnn(path: str | Path, *, channels: tuple[int, int, int] = (1, 4, 6),
                  size: int = 8, classes: int = 5, seed: int = 0, output: str = "y") -> Path:
    """Write the CNN to ``path``; its input ``x`` is ``[1, channels[0], size, size]``.

    Parameters
    ----------
    channels : tuple of int
        Input channels, conv1's and conv2's output channels.
    size : int
        Input height and width (even, at least 4: conv2 is unpadded, the pool halves it).
    classes : int
        Outputs of the classifier.
    seed : int
        Seed of the random weights (fan-in scaled, so activations stay near 1).
    output : str
        The graph's output, one of :data:`TENSORS`: ``y`` (the softmax) for the whole network,
        an earlier tensor for a graph cut there (the nodes after it dropped), to read an
        intermediate tensor from onnxruntime.

    Returns
    -------
    Path
        ``path``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if output not in TENSORS[1:]:
        raise ValueError(f"output {output!r} is not one of {', '.join(TENSORS[1:])}")
    rng = np.random.default_rng(seed)
    c0, c1, c2 = channels
    pooled = (size - 2) // 2

    def init(name, shape, fan_in):
        values = rng.standard_normal(shape) / np.sqrt(fan_in)
        return numpy_helper.from_array(values.astype(np.float32), name)

    inits = [init("w1", (c1, c0, 3, 3), 9 * c0), init("b1", (c1,), 9 * c0),
             numpy_helper.from_array(rng.uniform(0.05, 0.3, (c1, 1, 1)).astype(np.float32),
                                     "slope"),
             init("w2", (c2, c1, 3, 3), 9 * c1), init("b2", (c2,), 9 * c1),
             init("fw", (classes, c2 * pooled * pooled), c2 * pooled * pooled),
             init("fb", (classes,), 1)]
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], name="conv1",
                              kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
             helper.make_node("PRelu", ["c1", "slope"], ["a1"], name="prelu1"),
             helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], name="conv2",
                              kernel_shape=[3, 3]),
             helper.make_node("LeakyRelu", ["c2"], ["a2"], name="leaky2", alpha=0.1),
             helper.make_node("MaxPool", ["a2"], ["p"], name="pool", kernel_shape=[2, 2],
                              strides=[2, 2]),
             helper.make_node("Flatten", ["p"], ["f"], name="flat", axis=1),
             helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
             helper.make_node("Softmax", ["logits"], ["y"], name="softmax", axis=1)]
    nodes = nodes[:TENSORS.index(output)]
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes, "tiny_cnn",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c0, size, size])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
        [i for i in inits if i.name in used])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return Path(path)
