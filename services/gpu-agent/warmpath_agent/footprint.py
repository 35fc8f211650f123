"""Memory a GGUF model needs on a GPU, estimated from the file before it is loaded.

    estimate = weights + KV cache + scratch
    weights  = the file's size (tensor data is nearly all of it; the rest is
               tokenizer metadata, so this errs a few percent high)
    KV cache = n_layers * n_ctx * n_kv_heads * (key_length + value_length) * 2 bytes (f16)
    scratch  = 10% of weights, for llama.cpp's compute buffers

Per layer (for a split over GPUs or a partial offload, see gang.py): the
tensor table gives each repeating block's weights (`blk.N.*`); a layer's
share is its largest block plus its KV cache (n_ctx * n_kv_heads * (key +
value length) * 2 bytes). Everything else (embeddings, output, scratch) is
needed on every GPU that holds layers.

After a load on a real GPU the agent measures the process's memory through
NVML and uses that instead (see measurement.py).

Only the few header keys the formula needs are read. gguf.GGUFReader parses
the whole file, tokenizer arrays included: 10.6 s for Gemma 3 270M here,
against well under a second for this streaming read.
"""

from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from gguf import GGML_QUANT_SIZES, GGUF_MAGIC, GGMLQuantizationType, GGUFValueType

__all__ = [
    "FootprintEstimate",
    "NotAGgufFile",
    "estimate_footprint",
    "read_header_values",
]

_KV_BYTES_PER_ELEMENT = 2  # llama.cpp's default f16 KV cache
_SCRATCH_FRACTION = 0.10
_SCALAR_FORMATS = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}


class NotAGgufFile(Exception):
    pass


_BLOCK = re.compile(r"^blk\.(\d+)\.")


@dataclass(frozen=True, slots=True)
class FootprintEstimate:
    weights_bytes: int
    kv_cache_bytes: int
    scratch_bytes: int
    layers: int = 0
    """Repeating layers (block_count); 0 when unknown."""
    layer_weights_bytes: int = 0
    """The largest layer's weights, from the GGUF's tensor table."""

    @property
    def total_bytes(self) -> int:
        return self.weights_bytes + self.kv_cache_bytes + self.scratch_bytes

    @property
    def layer_bytes(self) -> int:
        """What one layer adds on the GPU holding it: its weights and its KV cache."""
        if not self.layers:
            return 0
        return self.layer_weights_bytes + self.kv_cache_bytes // self.layers


def estimate_footprint(path: Path, context_length: int) -> FootprintEstimate:
    """Blocking (reads the file header): call it in a thread."""
    with path.open("rb") as file:
        header = read_header_values(file)
        layer_weights = _largest_layer_bytes(file, header)
    architecture = str(header.get("general.architecture", ""))

    def number(key: str, default: int | None = None) -> int:
        value = header.get(f"{architecture}.{key}", default)
        if not isinstance(value, int):
            raise NotAGgufFile(f"{path.name}: header has no integer {architecture}.{key}")
        return value

    layers = number("block_count")
    heads = number("attention.head_count")
    kv_heads = number("attention.head_count_kv", heads)
    head_dim = number("embedding_length") // heads
    key_length = number("attention.key_length", head_dim)
    value_length = number("attention.value_length", head_dim)
    weights = path.stat().st_size
    kv_cache = (
        layers * context_length * kv_heads * (key_length + value_length) * _KV_BYTES_PER_ELEMENT
    )
    return FootprintEstimate(
        weights, kv_cache, int(weights * _SCRATCH_FRACTION), layers, layer_weights
    )


def read_header_values(file: BinaryIO) -> dict[str, object]:
    """The scalar and string values of a GGUF header; arrays are skipped unread. The
    file is left at the tensor table (its length is under the key `tensor_count`)."""
    magic, version = struct.unpack("<II", _exactly(file, 8))
    if magic != GGUF_MAGIC or version < 2:
        raise NotAGgufFile(f"not a GGUF v2+ file (magic {magic:#x}, version {version})")
    tensor_count, kv_count = struct.unpack("<QQ", _exactly(file, 16))
    values: dict[str, object] = {"tensor_count": tensor_count}
    for _ in range(kv_count):
        key = _string(file)
        value_type = GGUFValueType(struct.unpack("<I", _exactly(file, 4))[0])
        if value_type is GGUFValueType.ARRAY:
            _skip_array(file)
        else:
            values[key] = _scalar(file, value_type)
    return values


def _largest_layer_bytes(file: BinaryIO, header: dict[str, object]) -> int:
    """The largest repeating block's weights, from the tensor table that follows the
    header (each entry: name, dimensions, ggml type, offset)."""
    count = header.get("tensor_count")
    per_layer: dict[int, int] = {}
    for _ in range(count if isinstance(count, int) else 0):
        name = _string(file)
        (n_dims,) = struct.unpack("<I", _exactly(file, 4))
        dims = struct.unpack(f"<{n_dims}Q", _exactly(file, 8 * n_dims))
        tensor_type, _offset = struct.unpack("<IQ", _exactly(file, 12))
        block = _BLOCK.match(name)
        if block is None:
            continue
        try:
            block_size, type_size = GGML_QUANT_SIZES[GGMLQuantizationType(tensor_type)]
        except (ValueError, KeyError):
            raise NotAGgufFile(f"tensor {name} has unknown ggml type {tensor_type}") from None
        size = math.prod(dims) // block_size * type_size
        layer = int(block.group(1))
        per_layer[layer] = per_layer.get(layer, 0) + size
    return max(per_layer.values(), default=0)


def _exactly(file: BinaryIO, size: int) -> bytes:
    data = file.read(size)
    if len(data) != size:
        raise NotAGgufFile("GGUF header ends early")
    return data


def _string(file: BinaryIO) -> str:
    (length,) = struct.unpack("<Q", _exactly(file, 8))
    return _exactly(file, length).decode("utf-8", "replace")


def _scalar(file: BinaryIO, value_type: GGUFValueType) -> object:
    if value_type is GGUFValueType.STRING:
        return _string(file)
    layout = _SCALAR_FORMATS[value_type]
    return struct.unpack(layout, _exactly(file, struct.calcsize(layout)))[0]


def _skip_array(file: BinaryIO) -> None:
    item_type, count = struct.unpack("<IQ", _exactly(file, 12))
    item = GGUFValueType(item_type)
    if item is GGUFValueType.STRING:
        for _ in range(count):
            (length,) = struct.unpack("<Q", _exactly(file, 8))
            file.seek(length, 1)
    elif item is GGUFValueType.ARRAY:
        for _ in range(count):
            _skip_array(file)
    else:
        file.seek(count * struct.calcsize(_SCALAR_FORMATS[item]), 1)
