"""dlib's face-recognition ResNet, read straight out of its ``.dat`` file and run in ONNX Runtime.

dlib ships the network behind ``face_recognition_model_v1`` as a serialized C++ object: the
``anet_type`` of dlib's ``dnn_face_recognition_ex`` example, a 29-layer ResNet that maps a
150x150 aligned face chip to a 128-d descriptor. This module

* decodes dlib's serialization format (packed integers, ``float_details`` floats, tensors of
  raw little-endian float32 values, layer version strings) into plain numpy arrays,
* rebuilds the same computation as an ONNX graph (the ``affine`` layers, which are the
  inference form of batch norm, are folded into the convolutions before them), and
* runs that graph in ONNX Runtime, converting once and caching the ``.onnx`` file under
  ``${SAURON_CACHE:-~/.cache/sauron}/models/`` keyed by the hash of the ``.dat`` file.

The network, outermost layer first (``tagN``/``skipN``/``add_prevN`` are dlib's residual
plumbing: ``skipN`` reroutes to the output of ``tagN``, ``add_prevN`` adds it back)::

    loss_metric < fc_no_bias<128> < avg_pool_everything <
      level0: ares_down<256>
      level1: ares<256>, ares<256>, ares_down<256>
      level2: ares<128>, ares<128>, ares_down<128>
      level3: ares<64>, ares<64>, ares<64>, ares_down<64>
      level4: ares<32>, ares<32>, ares<32>
      max_pool<3,3,2,2> < relu < affine < con<32,7,7,2,2> < input_rgb_image_sized<150>

    block<N,s>     = affine < con<N,3,3,1,1> < relu < affine < con<N,3,3,s,s> < X
    ares<N>        = relu < add_prev1 < block<N,1> < tag1 < X
    ares_down<N>   = relu < add_prev2 < avg_pool<2,2,2,2> < skip1 < tag2 < block<N,2> < tag1 < X

dlib's ``add_prev`` adds tensors of different shapes by zero-padding both to the larger
extent in every dimension (aligned at index 0), which the graph reproduces with ``Pad``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sauron import SauronError
from sauron.cache import cache_root, cached_file

log = logging.getLogger(__name__)

#: Bump whenever the generated graph changes, so stale cached .onnx files are not reused.
CONVERTER_VERSION = 1

CHIP_SIZE = 150
DESCRIPTOR_DIM = 128
INPUT_NAME = "chips"
OUTPUT_NAME = "descriptors"
_OPSET = 17


class DlibFormatError(SauronError):
    """A dlib ``.dat`` file did not hold what the reader expected."""


# ----------------------------------------------------------------------------------------
# dlib's serialization primitives
# ----------------------------------------------------------------------------------------

# float_details marks non-finite values with these exponents
_EXP_INF, _EXP_NINF, _EXP_NAN = 32000, 32001, 32002


class DlibReader:
    """Sequential decoder of dlib's binary serialization format (dlib/serialize.h)."""

    def __init__(self, data: bytes) -> None:
        self._buf = memoryview(data)
        self.pos = 0

    def _take(self, n: int) -> memoryview:
        end = self.pos + n
        if end > len(self._buf):
            raise DlibFormatError(f"unexpected end of data at byte {self.pos} (wanted {n} more)")
        view = self._buf[self.pos : end]
        self.pos = end
        return view

    def at_end(self) -> bool:
        return self.pos >= len(self._buf)

    def read_int(self) -> int:
        """A packed integer: a control byte (bit 7: sign, low nibble: byte count), then the
        magnitude's bytes, least significant first."""
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size == 0 or size > 8:
            raise DlibFormatError(f"bad integer control byte 0x{ctrl:02x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def read_uint(self) -> int:
        value = self.read_int()
        if value < 0:
            raise DlibFormatError(f"negative value {value} where an unsigned one was expected")
        return value

    def read_float(self) -> float:
        """A ``float_details``: mantissa (int64) and exponent (int16), value = m * 2**e."""
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _EXP_INF:
            return float("inf")
        if exponent == _EXP_NINF:
            return float("-inf")
        if exponent == _EXP_NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def read_bool(self) -> bool:
        ch = self._take(1)[0]
        if ch not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{ch:02x} at byte {self.pos - 1}")
        return ch == ord("1")

    def read_string(self) -> str:
        n = self.read_uint()
        return bytes(self._take(n)).decode("latin-1")

    def read_tensor(self) -> np.ndarray:
        """A ``resizable_tensor``: version, (n, k, nr, nc), then the values.

        Version 2 stores raw little-endian float32s; version 1 stores each value as a
        ``float_details``.
        """
        version = self.read_int()
        if version not in (1, 2):
            raise DlibFormatError(f"unknown tensor version {version} at byte {self.pos}")
        shape = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"bad tensor shape {shape}")
        count = int(np.prod(shape))
        if version == 2:
            raw = self._take(4 * count)
            values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        else:
            values = np.array([self.read_float() for _ in range(count)], dtype=np.float32)
        return values.reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"unknown alias_tensor version {version}")
        n, k, nr, nc = (self.read_int() for _ in range(4))
        return (n, k, nr, nc)


# ----------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------


@dataclass
class InputRGB:
    """``input_rgb_image_sized``: x = (pixel - avg) / 256, planes in R, G, B order."""

    avg: tuple[float, float, float]
    rows: int
    cols: int


@dataclass
class Conv:
    weights: np.ndarray  # (filters, channels, rows, cols)
    bias: np.ndarray  # (filters,)
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class Affine:
    """Per-channel (conv mode) or per-element (fc mode) ``x * gamma + beta``."""

    gamma: np.ndarray
    beta: np.ndarray
    conv_mode: bool


@dataclass
class Relu:
    pass


@dataclass
class Pool:
    kind: str  # "max" or "avg"
    window: tuple[int, int]  # (rows, cols); (0, 0) means the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass
class AddPrev:
    tag: int


@dataclass
class FullyConnected:
    weights: np.ndarray  # (inputs, outputs)
    bias: np.ndarray | None


@dataclass
class Tag:
    id: int


@dataclass
class Skip:
    id: int


Layer = Conv | Affine | Relu | Pool | AddPrev | FullyConnected | Tag | Skip


@dataclass
class DlibNetwork:
    """A parsed network: the input layer, then its layers from input to output."""

    input: InputRGB
    layers: list[Layer]
    loss: str
    loss_params: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------
# Layer-detail decoders (dlib/dnn/layers.h, input.h, loss.h)
# ----------------------------------------------------------------------------------------


def _skip_multipliers(r: DlibReader, n: int) -> None:
    for _ in range(n):  # learning-rate and weight-decay multipliers: training only
        r.read_float()


def _read_con(r: DlibReader) -> Conv:
    params = r.read_tensor().ravel()
    filters = r.read_int()
    nr, nc = r.read_int(), r.read_int()
    stride = (r.read_int(), r.read_int())
    padding = (r.read_int(), r.read_int())
    f_shape = r.read_alias_tensor()
    b_shape = r.read_alias_tensor()
    _skip_multipliers(r, 4)
    n_w = int(np.prod(f_shape))
    if f_shape[0] != filters or f_shape[2:] != (nr, nc) or params.size != n_w + filters:
        raise DlibFormatError(f"inconsistent con_ layer: filters {f_shape}, params {params.size}")
    if int(np.prod(b_shape)) != filters:
        raise DlibFormatError(f"inconsistent con_ bias shape {b_shape}")
    return Conv(
        weights=params[:n_w].reshape(f_shape).copy(),
        bias=params[n_w:].copy(),
        stride=stride,
        padding=padding,
    )


def _read_affine(r: DlibReader) -> Affine:
    params = r.read_tensor().ravel()
    g_shape = r.read_alias_tensor()
    b_shape = r.read_alias_tensor()
    mode = r.read_int()
    n = int(np.prod(g_shape))
    if int(np.prod(b_shape)) != n or params.size != 2 * n:
        raise DlibFormatError(f"inconsistent affine_ layer: {g_shape} {b_shape} {params.size}")
    return Affine(gamma=params[:n].copy(), beta=params[n:].copy(), conv_mode=mode == 0)


def _read_pool(r: DlibReader, kind: str) -> Pool:
    window = (r.read_int(), r.read_int())
    stride = (r.read_int(), r.read_int())
    padding = (r.read_int(), r.read_int())
    return Pool(kind=kind, window=window, stride=stride, padding=padding)


def _read_fc(r: DlibReader) -> FullyConnected:
    outputs = r.read_uint()
    inputs = r.read_uint()
    params = r.read_tensor().ravel()
    r.read_alias_tensor()  # weights
    r.read_alias_tensor()  # biases
    bias_mode = r.read_int()
    _skip_multipliers(r, 4)
    has_bias = bias_mode == 0
    n_w = inputs * outputs
    if params.size != n_w + (outputs if has_bias else 0):
        raise DlibFormatError(f"inconsistent fc_ layer: {inputs}x{outputs}, {params.size}")
    weights = params[:n_w].reshape(inputs, outputs).copy()
    bias = params[n_w:].copy() if has_bias else None
    return FullyConnected(weights=weights, bias=bias)


def _read_details(r: DlibReader) -> Layer:
    name = r.read_string()
    if name == "con_4":
        return _read_con(r)
    if name == "affine_":
        return _read_affine(r)
    if name == "relu_":
        return Relu()
    if name == "max_pool_2":
        return _read_pool(r, "max")
    if name == "avg_pool_2":
        return _read_pool(r, "avg")
    if name == "add_prev_":
        return AddPrev(tag=-1)  # the tag is part of the C++ type, not of the data
    if name == "fc_2":
        return _read_fc(r)
    raise DlibFormatError(f"unsupported dlib layer {name!r} at byte {r.pos}")


def _read_input(r: DlibReader) -> InputRGB:
    name = r.read_string()
    if name != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported dlib input layer {name!r}")
    avg = (r.read_float(), r.read_float(), r.read_float())
    return InputRGB(avg=avg, rows=r.read_uint(), cols=r.read_uint())


# ----------------------------------------------------------------------------------------
# The network's type, as a chain of slots, outermost first
# ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One link of the C++ type chain: a computational layer or a tag/skip marker."""

    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag", "skip"
    ident: int = 0  # tag id for "tag", "skip" and "add_prev"


_DETAIL_TYPES: dict[str, type] = {
    "con": Conv,
    "affine": Affine,
    "relu": Relu,
    "max_pool": Pool,
    "avg_pool": Pool,
    "add_prev": AddPrev,
    "fc": FullyConnected,
}


def _block() -> list[Slot]:
    # affine<con<N,3,3,1,1,relu<affine<con<N,3,3,s,s,X>>>>>; the chain fixes only the kinds
    # of layers, their shapes and strides come from the file
    return [Slot("affine"), Slot("con"), Slot("relu"), Slot("affine"), Slot("con")]


def _ares() -> list[Slot]:
    return [Slot("relu"), Slot("add_prev", 1), *_block(), Slot("tag", 1)]


def _ares_down() -> list[Slot]:
    return [
        Slot("relu"),
        Slot("add_prev", 2),
        Slot("avg_pool"),
        Slot("skip", 1),
        Slot("tag", 2),
        *_block(),
        Slot("tag", 1),
    ]


def face_resnet_chain() -> list[Slot]:
    """The slots of dlib_face_recognition_resnet_model_v1's ``anet_type``, outermost first."""
    chain: list[Slot] = [Slot("fc"), Slot("avg_pool")]
    chain += _ares_down()  # level0 (256)
    chain += _ares() + _ares() + _ares_down()  # level1 (256)
    chain += _ares() + _ares() + _ares_down()  # level2 (128)
    chain += _ares() + _ares() + _ares() + _ares_down()  # level3 (64)
    chain += _ares() + _ares() + _ares()  # level4 (32)
    chain += [Slot("max_pool"), Slot("relu"), Slot("affine"), Slot("con")]
    return chain


def parse_network(data: bytes, chain: Sequence[Slot]) -> DlibNetwork:
    """Decode a serialized ``add_loss_layer`` whose subnetwork has the given type chain.

    dlib writes a layer's version, then its whole subnetwork, then its own details, so the
    file holds every layer's version (outermost first), the input layer, and then each
    computational layer's details followed by its cached training state (innermost first).
    """
    r = DlibReader(data)
    if r.read_int() != 1:
        raise DlibFormatError("not a dlib add_loss_layer (version 1)")
    loss = r.read_string()
    loss_params: dict[str, float] = {}
    if loss == "loss_metric_2":
        loss_params = {"margin": r.read_float(), "distance_threshold": r.read_float()}
    else:
        raise DlibFormatError(f"unsupported dlib loss layer {loss!r}")

    if not chain or chain[-1].kind in ("tag", "skip"):
        raise DlibFormatError("the innermost layer must be a computational layer")
    versions: list[int] = []
    for i, slot in enumerate(chain):
        version = r.read_int()
        if slot.kind in ("tag", "skip"):
            allowed: tuple[int, ...] = (1,)
        elif i == len(chain) - 1:
            allowed = (2, 3)  # the add_layer that holds the input layer
        else:
            allowed = (1, 2)
        if version not in allowed:
            raise DlibFormatError(f"{slot.kind} layer has version {version}, expected {allowed}")
        versions.append(version)
    input_version = versions[-1]
    inp = _read_input(r)

    # the innermost computational layer sits directly on the input layer and has a
    # different trailer; every other add_layer's trailer depends on its own version
    layers_inner_first: list[Layer] = []
    innermost = True
    for slot, version in zip(reversed(chain), reversed(versions), strict=True):
        if slot.kind == "tag":
            layers_inner_first.append(Tag(slot.ident))
            continue
        if slot.kind == "skip":
            layers_inner_first.append(Skip(slot.ident))
            continue
        layer = _read_details(r)
        if not isinstance(layer, _DETAIL_TYPES[slot.kind]):
            raise DlibFormatError(f"expected a {slot.kind} layer, found {type(layer).__name__}")
        if isinstance(layer, Pool) and layer.kind != slot.kind.split("_")[0]:
            raise DlibFormatError(f"expected {slot.kind}, found a {layer.kind} pool")
        if isinstance(layer, AddPrev):
            layer.tag = slot.ident
        for _ in range(3):  # this_layer_setup_called, gradient_input_is_stale, disabled getters
            r.read_bool()
        r.read_tensor()  # x_grad
        r.read_tensor()  # cached_output
        if innermost:
            r.read_tensor()  # grad_final
            if input_version >= 3:
                r.read_uint()  # _sample_expansion_factor
            innermost = False
        elif version >= 2:
            r.read_tensor()  # params_grad
        layers_inner_first.append(layer)
    if not r.at_end():
        raise DlibFormatError(f"{len(data) - r.pos} unread bytes after the network")
    return DlibNetwork(input=inp, layers=layers_inner_first, loss=loss, loss_params=loss_params)


def load_face_resnet(path: str | os.PathLike[str]) -> DlibNetwork:
    """Parse dlib_face_recognition_resnet_model_v1.dat."""
    return parse_network(Path(path).read_bytes(), face_resnet_chain())


# ----------------------------------------------------------------------------------------
# ONNX graph
# ----------------------------------------------------------------------------------------


def _fold_affines(layers: list[Layer]) -> list[Layer]:
    """Fold every conv-mode affine that directly follows a conv into that conv."""
    out: list[Layer] = []
    for layer in layers:
        prev = out[-1] if out else None
        if isinstance(layer, Affine) and layer.conv_mode and isinstance(prev, Conv):
            g = layer.gamma.astype(np.float64)
            w = prev.weights.astype(np.float64) * g[:, None, None, None]
            b = prev.bias.astype(np.float64) * g + layer.beta.astype(np.float64)
            out[-1] = Conv(w.astype(np.float32), b.astype(np.float32), prev.stride, prev.padding)
        else:
            out.append(layer)
    return out


def _pool_out(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def build_onnx(net: DlibNetwork, *, fold: bool = True) -> Any:
    """Build an ONNX model: ``chips`` (N,H,W,3) uint8 RGB -> ``descriptors`` (N,128) float32."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes: list[Any] = []
    inits: list[Any] = []
    counter = [0]

    def fresh(prefix: str) -> str:
        counter[0] += 1
        return f"{prefix}_{counter[0]}"

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(value, name=name))
        return name

    def node(op: str, inputs: list[str], prefix: str, **attrs: Any) -> str:
        out = fresh(prefix)
        nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out

    inp = net.input
    rows, cols = inp.rows, inp.cols
    x = node("Cast", [INPUT_NAME], "cast", to=TensorProto.FLOAT)
    x = node("Transpose", [x], "nchw", perm=[0, 3, 1, 2])
    mean = np.array(inp.avg, dtype=np.float32).reshape(1, 3, 1, 1)
    x = node("Sub", [x, const("input_mean", mean)], "center")
    x = node("Mul", [x, const("input_scale", np.array(1.0 / 256.0, np.float32))], "scale")

    shape = (3, rows, cols)  # (channels, rows, cols) of x
    tags: dict[int, tuple[str, tuple[int, int, int]]] = {}
    layers = _fold_affines(net.layers) if fold else net.layers
    for layer in layers:
        if isinstance(layer, Tag):
            tags[layer.id] = (x, shape)
        elif isinstance(layer, Skip):
            x, shape = tags[layer.id]
        elif isinstance(layer, Conv):
            f, k, kr, kc = layer.weights.shape
            if k != shape[0]:
                raise DlibFormatError(f"conv expects {k} channels, gets {shape[0]}")
            name = fresh("conv")
            w_name = const(name + "_w", layer.weights)
            b_name = const(name + "_b", layer.bias)
            py, px = layer.padding
            x = node(
                "Conv", [x, w_name, b_name], "conv",
                kernel_shape=[kr, kc], strides=list(layer.stride), pads=[py, px, py, px],
            )  # fmt: skip
            shape = (
                f,
                _pool_out(shape[1], kr, layer.stride[0], py),
                _pool_out(shape[2], kc, layer.stride[1], px),
            )
        elif isinstance(layer, Affine):
            bshape = (1, -1, 1, 1) if layer.conv_mode else (1, *shape)
            gamma = layer.gamma.reshape(bshape).astype(np.float32)
            beta = layer.beta.reshape(bshape).astype(np.float32)
            name = fresh("affine")
            x = node("Mul", [x, const(name + "_g", gamma)], "affine_mul")
            x = node("Add", [x, const(name + "_b", beta)], "affine_add")
        elif isinstance(layer, Relu):
            x = node("Relu", [x], "relu")
        elif isinstance(layer, Pool):
            op = "MaxPool" if layer.kind == "max" else "AveragePool"
            wr, wc = layer.window
            if (wr, wc) == (0, 0):
                if layer.kind == "avg":
                    x = node("GlobalAveragePool", [x], "gap")
                else:
                    x = node("GlobalMaxPool", [x], "gmp")
                shape = (shape[0], 1, 1)
                continue
            py, px = layer.padding
            if layer.kind == "avg" and (py or px):
                # dlib averages over the clipped window only
                raise DlibFormatError("padded average pooling is not supported")
            x = node(
                op, [x], layer.kind + "pool",
                kernel_shape=[wr, wc], strides=list(layer.stride), pads=[py, px, py, px],
            )  # fmt: skip
            shape = (
                shape[0],
                _pool_out(shape[1], wr, layer.stride[0], py),
                _pool_out(shape[2], wc, layer.stride[1], px),
            )
        elif isinstance(layer, AddPrev):
            other, oshape = tags[layer.tag]
            target = tuple(max(a, b) for a, b in zip(shape, oshape, strict=True))
            x = _padded(x, shape, target, node, const, fresh)
            other = _padded(other, oshape, target, node, const, fresh)
            x = node("Add", [x, other], "add")
            shape = (target[0], target[1], target[2])
        elif isinstance(layer, FullyConnected):
            # dlib flattens (k, nr, nc) row-major, as Flatten does on NCHW
            x = node("Flatten", [x], "flatten", axis=1)
            name = fresh("fc")
            x = node("MatMul", [x, const(name + "_w", layer.weights)], "fc")
            if layer.bias is not None:
                x = node("Add", [x, const(name + "_b", layer.bias)], "fc_bias")
            shape = (layer.weights.shape[1], 1, 1)
        else:  # pragma: no cover - the Layer union is exhaustive
            raise DlibFormatError(f"unhandled layer {layer!r}")

    nodes.append(helper.make_node("Identity", [x], [OUTPUT_NAME], name="output"))
    graph = helper.make_graph(
        nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.UINT8, ["N", rows, cols, 3])],
        [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N", shape[0]])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", _OPSET)],
        producer_name="sauron",
        producer_version=str(CONVERTER_VERSION),
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _padded(
    x: str,
    shape: tuple[int, int, int],
    target: tuple[int, ...],
    node: Any,
    const: Any,
    fresh: Any,
) -> str:
    """Zero-pad x (N, C, H, W) at the end of C, H and W up to target, as dlib's add does."""
    if tuple(shape) == tuple(target):
        return x
    pads = np.array(
        [0, 0, 0, 0, 0, target[0] - shape[0], target[1] - shape[1], target[2] - shape[2]],
        dtype=np.int64,
    )
    return str(node("Pad", [x, const(fresh("pads"), pads)], "pad", mode="constant"))


# ----------------------------------------------------------------------------------------
# Conversion cache and engine
# ----------------------------------------------------------------------------------------


def models_cache_dir() -> Path:
    """``${SAURON_CACHE:-~/.cache/sauron}/models``."""
    return cache_root() / "models"


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_dat_path() -> Path:
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


_convert_lock = threading.Lock()


def cached_onnx_path(dat_path: str | os.PathLike[str] | None = None) -> Path:
    """Path of the converted model for ``dat_path`` (default: face_recognition_models'),
    converting and caching it first if needed."""
    dat = Path(dat_path) if dat_path is not None else default_dat_path()
    digest = _file_digest(dat)
    out = models_cache_dir() / f"{dat.stem}-{digest[:16]}-c{CONVERTER_VERSION}.onnx"

    def convert() -> bytes:
        t0 = time.perf_counter()
        data = bytes(build_onnx(load_face_resnet(dat)).SerializeToString())
        log.info("converted %s to %s in %.1f s", dat.name, out, time.perf_counter() - t0)
        return data

    with _convert_lock:  # once per process; cached_file makes it once per cache folder
        return cached_file(out, convert)


class FaceResnetOnnx:
    """dlib's face ResNet in ONNX Runtime on the CPU."""

    def __init__(
        self,
        threads: int = 1,
        dat_path: str | os.PathLike[str] | None = None,
        *,
        inter_op_threads: int = 1,
    ) -> None:
        import onnxruntime as ort

        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.model_path = cached_onnx_path(dat_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = inter_op_threads
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(
            str(self.model_path), sess_options=opts, providers=["CPUExecutionProvider"]
        )

    def __call__(self, chips: np.ndarray) -> np.ndarray:
        """(N,150,150,3) uint8 RGB chips -> (N,128) float32 descriptors."""
        chips = np.ascontiguousarray(chips, dtype=np.uint8)
        if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3):
            raise ValueError(f"expected (N,{CHIP_SIZE},{CHIP_SIZE},3) chips, got {chips.shape}")
        if chips.shape[0] == 0:
            return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
        (out,) = self._session.run([OUTPUT_NAME], {INPUT_NAME: chips})
        return np.asarray(out, dtype=np.float32)
