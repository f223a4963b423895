"""Hand-written btrfs send streams, as a compromised production could write them.

A v2 stream (``btrfs send --proto 2``) may carry ``fallocate``: receive then reserves space that
no data in the stream pays for, so counting or capping the stream's bytes bounds nothing. The
kernel's own ``send`` never emits one for a preallocated file (it sends a truncate), hence this
writer. Format: ``btrfs-stream\\0``, a little-endian u32 version, then commands (u32 payload
length, u16 command, u32 CRC-32C of the command with that field zero) of TLV attributes (u16
type, u16 length, value); numbers from the kernel's ``fs/btrfs/send.h``.

Run as a program it is a hostile sender: ``send_streams.py NAME BYTES`` writes a stream that
makes subvolume NAME holding one file fallocated to BYTES.
"""

from __future__ import annotations

import struct
import sys
import uuid

# commands and attributes (fs/btrfs/send.h)
SUBVOL, MKFILE, END, FALLOCATE = 1, 3, 21, 23
UUID, CTRANSID, INO, SIZE, PATH, FILE_OFFSET, FALLOCATE_MODE = 1, 2, 3, 4, 15, 18, 25


def _crc_table() -> list[int]:
    table = []
    for number in range(256):
        crc = number
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """btrfs's CRC-32C of a command: seed 0, no final inversion."""
    crc = 0
    for byte in data:
        crc = TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


def attribute(kind: int, value: bytes) -> bytes:
    return struct.pack("<HH", kind, len(value)) + value


def command(kind: int, *attributes: bytes) -> bytes:
    payload = b"".join(attributes)
    checksum = crc32c(struct.pack("<IHI", len(payload), kind, 0) + payload)
    return struct.pack("<IHI", len(payload), kind, checksum) + payload


def fallocate_stream(name: str, size: int) -> bytes:
    """A v2 stream: subvolume ``name`` with one file ``big`` fallocated to ``size`` bytes."""
    return b"".join(
        [
            b"btrfs-stream\0" + struct.pack("<I", 2),
            command(
                SUBVOL,
                attribute(PATH, name.encode()),
                attribute(UUID, uuid.uuid4().bytes),
                attribute(CTRANSID, struct.pack("<Q", 7)),
            ),
            command(MKFILE, attribute(PATH, b"big"), attribute(INO, struct.pack("<Q", 257))),
            command(
                FALLOCATE,
                attribute(PATH, b"big"),
                attribute(FALLOCATE_MODE, struct.pack("<I", 0)),
                attribute(FILE_OFFSET, struct.pack("<Q", 0)),
                attribute(SIZE, struct.pack("<Q", size)),
            ),
            command(END),
        ]
    )


if __name__ == "__main__":
    sys.stdout.buffer.write(fallocate_stream(sys.argv[1], int(sys.argv[2])))
