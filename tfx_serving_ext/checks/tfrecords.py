"""Reads TFRecord files record by record, from the start or from any byte offset.

A TFRecord is `uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)`
(little-endian). Reading it here, rather than through `tf.data`, lets a sampler stop after a
counted number of records, and, in an uncompressed file, start at an arbitrary byte offset: the
next record boundary is the first position whose length field matches its checksum (a chance
match is 1 in 2**32, and the data's checksum must match too). Gzip files (`*.gz`, as ExampleGen
writes them) can only be read from their start.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

HEADER_BYTES = 12  # uint64 length + uint32 masked crc of the length
FOOTER_BYTES = 4  # uint32 masked crc of the data
# How far past an offset `record_after` looks for a record boundary before giving up: a record
# larger than this is skipped over by a position inside it.
MAX_RESYNC_BYTES = 16 * 1024 * 1024
_SCAN_CHUNK = 8 * 1024  # most tf.Examples are far smaller; larger records take more chunks
_MASK_DELTA = 0xA282EAD8


class TFRecordError(ValueError):
    """A file is not a TFRecord file, or a record in it is corrupt."""


def _python_crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


try:  # C implementation, installed with apache-beam[gcp] (google-cloud-storage)
    from google_crc32c import value as _crc32c
except ImportError:  # pragma: no cover - exercised only where google-crc32c is absent
    _TABLE = _python_crc32c_table()

    def _crc32c(data: bytes) -> int:
        crc = 0xFFFFFFFF
        for byte in data:
            crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """Returns TFRecord's masked CRC-32C of `data`."""
    crc = _crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def is_gzip(path: str | os.PathLike) -> bool:
    """Returns whether the file is read as gzip (its name ends in `.gz`, as TFX's readers do)."""
    return str(path).endswith(".gz")


@contextmanager
def open_records(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """Yields the file opened for reading records (decompressed when it is gzip).

    Raises:
        TFRecordError: a `*.gz` file that is not gzip, or a truncated one.
    """
    try:
        with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as handle:
            yield handle
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise TFRecordError(f"{path}: not a readable gzip file ({exc})") from exc


def read_record(handle: BinaryIO, where: str = "") -> bytes | None:
    """Returns the next record of `handle`, or None at the end of the file.

    Raises:
        TFRecordError: a truncated record or a checksum mismatch (names `where`).
    """
    header = handle.read(HEADER_BYTES)
    if not header:
        return None
    if len(header) < HEADER_BYTES:
        raise TFRecordError(f"{where}: truncated record header; the file is cut short")
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc32c(header[:8]) != length_crc:
        raise TFRecordError(
            f"{where}: bad record length checksum; not a TFRecord file (or a gzip one without "
            "the .gz suffix), or corrupt"
        )
    data = handle.read(length + FOOTER_BYTES)
    if len(data) < length + FOOTER_BYTES:
        raise TFRecordError(f"{where}: truncated record of {length} bytes; the file is cut short")
    if masked_crc32c(data[:length]) != struct.unpack("<I", data[length:])[0]:
        raise TFRecordError(f"{where}: record data checksum mismatch; the file is corrupt")
    return data[:length]


def iter_file_records(path: str | os.PathLike) -> Iterator[bytes]:
    """Yields every record of one TFRecord file (`*.gz` read as gzip).

    Raises:
        TFRecordError: the file is not a TFRecord file or is corrupt.
    """
    with open_records(path) as handle:
        while (record := read_record(handle, str(path))) is not None:
            yield record


def _header_at(buffer: bytes, position: int, limit: int) -> int | None:
    """Returns the record length if a valid record header starts at `position` of `buffer`."""
    length, length_crc = struct.unpack_from("<QI", buffer, position)
    if length > limit or masked_crc32c(buffer[position : position + 8]) != length_crc:
        return None
    return length


def record_after(handle: BinaryIO, offset: int, file_size: int) -> tuple[int, bytes] | None:
    """Returns (offset, record) of the first whole record starting at or after `offset`.

    Only for uncompressed files (`handle` must be seekable). None when no record starts between
    `offset` and the end of the file (or within MAX_RESYNC_BYTES of it).
    """
    start = offset
    while start < file_size and start - offset <= MAX_RESYNC_BYTES:
        handle.seek(start)
        chunk = handle.read(_SCAN_CHUNK + HEADER_BYTES)
        last = min(len(chunk) - HEADER_BYTES, _SCAN_CHUNK - 1)
        position = 0
        while position <= last:
            # A length below 2**40 has its three high bytes zero: jump to such places first.
            zeros = chunk.find(b"\0\0\0", position + 5)
            if zeros < 0 or zeros - 5 > last:
                break
            position = zeros - 5
            record_start = start + position
            room = file_size - record_start - HEADER_BYTES - FOOTER_BYTES
            if _header_at(chunk, position, room) is not None:
                handle.seek(record_start)
                try:
                    record = read_record(handle)
                except TFRecordError:
                    record = None
                if record is not None:
                    return record_start, record
            position += 1
        start += _SCAN_CHUNK
    return None


def file_size(path: str | os.PathLike) -> int:
    """Returns the file's size in bytes (compressed size for gzip)."""
    return Path(path).stat().st_size
