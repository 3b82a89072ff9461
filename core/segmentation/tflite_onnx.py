"""Our own TFLite → ONNX converter for MediaPipe's float models (no TensorFlow, no tf2onnx).

The ONNX graph keeps the TFLite model's interface exactly: the same input and output names,
NHWC shapes and float32, so code written against the TFLite semantics runs unchanged on it.
Inside, every 4-D activation lives in NCHW, the layout onnxruntime's convolutions are fast
in: each 4-D input is transposed once, each 4-D output once, and a tensor is transposed back
to NHWC only where its meaning depends on the layout (a RESHAPE, or a graph output). Weights
are transposed at conversion time and float16 weights behind DEQUANTIZE become float32
initializers, so the graph holds only the work the model really does.

Only what the models need is supported; any other operator is refused by name rather than
converted approximately.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import tflite
from onnx import TensorProto, helper, numpy_helper

from core.segmentation.errors import SegmenterError

OPSET = 17
#: The IR version that goes with opset 17, so older onnxruntime builds load the result too.
IR_VERSION = 8
PRODUCER = "chatedit.tflite_onnx"

NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)
#: Where an NHWC axis sits in NCHW.
NHWC_AXIS_IN_NCHW = (0, 2, 3, 1)

_BUILTIN_NAMES = {code: name for name, code in vars(tflite.BuiltinOperator).items() if not name.startswith("_")}
_NUMPY_TYPES = {
    tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
    tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64,
    tflite.TensorType.INT8: np.int8, tflite.TensorType.UINT8: np.uint8, tflite.TensorType.BOOL: np.bool_,
}
#: MediaPipe's TfLitePadding enum, as written in the custom options of its transposed convolution.
_TFLITE_PADDING_SAME = 1


class UnsupportedTFLiteOperator(SegmenterError, ValueError):
    """The model uses an operator (or a form of one) this converter does not translate."""

    def __init__(self, model_name: str, operator: str, detail: str = "") -> None:
        suffix = f" ({detail})" if detail else ""
        super().__init__(f"The TFLite model {model_name!r} uses the operator {operator}{suffix}, "
                         "which the ONNX converter does not support.")
        self.model_name = model_name
        self.operator = operator
        self.detail = detail


class InvalidTFLiteModel(SegmenterError, ValueError):
    """The bytes are not a TFLite model this converter can read."""

    def __init__(self, model_name: str, reason: str) -> None:
        super().__init__(f"The TFLite model {model_name!r} cannot be converted: {reason}.")
        self.model_name = model_name
        self.reason = reason


def tflite_to_onnx(data: bytes, *, model_name: str) -> onnx.ModelProto:
    """Convert a float TFLite model to an ONNX model with the same inputs and outputs (names, NHWC shapes)."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise InvalidTFLiteModel(model_name, "it does not carry the TFLite file identifier TFL3")
    model = _Converter(data, model_name).convert()
    onnx.checker.check_model(model)
    return model


def operator_names(data: bytes) -> list[str]:
    """The operators a TFLite model uses, in order of first use (builtin names, custom ops by their code)."""
    model = tflite.Model.GetRootAsModel(data, 0)
    names: list[str] = []
    for s in range(model.SubgraphsLength()):
        graph = model.Subgraphs(s)
        for i in range(graph.OperatorsLength()):
            name = _operator_name(model, graph.Operators(i))
            if name not in names:
                names.append(name)
    return names


def _operator_name(model: tflite.Model, op: tflite.Operator) -> str:
    code = model.OperatorCodes(op.OpcodeIndex())
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    if builtin == tflite.BuiltinOperator.CUSTOM:
        return code.CustomCode().decode()
    return _BUILTIN_NAMES.get(builtin, f"builtin operator {builtin}")


def _options(op: tflite.Operator, options_class: type) -> Any:  # noqa: ANN401 - the schema's generated classes
    options = options_class()
    table = op.BuiltinOptions()
    if table is not None:
        options.Init(table.Bytes, table.Pos)
    return options


def _widen(array: np.ndarray) -> np.ndarray:
    """float16 storage becomes float32, the type the graph computes in; other types stay."""
    return array.astype(np.float32) if array.dtype == np.float16 else array


def _same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite's SAME padding of one spatial axis: the extra pixel goes at the end."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def densify(values: np.ndarray, shape: tuple[int, ...], traversal_order: list[int],
            levels: list[int | tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The dense array of TFLite sparse storage without blocks (as TFLite's FormatConverter reads it).

    ``levels`` describes the dimensions in traversal order: a dense one by its size, a sparse
    one by its CSR ``(array_segments, array_indices)``; ``values`` holds the stored elements in
    that traversal order.
    """
    parents = np.zeros(1, dtype=np.int64)
    coords = np.zeros((1, 0), dtype=np.int64)
    for level in levels:
        if isinstance(level, int):
            steps = np.tile(np.arange(level, dtype=np.int64), parents.size)
            parents = np.repeat(parents, level) * level + steps
            coords = np.concatenate([np.repeat(coords, level, axis=0), steps[:, None]], axis=1)
        else:
            segments, indices = level
            starts, counts = segments[parents], segments[parents + 1] - segments[parents]
            first = np.cumsum(counts) - counts
            parents = np.repeat(starts - first, counts) + np.arange(int(counts.sum()), dtype=np.int64)
            coords = np.concatenate([np.repeat(coords, counts, axis=0), indices[parents][:, None]], axis=1)
    if coords.shape[0] != values.size:
        raise ValueError(f"The sparse tensor stores {values.size} values but its indices address {coords.shape[0]}.")
    dense = np.zeros(shape, dtype=values.dtype)
    positions = np.empty_like(coords)
    positions[:, traversal_order] = coords
    dense[tuple(positions.T)] = values
    return dense


def _index_vector(kind: int, table: Any) -> np.ndarray:  # noqa: ANN401 - a flatbuffer union table
    """The values of a SparseIndexVector union member."""
    classes = {tflite.SparseIndexVector.Int32Vector: tflite.Int32Vector,
               tflite.SparseIndexVector.Uint16Vector: tflite.Uint16Vector,
               tflite.SparseIndexVector.Uint8Vector: tflite.Uint8Vector}
    vector = classes[kind]()
    vector.Init(table.Bytes, table.Pos)
    return vector.ValuesAsNumpy().astype(np.int64)


@dataclass(frozen=True)
class _Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: type

    @property
    def rank(self) -> int:
        return len(self.shape)


class _Converter:
    """One conversion: walks the TFLite operators in order and writes ONNX nodes."""

    def __init__(self, data: bytes, model_name: str) -> None:
        self.data = data
        self.model_name = model_name
        self.model = tflite.Model.GetRootAsModel(data, 0)
        if self.model.SubgraphsLength() != 1:
            raise InvalidTFLiteModel(model_name, f"it has {self.model.SubgraphsLength()} subgraphs, not one")
        self.graph = self.model.Subgraphs(0)
        self.tensors = [self._tensor(i) for i in range(self.graph.TensorsLength())]
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.used_names: set[str] = set()
        #: (tensor index, nchw?) → ONNX value name.
        self.values: dict[tuple[int, bool], str] = {}
        self.scalars: dict[float, str] = {}
        #: Constant tensors computed at conversion time (DEQUANTIZE of a constant).
        self.folded: dict[int, np.ndarray] = {}
        self.output_indices = [self.graph.Outputs(i) for i in range(self.graph.OutputsLength())]
        self.input_indices = [self.graph.Inputs(i) for i in range(self.graph.InputsLength())]
        # Graph inputs and outputs keep the TFLite names; nothing else may take them.
        self.used_names.update(self.tensors[i].name for i in self.input_indices + self.output_indices)
        self.handlers: dict[str, Callable[[tflite.Operator, list[int], list[int]], None]] = {
            "ADD": self._binary("Add", tflite.AddOptions),
            "SUB": self._binary("Sub", tflite.SubOptions),
            "MUL": self._binary("Mul", tflite.MulOptions),
            "DIV": self._binary("Div", tflite.DivOptions),
            "AVERAGE_POOL_2D": self._pool("AveragePool"),
            "MAX_POOL_2D": self._pool("MaxPool"),
            "CONCATENATION": self._concatenation,
            "CONV_2D": self._conv,
            "DEPTHWISE_CONV_2D": self._depthwise_conv,
            "Convolution2DTransposeBias": self._transpose_conv_bias,
            "DENSIFY": self._densify,
            "DEPTH_TO_SPACE": self._depth_to_space,
            "DEQUANTIZE": self._dequantize,
            "HARD_SWISH": self._unary("HardSwish"),
            "LOGISTIC": self._unary("Sigmoid"),
            "RELU": self._unary("Relu"),
            "RELU6": self._unary("Clip", 0.0, 6.0),
            "RELU_N1_TO_1": self._unary("Clip", -1.0, 1.0),
            "TANH": self._unary("Tanh"),
            "MEAN": self._mean,
            "PAD": self._pad,
            "PADV2": self._pad,
            "PRELU": self._prelu,
            "RESHAPE": self._reshape,
            "RESIZE_BILINEAR": self._resize_bilinear,
        }

    # --- reading the TFLite model ------------------------------------------------------------------

    def _tensor(self, index: int) -> _Tensor:
        t = self.graph.Tensors(index)
        dtype = _NUMPY_TYPES.get(t.Type())
        if dtype is None:
            raise InvalidTFLiteModel(self.model_name, f"tensor {t.Name().decode()!r} has TFLite type {t.Type()}, "
                                                      "which the converter does not read")
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return _Tensor(name=t.Name().decode(), shape=shape, dtype=dtype)

    def constant(self, index: int) -> np.ndarray | None:
        """The value of a tensor known at conversion time (weights, shapes), else None."""
        if index in self.folded:
            return self.folded[index]
        t = self.graph.Tensors(index)
        if t.Sparsity() is not None:
            return None
        buffer = self.model.Buffers(t.Buffer())
        if buffer.Offset() > 1:  # large models keep buffers after the flatbuffer
            raw = self.data[buffer.Offset():buffer.Offset() + buffer.Size()]
        elif buffer.DataLength():
            raw = buffer.DataAsNumpy().tobytes()
        else:
            return None
        info = self.tensors[index]
        return np.frombuffer(raw, dtype=np.dtype(info.dtype).newbyteorder("<")).reshape(info.shape)

    def need_constant(self, index: int, op: str) -> np.ndarray:
        value = self.constant(index)
        if value is None:
            raise UnsupportedTFLiteOperator(self.model_name, op, f"its input {self.tensors[index].name!r} "
                                                                  "is computed, not a constant")
        return value

    # --- writing the ONNX graph --------------------------------------------------------------------

    def fresh(self, base: str) -> str:
        name, n = base, 1
        while name in self.used_names:
            n += 1
            name = f"{base}_{n}"
        self.used_names.add(name)
        return name

    def initializer(self, array: np.ndarray, base: str) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str, **attrs: object) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=output, **attrs))
        return output

    def output_name(self, index: int, nchw: bool) -> str:
        """The name an op writes tensor ``index`` to (a graph output keeps its TFLite name when NHWC)."""
        name = self.tensors[index].name
        if not nchw and index in self.output_indices:
            return name
        return self.fresh(f"{name}/nchw" if nchw else name)

    def define(self, index: int, nchw: bool, name: str) -> None:
        self.values[(index, nchw)] = name

    def nchw(self, index: int) -> bool:
        """Whether tensor ``index`` lives in NCHW inside the graph: every 4-D activation does."""
        return self.tensors[index].rank == 4

    def value(self, index: int, nchw: bool) -> str:
        """The ONNX name of tensor ``index`` in the layout asked for, transposing (once) when needed."""
        known = self.values.get((index, nchw))
        if known is not None:
            return known
        info = self.tensors[index]
        array = self.constant(index)
        if array is not None:
            if nchw:
                array = array.transpose(NHWC_TO_NCHW)
            name = self.initializer(_widen(array), f"{info.name}/nchw" if nchw else info.name)
        else:
            other = self.values.get((index, not nchw))
            if other is None:
                raise InvalidTFLiteModel(self.model_name, f"tensor {info.name!r} is read before it is written")
            name = self.node("Transpose", [other], self.output_name(index, nchw),
                             perm=list(NHWC_TO_NCHW if nchw else NCHW_TO_NHWC))
        self.define(index, nchw, name)
        return name

    def operand(self, index: int, nchw: bool) -> str:
        """Tensor ``index`` as an operand of an elementwise op computed in NCHW (``nchw``) or as in TFLite.

        A lower-rank operand broadcasts against NHWC's trailing axes; in NCHW it is lifted to 4-D
        and transposed so that it broadcasts against the same axes.
        """
        info = self.tensors[index]
        if not nchw or info.rank == 4 or int(np.prod(info.shape, dtype=np.int64)) == 1:
            return self.value(index, nchw and info.rank == 4)
        lifted = (1,) * (4 - info.rank) + info.shape
        array = self.constant(index)
        if array is not None:
            array = array.reshape(lifted).transpose(NHWC_TO_NCHW)
            return self.initializer(_widen(array), f"{info.name}/nchw")
        shape = self.initializer(np.array(lifted, dtype=np.int64), f"{info.name}/shape4d")
        reshaped = self.node("Reshape", [self.value(index, False), shape], self.fresh(f"{info.name}/4d"))
        return self.node("Transpose", [reshaped], self.fresh(f"{info.name}/4d/nchw"), perm=list(NHWC_TO_NCHW))

    def activation(self, result: str, fused: int, op: tflite.Operator, index: int, nchw: bool) -> None:
        """Apply a fused activation to ``result`` and define tensor ``index`` as its output."""
        act = tflite.ActivationFunctionType
        if fused == act.NONE:
            self.define(index, nchw, result)
            return
        output = self.output_name(index, nchw)
        if fused == act.RELU:
            self.node("Relu", [result], output)
        elif fused in (act.RELU6, act.RELU_N1_TO_1):
            low, high = (0.0, 6.0) if fused == act.RELU6 else (-1.0, 1.0)
            self.node("Clip", [result, self.scalar(low), self.scalar(high)], output)
        elif fused == act.TANH:
            self.node("Tanh", [result], output)
        else:
            raise UnsupportedTFLiteOperator(self.model_name, _operator_name(self.model, op),
                                            f"fused activation {fused}")
        self.define(index, nchw, output)

    def scalar(self, value: float) -> str:
        name = self.scalars.get(value)
        if name is None:
            name = self.scalars[value] = self.initializer(np.array(value, dtype=np.float32), f"scalar_{value:g}")
        return name

    def int64s(self, values: list[int] | tuple[int, ...], base: str) -> str:
        return self.initializer(np.array(values, dtype=np.int64), base)

    def result_name(self, index: int, nchw: bool, fused: int) -> str:
        """Where an op writes before its fused activation (straight to the tensor when there is none)."""
        if fused == tflite.ActivationFunctionType.NONE:
            return self.output_name(index, nchw)
        return self.fresh(f"{self.tensors[index].name}/preact")

    # --- the conversion ----------------------------------------------------------------------------

    def convert(self) -> onnx.ModelProto:
        inputs = []
        for index in self.input_indices:
            info = self.tensors[index]
            if info.dtype != np.float32:
                raise InvalidTFLiteModel(self.model_name, f"its input {info.name!r} is not float32")
            inputs.append(helper.make_tensor_value_info(info.name, TensorProto.FLOAT, list(info.shape)))
            self.define(index, False, info.name)
        for i in range(self.graph.OperatorsLength()):
            op = self.graph.Operators(i)
            name = _operator_name(self.model, op)
            handler = self.handlers.get(name)
            if handler is None:
                raise UnsupportedTFLiteOperator(self.model_name, name)
            ins = [int(x) for x in op.InputsAsNumpy()] if op.InputsLength() else []
            outs = [int(x) for x in op.OutputsAsNumpy()]
            handler(op, ins, outs)
        outputs = []
        for index in self.output_indices:
            info = self.tensors[index]
            if info.dtype != np.float32:
                raise InvalidTFLiteModel(self.model_name, f"its output {info.name!r} is not float32")
            name = self.value(index, False)
            if name != info.name:  # produced under another name (an input passed through): copy it
                self.node("Identity", [name], info.name)
            outputs.append(helper.make_tensor_value_info(info.name, TensorProto.FLOAT, list(info.shape)))
        graph = helper.make_graph(self.nodes, self.model_name, inputs, outputs, initializer=self.initializers)
        model = helper.make_model(graph, producer_name=PRODUCER, opset_imports=[helper.make_opsetid("", OPSET)])
        model.ir_version = IR_VERSION
        description = self.model.Description()
        helper.set_model_props(model, {
            "source_format": "tflite",
            "source_model": self.model_name,
            "source_sha256": hashlib.sha256(self.data).hexdigest(),
            "source_description": description.decode() if description else "",
            "converter": PRODUCER,
        })
        return model

    # --- operators ---------------------------------------------------------------------------------

    def _binary(self, op_type: str, options_class: type) -> Callable[[tflite.Operator, list[int], list[int]], None]:
        def convert(op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
            fused = _options(op, options_class).FusedActivationFunction()
            (out,) = outs
            nchw = self.nchw(out)
            a, b = (self.operand(i, nchw) for i in ins)
            result = self.node(op_type, [a, b], self.result_name(out, nchw, fused))
            self.activation(result, fused, op, out, nchw)
        return convert

    def _unary(self, op_type: str, *clip: float) -> Callable[[tflite.Operator, list[int], list[int]], None]:
        def convert(op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
            (out,) = outs
            nchw = self.nchw(out)
            inputs = [self.value(ins[0], nchw)] + [self.scalar(v) for v in clip]
            self.define(out, nchw, self.node(op_type, inputs, self.output_name(out, nchw)))
        return convert

    def _conv(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        options = _options(op, tflite.Conv2DOptions)
        weights = self.need_constant(ins[1], "CONV_2D").astype(np.float32)  # OHWI
        groups = self.tensors[ins[0]].shape[3] // weights.shape[3]
        self._convolution(op, ins, outs, weights.transpose(NHWC_TO_NCHW), groups, options,
                          (options.DilationHFactor(), options.DilationWFactor()))

    def _depthwise_conv(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        options = _options(op, tflite.DepthwiseConv2DOptions)
        weights = self.need_constant(ins[1], "DEPTHWISE_CONV_2D").astype(np.float32)  # 1HW(C·multiplier)
        channels = self.tensors[ins[0]].shape[3]
        self._convolution(op, ins, outs, weights.transpose(3, 0, 1, 2), channels, options,
                          (options.DilationHFactor(), options.DilationWFactor()))

    def _convolution(self, op: tflite.Operator, ins: list[int], outs: list[int], weights: np.ndarray, groups: int,
                     options: Any, dilations: tuple[int, int]) -> None:  # noqa: ANN401
        (out,) = outs
        x = self.tensors[ins[0]]
        kernel = weights.shape[2:]
        strides = (options.StrideH(), options.StrideW())
        pads = self._pads(options.Padding(), x.shape[1:3], kernel, strides, dilations)
        inputs = [self.value(ins[0], True), self.initializer(weights, f"{self.tensors[ins[1]].name}/oihw")]
        if len(ins) > 2 and ins[2] >= 0:
            inputs.append(self.value(ins[2], False))
        fused = options.FusedActivationFunction()
        result = self.node("Conv", inputs, self.result_name(out, True, fused), kernel_shape=list(kernel),
                           strides=list(strides), pads=pads, dilations=list(dilations), group=groups)
        self.activation(result, fused, op, out, True)

    @staticmethod
    def _pads(padding: int, size: tuple[int, ...], kernel: tuple[int, ...], strides: tuple[int, int],
              dilations: tuple[int, int] = (1, 1)) -> list[int]:
        """ONNX pads (begins, then ends) for TFLite's SAME or VALID padding."""
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        (top, bottom), (left, right) = (_same_pads(s, k, st, d) for s, k, st, d in zip(size, kernel, strides,
                                                                                       dilations, strict=True))
        return [top, left, bottom, right]

    def _pool(self, op_type: str) -> Callable[[tflite.Operator, list[int], list[int]], None]:
        def convert(op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
            options = _options(op, tflite.Pool2DOptions)
            (out,) = outs
            kernel = (options.FilterHeight(), options.FilterWidth())
            strides = (options.StrideH(), options.StrideW())
            pads = self._pads(options.Padding(), self.tensors[ins[0]].shape[1:3], kernel, strides)
            fused = options.FusedActivationFunction()
            # count_include_pad stays 0: TFLite averages over the pixels inside the image only.
            result = self.node(op_type, [self.value(ins[0], True)], self.result_name(out, True, fused),
                               kernel_shape=list(kernel), strides=list(strides), pads=pads)
            self.activation(result, fused, op, out, True)
        return convert

    def _transpose_conv_bias(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        """MediaPipe's custom transposed convolution with bias; options are its TfLiteTransposeConvParams."""
        operator = "Convolution2DTransposeBias"
        raw = op.CustomOptionsAsNumpy().tobytes() if op.CustomOptionsLength() else b""
        if len(raw) < 12:
            raise UnsupportedTFLiteOperator(self.model_name, operator, f"{len(raw)} bytes of options, not 12")
        padding, stride_w, stride_h = struct.unpack("<iii", raw[:12])
        weights = self.need_constant(ins[1], operator).astype(np.float32)  # OHWI
        (out,) = outs
        x = self.tensors[ins[0]]
        kernel = weights.shape[1:3]
        pads = [0, 0, 0, 0]
        if padding == _TFLITE_PADDING_SAME:
            totals = [max(0, k - (n - 1) % s - 1) for k, n, s in zip(kernel, x.shape[1:3], (stride_h, stride_w),
                                                                      strict=True)]
            pads = [totals[0] // 2, totals[1] // 2, totals[0] - totals[0] // 2, totals[1] - totals[1] // 2]
        expected = tuple((n - 1) * s + k - (b + e) for n, s, k, b, e in
                         zip(x.shape[1:3], (stride_h, stride_w), kernel, pads[:2], pads[2:], strict=True))
        if expected != self.tensors[out].shape[1:3]:
            raise UnsupportedTFLiteOperator(self.model_name, operator, f"output {self.tensors[out].shape} where "
                                                                       f"the options give {expected}")
        inputs = [self.value(ins[0], True), self.initializer(weights.transpose(3, 0, 1, 2),
                                                             f"{self.tensors[ins[1]].name}/iohw"),
                  self.value(ins[2], False)]
        self.define(out, True, self.node("ConvTranspose", inputs, self.output_name(out, True),
                                         kernel_shape=list(kernel), strides=[stride_h, stride_w], pads=pads))

    def _densify(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        """Sparse constant weights become dense initializers at conversion time."""
        (source,), (out,) = ins, outs
        tensor = self.graph.Tensors(source)
        sparsity = tensor.Sparsity()
        buffer = self.model.Buffers(tensor.Buffer())
        if sparsity is None or not buffer.DataLength():
            raise UnsupportedTFLiteOperator(self.model_name, "DENSIFY", "of a tensor that is not sparse constant data")
        if sparsity.BlockMapLength():
            raise UnsupportedTFLiteOperator(self.model_name, "DENSIFY", "of block-sparse weights")
        levels: list[int | tuple[np.ndarray, np.ndarray]] = []
        for level in range(sparsity.DimMetadataLength()):
            metadata = sparsity.DimMetadata(level)
            if metadata.Format() == tflite.DimensionType.DENSE:
                levels.append(metadata.DenseSize())
            else:
                levels.append((_index_vector(metadata.ArraySegmentsType(), metadata.ArraySegments()),
                               _index_vector(metadata.ArrayIndicesType(), metadata.ArrayIndices())))
        info = self.tensors[source]
        values = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=np.dtype(info.dtype).newbyteorder("<"))
        order = [int(d) for d in sparsity.TraversalOrderAsNumpy()]
        self.folded[out] = densify(values, self.tensors[out].shape, order, levels)

    def _depth_to_space(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        """TFLite's NHWC depth-to-space orders depth as (row, column, channel): ONNX's DCR mode in NCHW."""
        block = _options(op, tflite.DepthToSpaceOptions).BlockSize()
        (out,) = outs
        self.define(out, True, self.node("DepthToSpace", [self.value(ins[0], True)], self.output_name(out, True),
                                         blocksize=block, mode="DCR"))

    def _dequantize(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        (source,), (out,) = ins, outs
        value = self.constant(source)
        if value is not None and value.dtype == np.float16:
            self.folded[out] = value.astype(np.float32)
            return
        if self.tensors[source].dtype != np.float16:
            raise UnsupportedTFLiteOperator(self.model_name, "DEQUANTIZE", f"of {np.dtype(self.tensors[source].dtype)}")
        nchw = self.nchw(out)
        self.define(out, nchw, self.node("Cast", [self.value(source, nchw)], self.output_name(out, nchw),
                                         to=TensorProto.FLOAT))

    def _concatenation(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        options = _options(op, tflite.ConcatenationOptions)
        (out,) = outs
        rank = self.tensors[out].rank
        nchw = rank == 4
        axis = options.Axis() % rank
        if nchw:
            axis = NHWC_AXIS_IN_NCHW[axis]
        fused = options.FusedActivationFunction()
        result = self.node("Concat", [self.value(i, nchw) for i in ins], self.result_name(out, nchw, fused), axis=axis)
        self.activation(result, fused, op, out, nchw)

    def _mean(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        keep = bool(_options(op, tflite.ReducerOptions).KeepDims())
        (out,) = outs
        rank = self.tensors[ins[0]].rank
        axes = sorted({int(a) % rank for a in np.atleast_1d(self.need_constant(ins[1], "MEAN"))})
        # Reducing H and W (or keeping the rank) reads the same in NCHW; anything else is done in NHWC.
        in_nchw = rank == 4 and (keep or axes == [1, 2])
        if in_nchw:
            axes = sorted(NHWC_AXIS_IN_NCHW[a] for a in axes)
        out_nchw = in_nchw and keep
        result = self.node("ReduceMean", [self.value(ins[0], in_nchw)], self.output_name(out, out_nchw),
                           axes=axes, keepdims=int(keep))
        self.define(out, out_nchw, result)

    def _pad(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        paddings = self.need_constant(ins[1], "PAD").astype(np.int64)  # rank × (before, after)
        (out,) = outs
        nchw = self.nchw(out)
        if nchw:
            paddings = paddings[list(NHWC_TO_NCHW)]
        inputs = [self.value(ins[0], nchw), self.int64s(list(paddings[:, 0]) + list(paddings[:, 1]),
                                                        f"{self.tensors[out].name}/pads")]
        if len(ins) > 2:
            inputs.append(self.value(ins[2], False))
        self.define(out, nchw, self.node("Pad", inputs, self.output_name(out, nchw), mode="constant"))

    def _prelu(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        (out,) = outs
        nchw = self.nchw(out)
        slope = self.constant(ins[1])
        channels = self.tensors[out].shape[-1]
        if nchw and slope is not None and slope.size == channels \
                and slope.shape[-1] == channels:
            self._prelu_as_convolutions(ins[0], slope.reshape(channels).astype(np.float32), out)
            return
        alpha = self.operand(ins[1], nchw)
        self.define(out, nchw, self.node("PRelu", [self.value(ins[0], nchw), alpha], self.output_name(out, nchw)))

    def _prelu_as_convolutions(self, source: int, slope: np.ndarray, out: int) -> None:
        """A per-channel PReLU written as ``y + (1 - slope) * relu(-y)``: two 1×1 depthwise convolutions.

        onnxruntime runs convolutions, their fused Relu and a following Add in its blocked
        channel layout; a PRelu node would make it convert the tensor out of that layout and
        back around every activation.
        """
        channels = slope.size
        y = self.value(source, True)
        name = self.tensors[out].name
        negate = self.initializer(np.full((channels, 1, 1, 1), -1.0, dtype=np.float32), f"{name}/negate")
        negated = self.node("Conv", [y, negate], self.fresh(f"{name}/negated"), kernel_shape=[1, 1], group=channels)
        negative_part = self.node("Relu", [negated], self.fresh(f"{name}/negative_part"))
        scale = self.initializer((1.0 - slope).reshape(channels, 1, 1, 1), f"{name}/one_minus_slope")
        scaled = self.node("Conv", [negative_part, scale], self.fresh(f"{name}/scaled"), kernel_shape=[1, 1],
                           group=channels)
        self.define(out, True, self.node("Add", [scaled, y], self.output_name(out, True)))

    def _reshape(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        """A reshape means the NHWC order of elements, so it reads its input in NHWC."""
        (out,) = outs
        shape = self.int64s(self.tensors[out].shape, f"{self.tensors[out].name}/shape")
        self.define(out, False, self.node("Reshape", [self.value(ins[0], False), shape],
                                          self.output_name(out, False)))

    def _resize_bilinear(self, op: tflite.Operator, ins: list[int], outs: list[int]) -> None:
        options = _options(op, tflite.ResizeBilinearOptions)
        (out,) = outs
        if options.AlignCorners():
            mode = "align_corners"
        elif options.HalfPixelCenters():
            mode = "half_pixel"
        else:
            mode = "asymmetric"
        n, h, w, c = self.tensors[out].shape
        sizes = self.int64s([n, c, h, w], f"{self.tensors[out].name}/sizes")
        self.define(out, True, self.node("Resize", [self.value(ins[0], True), "", "", sizes],
                                         self.output_name(out, True), mode="linear",
                                         coordinate_transformation_mode=mode))
