"""ONNX models for the tests, written with onnx.helper (no PyTorch needed), NCHW as PyTorch exports:

- `demo_as_onnx`: the demo Keras CNN's own weights as an ONNX graph, so the converted model must
  classify the demo's scans exactly as the Keras one does;
- `batchnorm_residual`: a CNN with BatchNormalization and a residual connection (random weights);
- `volume_zoo`: a volume network (N, C, D, H, W) using every operator the volume converter knows
  that 3-D exports are made of, in the forms PyTorch writes them (random weights);
- small broken ones for the refusals: two inputs, a dynamic image size, an unsupported operator.
"""

from __future__ import annotations

import numpy as np


def _helpers():
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    return onnx, TensorProto, helper, numpy_helper


def _save(graph, path, opset: int = 17):
    onnx, _, helper, _ = _helpers()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def demo_as_onnx(keras_model, path):
    """The demo Sequential CNN (Conv-Pool x3, Flatten, Dense-ReLU, Dense) as ONNX, its weights copied."""
    onnx, TensorProto, helper, numpy_helper = _helpers()
    h, w, c = keras_model.input_shape[1:]
    nodes, inits, x = [], [], "image"

    def weight(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, np.float32), name))
        return name

    convs = [layer for layer in keras_model.layers if type(layer).__name__ == "Conv2D"]
    dense = [layer for layer in keras_model.layers if type(layer).__name__ == "Dense"]
    for i, conv in enumerate(convs):
        kernel, bias = conv.get_weights()
        w_name = weight(f"conv{i}.w", kernel.transpose(3, 2, 0, 1))  # HWIO -> OIHW
        nodes += [helper.make_node("Conv", [x, w_name, weight(f"conv{i}.b", bias)], [f"conv{i}"], pads=[1, 1, 1, 1]),
                  helper.make_node("Relu", [f"conv{i}"], [f"relu{i}"]),
                  helper.make_node("MaxPool", [f"relu{i}"], [f"pool{i}"], kernel_shape=[2, 2], strides=[2, 2])]
        x = f"pool{i}"
    # Keras flattens channels-last: the graph does the same after moving channels last.
    nodes += [helper.make_node("Transpose", [x], ["nhwc"], perm=[0, 2, 3, 1]),
              helper.make_node("Flatten", ["nhwc"], ["flat"], axis=1)]
    x = "flat"
    for i, layer in enumerate(dense):
        kernel, bias = layer.get_weights()
        nodes.append(helper.make_node("Gemm", [x, weight(f"fc{i}.w", kernel), weight(f"fc{i}.b", bias)], [f"fc{i}"]))
        x = f"fc{i}"
        if i < len(dense) - 1:
            nodes.append(helper.make_node("Relu", [x], [f"fc{i}.relu"]))
            x = f"fc{i}.relu"
    nodes.append(helper.make_node("Identity", [x], ["logits"]))
    k = dense[-1].units
    graph = helper.make_graph(nodes, "demo", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, c, h, w])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, k])], inits)
    return _save(graph, path)


def batchnorm_residual(path, size: int = 32, channels: int = 3, classes: int = 4, seed: int = 0, dims: int = 2):
    """Conv-BN-ReLU, a residual Conv block, MaxPool, global average pooling, Gemm; dims=3 makes
    it a volume network (N, C, D, H, W), as a MONAI 3-D network exports."""
    onnx, TensorProto, helper, numpy_helper = _helpers()
    rng = np.random.default_rng(seed)

    def w(name, shape, scale=0.3, low=None):
        value = rng.uniform(low, 1.5, shape) if low is not None else rng.normal(0, scale, shape)
        return numpy_helper.from_array(value.astype(np.float32), name)

    kernel, pads = (3,) * dims, [1] * (2 * dims)
    inits = [w("w1", (8, channels, *kernel)), w("b1", (8,), 0.1), w("g1", (8,), low=0.5), w("be1", (8,), 0.1),
             w("m1", (8,), 0.1), w("v1", (8,), low=0.5), w("w2", (8, 8, *kernel), 0.2), w("b2", (8,), 0.1),
             w("wf", (8, classes), 0.5), w("bf", (classes,), 0.1)]
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=pads),
        helper.make_node("BatchNormalization", ["c1", "g1", "be1", "m1", "v1"], ["n1"], epsilon=1e-5),
        helper.make_node("Relu", ["n1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=pads),
        helper.make_node("Add", ["c2", "r1"], ["res"]),
        helper.make_node("Relu", ["res"], ["r2"]),
        helper.make_node("MaxPool", ["r2"], ["p"], kernel_shape=[2] * dims, strides=[2] * dims),
        helper.make_node("GlobalAveragePool", ["p"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "wf", "bf"], ["logits"]),
    ]
    graph = helper.make_graph(nodes, "bn_residual",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, channels, *(size,) * dims])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, classes])], inits)
    return _save(graph, path)


def volume_zoo(path, size: int = 12, classes: int = 3, seed: int = 0, extra: str | None = None):
    """(x - 0.5) * 2 in the graph; a strided, padded Conv without bias; BatchNormalization;
    LeakyRelu; a padded MaxPool; a 1x1 branch concatenated on the channels; Clip (ReLU6); an
    AveragePool; then a Flatten of the whole (6, 3, 3, 3) map (the order of its features matters)
    beside GlobalMaxPool and the Shape-Gather-Unsqueeze-Concat-Reshape flatten of
    `x.view(x.size(0), -1)`, the two concatenated; MatMul and Add; Sigmoid. extra='group' makes the
    first Conv grouped and extra='resize' adds a Resize (both refused). For size=12."""
    onnx, TensorProto, helper, numpy_helper = _helpers()
    rng = np.random.default_rng(seed)

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    inits: list = []
    group = 2 if extra == "group" else 1
    const("half", np.float32(0.5))
    const("two", np.full((1, 2, 1, 1, 1), 2.0, np.float32))
    const("w1", rng.normal(0, 0.4, (4, 2 // group, 3, 3, 3)).astype(np.float32))
    const("g", rng.uniform(0.5, 1.5, 4).astype(np.float32))
    const("b", rng.normal(0, 0.1, 4).astype(np.float32))
    const("m", rng.normal(0, 0.1, 4).astype(np.float32))
    const("v", rng.uniform(0.5, 1.5, 4).astype(np.float32))
    const("w2", rng.normal(0, 0.4, (2, 4, 1, 1, 1)).astype(np.float32))
    const("b2", rng.normal(0, 0.1, 2).astype(np.float32))
    const("lo", np.float32(0.0))
    const("hi", np.float32(6.0))
    const("zero", np.int64(0))
    const("minus_one", np.array([-1], np.int64))
    const("wf", rng.normal(0, 0.2, (6 * 27 + 6, classes)).astype(np.float32))
    const("bf", rng.normal(0, 0.1, classes).astype(np.float32))
    const("axes0", np.array([0], np.int64))
    nodes = [
        helper.make_node("Sub", ["x", "half"], ["centred"]),
        helper.make_node("Mul", ["centred", "two"], ["scaled"]),
        helper.make_node("Conv", ["scaled", "w1"], ["c1"], strides=[2, 2, 2], pads=[1, 1, 1, 0, 1, 1], group=group),
        helper.make_node("BatchNormalization", ["c1", "g", "b", "m", "v"], ["n1"], epsilon=1e-3),
        helper.make_node("LeakyRelu", ["n1"], ["r1"], alpha=0.1),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[3, 3, 3], strides=[1, 1, 1], pads=[1] * 6),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["branch"]),
        helper.make_node("Concat", ["p1", "branch"], ["cat"], axis=1),
        helper.make_node("Clip", ["cat", "lo", "hi"], ["six"]),
        helper.make_node("AveragePool", ["six"], ["a1"], kernel_shape=[2, 2, 2], strides=[2, 2, 2]),
        helper.make_node("GlobalMaxPool", ["a1"], ["gm"]),
        helper.make_node("Shape", ["gm"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["n"], axis=0),
        helper.make_node("Unsqueeze", ["n", "axes0"], ["n1d"]),
        helper.make_node("Concat", ["n1d", "minus_one"], ["target"], axis=0),
        helper.make_node("Reshape", ["gm", "target"], ["pooled"]),
        helper.make_node("Flatten", ["a1"], ["whole"], axis=1),
        helper.make_node("Concat", ["whole", "pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "wf"], ["mm"]),
        helper.make_node("Add", ["mm", "bf"], ["pre"]),
        helper.make_node("Sigmoid", ["pre"], ["logits" if extra != "resize" else "s"]),
    ]
    if extra == "resize":
        nodes.insert(0, helper.make_node("Resize", ["x", "", "scales"], ["x2"], mode="nearest"))
        const("scales", np.ones(5, np.float32))
        nodes.append(helper.make_node("Identity", ["s"], ["logits"]))
    graph = helper.make_graph(nodes, "volume_zoo",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2, size, size, size])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, classes])], inits)
    return _save(graph, path)


def broken(kind: str, path):
    """Models egide must refuse: 'two-inputs', 'dynamic-size', 'unsupported-op', 'segmentation',
    'external-data' (weights in another file), 'custom-domain' (an operator needing its own library)."""
    onnx, TensorProto, helper, numpy_helper = _helpers()
    if kind == "external-data":
        model = onnx.load(str(batchnorm_residual(path, size=16, channels=1)))
        onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                  location=path.name + ".weights", size_threshold=0)
        return path
    if kind == "custom-domain":
        graph = helper.make_graph(
            [helper.make_node("Scramble", ["x"], ["a"], domain="com.example"),
             helper.make_node("GlobalAveragePool", ["a"], ["g"]), helper.make_node("Flatten", ["g"], ["y"])],
            kind, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1, 16, 16])],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                        helper.make_opsetid("com.example", 1)])
        onnx.save(model, str(path))
        return path
    image = [None, 1, 16, 16] if kind != "dynamic-size" else [None, 1, None, None]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, image)]
    out_shape = [None, 2]
    if kind == "two-inputs":
        inputs.append(helper.make_tensor_value_info("age", TensorProto.FLOAT, [None, 1]))
        nodes = [helper.make_node("GlobalAveragePool", ["x"], ["g"]), helper.make_node("Flatten", ["g"], ["f"]),
                 helper.make_node("Concat", ["f", "age"], ["y"], axis=1)]
    elif kind == "segmentation":
        nodes = [helper.make_node("Relu", ["x"], ["y"])]
        out_shape = image
    else:
        op = "HardSwish" if kind == "unsupported-op" else "Relu"
        nodes = [helper.make_node(op, ["x"], ["a"]), helper.make_node("GlobalAveragePool", ["a"], ["g"]),
                 helper.make_node("Flatten", ["g"], ["f"]), helper.make_node("Concat", ["f", "f"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, kind, inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)])
    return _save(graph, path)
