"""Write a minimal TensorFlow tensor bundle (one uncompressed LevelDB data block), as TensorFlow lays it out, so the
reader and the converter are tested without TensorFlow or the official files."""
from __future__ import annotations

from pathlib import Path

import numpy as np

TF_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3}


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7f, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, value: int | bytes) -> bytes:
    if isinstance(value, bytes):
        return varint(number << 3 | 2) + varint(len(value)) + value
    return varint(number << 3) + varint(value)


def block(entries: list[tuple[bytes, bytes]]) -> bytes:
    """Entries without prefix sharing, one restart point, then the 5-byte trailer (no compression, crc unchecked)."""
    body = b''.join(varint(0) + varint(len(k)) + varint(len(v)) + k + v for k, v in entries)
    return body + (0).to_bytes(4, 'little') + (1).to_bytes(4, 'little') + b'\0' * 5


def write_bundle(prefix: Path, tensors: dict[str, np.ndarray]) -> None:
    data, entries = b'', [(b'', field(1, 1))]  # BundleHeaderProto: one shard
    for name in sorted(tensors):
        array = np.asarray(tensors[name])
        shape = b''.join(field(2, field(1, d)) for d in array.shape)
        entry = field(1, TF_DTYPES[array.dtype]) + field(2, shape) + field(4, len(data)) + field(5, array.nbytes)
        entries.append((name.encode(), entry))
        data += array.tobytes()
    Path(f'{prefix}.data-00000-of-00001').write_bytes(data)
    data_block = block(entries)
    index_block = block([(entries[-1][0], varint(0) + varint(len(data_block) - 5))])
    meta_block = block([])
    index_at, meta_at = len(data_block), len(data_block) + len(index_block)
    handles = varint(meta_at) + varint(len(meta_block) - 5) + varint(index_at) + varint(len(index_block) - 5)
    footer = handles.ljust(40, b'\0') + (0xdb4775248b80fb57).to_bytes(8, 'little')
    Path(f'{prefix}.index').write_bytes(data_block + index_block + meta_block + footer)


def mzsr_like(num_feat: int = 4, num_layers: int = 3, seed: int = 0) -> dict[str, np.ndarray]:
    """Random HWIO kernels and biases named as the official MZSR checkpoint names them, plus an Adam slot."""
    rng = np.random.default_rng(seed)
    tensors = {'global_step': np.array(7, np.int32)}
    for i in range(1, num_layers + 1):
        cin, cout = 3 if i == 1 else num_feat, 3 if i == num_layers else num_feat
        tensors[f'MODEL/conv{i}/kernel'] = rng.standard_normal((3, 3, cin, cout)).astype(np.float32)
        tensors[f'MODEL/conv{i}/kernel/Adam'] = np.zeros((3, 3, cin, cout), np.float32)
        tensors[f'MODEL/conv{i}/bias'] = rng.standard_normal(cout).astype(np.float32)
    return tensors
