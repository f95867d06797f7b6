"""Read a TensorFlow checkpoint (a tensor bundle: ``PREFIX.index`` + ``PREFIX.data-NNNNN-of-NNNNN``) without TensorFlow.

The ``.index`` is a LevelDB table: data blocks of prefix-compressed ``key -> value`` entries, an index block of
handles to them, and a 48-byte footer ending in LevelDB's magic number. The entry under the empty key is the
``BundleHeaderProto`` (number of shards); every other key is a tensor name whose value is a ``BundleEntryProto``
(dtype, shape, shard, offset, size). Only uncompressed blocks are read (TensorFlow writes bundles that way).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import SRDistillError

_MAGIC = 0xdb4775248b80fb57
_FOOTER = 48
# tensorflow/core/framework/types.proto
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 5: np.int16, 6: np.int8, 9: np.int64, 10: np.bool_,
          17: np.uint16, 19: np.float16, 22: np.uint32, 23: np.uint64}


class BundleError(SRDistillError):
    """A file that is not a readable tensor bundle, or a tensor that is not what the reader was asked for."""


@dataclass(frozen=True)
class BundleEntry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError('truncated varint')
        byte = buf[pos]
        value |= (byte & 0x7f) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos


def proto_fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """``(field number, value)`` pairs of a protobuf message: varints as ints, length-delimited fields as bytes."""
    fields, pos = [], 0
    while pos < len(buf):
        tag, pos = _varint(buf, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = int.from_bytes(buf[pos:pos + width], 'little'), pos + width
        else:
            raise ValueError(f'unsupported protobuf wire type {wire}')
        fields.append((number, value))
    return fields


def _entry(value: bytes) -> BundleEntry:
    fields = proto_fields(value)
    shape_proto = next((v for n, v in fields if n == 2), b'')
    dims = [next((s for m, s in proto_fields(d) if m == 1), 0) for n, d in proto_fields(shape_proto) if n == 2]
    get = dict(fields).get
    return BundleEntry(get(1, 0), tuple(dims), get(3, 0), get(4, 0), get(5, 0))


def _block(data: bytes, handle: bytes) -> list[tuple[bytes, bytes]]:
    """The entries of the block a handle (two varints: offset, size) points to."""
    offset, pos = _varint(handle, 0)
    size, _ = _varint(handle, pos)
    if offset + size + 5 > len(data):
        raise ValueError('block handle points past the end of the file')
    if data[offset + size] != 0:
        raise ValueError('compressed block (only uncompressed bundles are read)')
    block = data[offset:offset + size]
    num_restarts = int.from_bytes(block[-4:], 'little')
    end, pos, key, entries = size - 4 - 4 * num_restarts, 0, b'', []
    while pos < end:
        shared, pos = _varint(block, pos)
        own, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos:pos + own]
        pos += own
        entries.append((key, block[pos:pos + length]))
        pos += length
    return entries


class TensorBundle:
    """The tensors of a TensorFlow checkpoint prefix: ``names``, ``entries[name]``, ``read(name)``."""

    def __init__(self, prefix: str | Path):
        self.prefix = str(prefix)
        index = Path(f'{self.prefix}.index')
        if not index.is_file():
            raise BundleError(f'{index}: no such file (give the checkpoint prefix, e.g. Pretrained/Pretrained)')
        data = index.read_bytes()
        if len(data) < _FOOTER or int.from_bytes(data[-8:], 'little') != _MAGIC:
            raise BundleError(f'{index}: not a TensorFlow tensor bundle index (no LevelDB table footer)')
        try:
            footer = data[-_FOOTER:]
            _, pos = _varint(footer, 0)  # the metaindex block's handle: unused
            _, pos = _varint(footer, pos)
            entries = [item for _, handle in _block(data, footer[pos:]) for item in _block(data, handle)]
            header = dict(proto_fields(dict(entries).get(b'', b'')))
            self.num_shards = int(header.get(1, 1))
            self.entries = {k.decode(): _entry(v) for k, v in entries if k}
        except (ValueError, IndexError, UnicodeDecodeError) as err:
            raise BundleError(f'{index}: not a readable tensor bundle index ({err})') from err
        self._shards: dict[int, bytes] = {}

    @property
    def names(self) -> list[str]:
        return sorted(self.entries)

    def shard_path(self, shard: int) -> Path:
        return Path(f'{self.prefix}.data-{shard:05d}-of-{self.num_shards:05d}')

    def read(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a numpy array of its stored dtype and shape."""
        if name not in self.entries:
            raise BundleError(f'{self.prefix}.index: no tensor {name!r}')
        entry = self.entries[name]
        if entry.dtype not in DTYPES:
            raise BundleError(f'{self.prefix}.index: tensor {name!r} has TensorFlow dtype {entry.dtype}, which is '
                              'not a numeric type this reader knows')
        if entry.shard not in self._shards:
            path = self.shard_path(entry.shard)
            if not path.is_file():
                raise BundleError(f'{path}: missing data shard of {self.prefix}.index')
            self._shards[entry.shard] = path.read_bytes()
        raw = self._shards[entry.shard][entry.offset:entry.offset + entry.size]
        dtype = np.dtype(DTYPES[entry.dtype]).newbyteorder('<')
        count = int(np.prod(entry.shape, dtype=np.int64))
        if entry.size != len(raw) or len(raw) != count * dtype.itemsize:
            raise BundleError(f'{self.shard_path(entry.shard)}: tensor {name!r} needs {count * dtype.itemsize} bytes '
                              f'at offset {entry.offset}, the shard holds {len(raw)} (truncated or wrong shard)')
        return np.frombuffer(raw, dtype).reshape(entry.shape).astype(dtype.newbyteorder('='))
