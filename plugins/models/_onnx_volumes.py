"""ONNX volume networks (N, C, D, H, W) rebuilt as channels-last Keras graphs, node by node.

onnx2keras's channels-last rebuild is written for 4-D tensors (a BatchNormalization of a 5-D
tensor would normalise the wrong axis, its Flatten transposes four axes), and TensorFlow's CPU
Conv3D takes channels-last input only; so a volume network goes through this converter instead.
Each ONNX node becomes the Keras layer that computes the same thing on (N, D, H, W, C) tensors,
with its weights moved to Keras' layouts; a Flatten puts the channels first again before it
flattens, so a dense layer after it sees the features in PyTorch's order.

It knows the operators that 3-D classifiers are exported with (MONAI's DenseNet and ResNet, plain
CNNs): Conv, BatchNormalization, Relu, LeakyRelu, Sigmoid, Tanh, Clip, MaxPool, AveragePool,
GlobalAveragePool, GlobalMaxPool, Flatten, Reshape and Squeeze to class scores, Gemm, MatMul, Add,
Sub, Mul, Div, Concat, Softmax, Identity, Dropout, and the Shape/Gather/Unsqueeze/Concat chain a
`x.view(x.size(0), -1)` exports as. Anything else, or an attribute this rebuild does not follow
(grouped convolutions, ceil_mode pooling, padding around an average that excludes it), is refused
before any work with its name. The result is checked against onnxruntime like every ONNX model.
"""

from __future__ import annotations

import numpy as np

from egide.core import ModelError

CONVERTER = "egide's volume converter"
TO_CHANNELS_LAST = (0, 4, 1, 2, 3)  # an ONNX axis of an NCDHW tensor -> the same axis of NDHWC
LOWEST = float(np.finfo(np.float32).min)  # max-pooling pads with this: no padded value is ever the max

# Operators on arrays only (shapes being computed): evaluated with numpy while converting.
ON_CONSTANTS = {"Shape", "Gather", "Unsqueeze", "Cast", "Constant"}
SUPPORTED = {"Conv", "BatchNormalization", "Relu", "LeakyRelu", "Sigmoid", "Tanh", "Clip", "MaxPool",
             "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "Flatten", "Reshape", "Squeeze", "Gemm",
             "MatMul", "Add", "Sub", "Mul", "Div", "Concat", "Softmax", "Identity", "Dropout", *ON_CONSTANTS}


def unsupported(graph_model) -> list[str]:
    """The graph's operators this converter does not know, sorted."""
    return sorted({node.op_type for node in graph_model.graph.node} - SUPPORTED)


def convert(graph_model, input_name: str, shape) -> "object":
    """A Keras model taking (N, D, H, W, C) for the ONNX graph's (N, C, D, H, W) input `input_name`."""
    import keras
    from onnx import numpy_helper

    channels, *spatial = shape[1:]
    inputs = keras.Input((*spatial, channels))
    values: dict[str, object] = {t.name: numpy_helper.to_array(t) for t in graph_model.graph.initializer}
    values[input_name] = inputs
    values[""] = None  # an optional input left out
    for node in graph_model.graph.node:
        args = [values[name] for name in node.input]
        attrs = _attributes(node)
        try:
            out = _node(node.op_type, args, attrs, node.name or node.output[0])
        except ModelError:
            raise
        except Exception as exc:
            raise ModelError(f"the {node.op_type} node '{node.name or node.output[0]}' could not be rebuilt: "
                             f"{type(exc).__name__}: {exc}") from None
        values[node.output[0]] = out
    return keras.Model(inputs, values[graph_model.graph.output[0].name])


def _attributes(node) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _refuse(op: str, why: str):
    raise ModelError(f"a volume network's {op} {why}, which the volume converter does not rebuild")


def _is_tensor(v) -> bool:
    return v is not None and not isinstance(v, np.ndarray)


def _node(op: str, args: list, attrs: dict, name: str):
    import keras
    from keras import layers

    x = args[0] if args else None
    if op == "Constant":
        from onnx import numpy_helper

        return numpy_helper.to_array(attrs["value"])
    if op in ON_CONSTANTS or (op in ("Concat", "Squeeze", "Add", "Sub", "Mul", "Div", "Reshape")
                              and not any(_is_tensor(a) for a in args)):
        return _on_arrays(op, args, attrs)
    if op in ("Identity", "Dropout"):
        return x
    if op == "Conv":
        return _conv(args, attrs)
    if op == "BatchNormalization":
        scale, bias, mean, var = args[1:5]
        bn = layers.BatchNormalization(axis=-1, epsilon=float(attrs.get("epsilon", 1e-5)))
        out = bn(x)
        bn.set_weights([scale, bias, mean, var])
        return out
    if op == "Relu":
        return layers.ReLU()(x)
    if op == "LeakyRelu":
        return layers.LeakyReLU(negative_slope=float(attrs.get("alpha", 0.01)))(x)
    if op in ("Sigmoid", "Tanh"):
        return layers.Activation(op.lower())(x)
    if op == "Clip":
        low = args[1] if len(args) > 1 and args[1] is not None else attrs.get("min", -np.inf)
        high = args[2] if len(args) > 2 and args[2] is not None else attrs.get("max", np.inf)
        return layers.Lambda(lambda t, lo=float(low), hi=float(high): keras.ops.clip(t, lo, hi))(x)
    if op in ("MaxPool", "AveragePool"):
        return _pool(op, x, attrs)
    if op == "GlobalAveragePool":
        return layers.GlobalAveragePooling3D(keepdims=True)(x)
    if op == "GlobalMaxPool":
        return layers.GlobalMaxPooling3D(keepdims=True)(x)
    if op == "Flatten":
        if attrs.get("axis", 1) != 1:
            _refuse(op, f"along axis {attrs['axis']}")
        return _flat(x)
    if op == "Squeeze":
        return _flat(x)  # to class scores: (N, C, 1, 1, 1) -> (N, C); a 2-D tensor stays as it is
    if op == "Reshape":
        target = [int(v) for v in args[1]]
        if len(target) != 2:
            _refuse(op, f"to shape {target}")
        return _flat(x)
    if op in ("Gemm", "MatMul"):
        return _dense(op, args, attrs)
    if op in ("Add", "Sub", "Mul", "Div"):
        return _arithmetic(op, args)
    if op == "Concat":
        axis = int(attrs["axis"])
        return layers.Concatenate(axis=TO_CHANNELS_LAST[axis] if len(x.shape) == 5 else axis)(args)
    if op == "Softmax":
        if len(x.shape) != 2 or attrs.get("axis", -1) not in (-1, 1):
            _refuse(op, "on anything but the class scores")
        return layers.Softmax(axis=-1)(x)
    _refuse(op, "as an operator")


def _on_arrays(op: str, args: list, attrs: dict) -> np.ndarray:
    """Shape arithmetic, on numpy arrays. A Keras tensor's shape is given in ONNX's order with 0 for
    the batch, which a Reshape reads as "the batch, as it is"."""
    x = args[0]
    if op == "Shape":
        dims = list(x.shape)[1:]
        return np.array([0, *(dims[-1:] + dims[:-1] if len(dims) == 4 else dims)], np.int64)
    if op == "Gather":
        return np.take(x, args[1], axis=int(attrs.get("axis", 0)))
    if op == "Unsqueeze":
        axes = attrs.get("axes", args[1] if len(args) > 1 else None)
        for axis in sorted(int(a) for a in axes):
            x = np.expand_dims(x, axis)
        return x
    if op == "Squeeze":
        axes = attrs.get("axes", args[1] if len(args) > 1 else None)
        return np.squeeze(x, tuple(int(a) for a in axes)) if axes is not None else np.squeeze(x)
    if op == "Concat":
        return np.concatenate(args, axis=int(attrs["axis"]))
    if op == "Cast":
        return x
    if op == "Reshape":
        return np.reshape(x, [int(v) for v in args[1]])
    return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](*args)


def _conv(args: list, attrs: dict):
    from keras import layers

    x, kernel = args[0], args[1]
    bias = args[2] if len(args) > 2 else None
    if int(attrs.get("group", 1)) != 1:
        _refuse("Conv", f"in {attrs['group']} groups")
    if attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID", "NOTSET", "VALID"):
        _refuse("Conv", f"with auto_pad {attrs['auto_pad']!r}")
    strides, dilations = attrs.get("strides", [1, 1, 1]), attrs.get("dilations", [1, 1, 1])
    if max(strides) > 1 and max(dilations) > 1:
        _refuse("Conv", "with both strides and dilations")
    x = _padded(x, attrs.get("pads", [0] * 6), 0.0)
    conv = layers.Conv3D(kernel.shape[0], kernel.shape[2:], strides=strides, dilation_rate=dilations,
                         use_bias=bias is not None)
    out = conv(x)
    conv.set_weights([kernel.transpose(2, 3, 4, 1, 0)] + ([bias] if bias is not None else []))
    return out


def _pool(op: str, x, attrs: dict):
    from keras import layers

    if attrs.get("ceil_mode", 0):
        _refuse(op, "with ceil_mode")
    if max(attrs.get("dilations", [1])) > 1:
        _refuse(op, "with dilations")
    pads = attrs.get("pads", [0] * 6)
    if op == "AveragePool" and any(pads) and not attrs.get("count_include_pad", 0):
        _refuse(op, "over padding it leaves out of the average")
    kernel = attrs["kernel_shape"]
    x = _padded(x, pads, LOWEST if op == "MaxPool" else 0.0)
    pool = layers.MaxPooling3D if op == "MaxPool" else layers.AveragePooling3D
    return pool(pool_size=kernel, strides=attrs.get("strides", [1, 1, 1]), padding="valid")(x)


def _padded(x, pads, value: float):
    """x with ONNX pads [d0, h0, w0, d1, h1, w1] around its spatial axes (channels-last)."""
    import keras
    from keras import layers

    if not any(pads):
        return x
    begin, end = pads[:3], pads[3:]
    widths = [[0, 0], *([b, e] for b, e in zip(begin, end)), [0, 0]]
    return layers.Lambda(lambda t: keras.ops.pad(t, widths, constant_values=value))(x)


def _flat(x):
    """(N, D, H, W, C) -> (N, C*D*H*W) in ONNX's (channels-first) order; a 2-D tensor as it is."""
    from keras import layers

    if len(x.shape) == 2:
        return x
    return layers.Flatten()(layers.Permute((4, 1, 2, 3))(x))


def _dense(op: str, args: list, attrs: dict):
    from keras import layers

    x, weight = args[0], args[1]
    if len(x.shape) != 2 or not isinstance(weight, np.ndarray):
        _refuse(op, "on anything but flat features and constant weights")
    if op == "Gemm" and attrs.get("transA", 0):
        _refuse(op, "with transA")
    kernel = weight.T if attrs.get("transB", 0) else weight
    kernel = kernel * float(attrs.get("alpha", 1.0))
    bias = args[2] if len(args) > 2 and args[2] is not None else None
    dense = layers.Dense(kernel.shape[1], use_bias=bias is not None)
    out = dense(x)
    weights = [kernel] + ([np.broadcast_to(bias * float(attrs.get("beta", 1.0)), (kernel.shape[1],))]
                          if bias is not None else [])
    dense.set_weights(weights)
    return out


def _arithmetic(op: str, args: list):
    import keras
    from keras import layers

    a, b = args
    if _is_tensor(a) and _is_tensor(b):
        if op == "Div":
            return layers.Lambda(lambda t: t[0] / t[1])([a, b])
        return {"Add": layers.Add, "Sub": layers.Subtract, "Mul": layers.Multiply}[op]()([a, b])
    tensor, constant = (a, b) if _is_tensor(a) else (b, a)
    constant = np.asarray(constant, np.float32)
    if len(tensor.shape) == 5 and constant.ndim > 1:  # broadcast in NCDHW order -> NDHWC order
        constant = np.moveaxis(constant.reshape((1,) * (5 - constant.ndim) + constant.shape), 1, -1)
    fn = {"Add": keras.ops.add, "Sub": keras.ops.subtract, "Mul": keras.ops.multiply, "Div": keras.ops.divide}[op]
    if _is_tensor(a):
        return layers.Lambda(lambda t, c=constant: fn(t, c))(tensor)
    return layers.Lambda(lambda t, c=constant: fn(c, t))(tensor)
