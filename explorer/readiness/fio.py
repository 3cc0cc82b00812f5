"""fio's server (`fio --server`), asked the question its own client asks first.

A fio client opens with FIO_NET_CMD_PROBE and the server answers with its host name, fio
version, OS and CPU count; a server that speaks another protocol version answers with a text
line instead ("bad server cmd version N") and the version it speaks in the reply's header.
Either answer proves fio's server is behind the port (a Docker proxy or QEMU's hostfwd with
nothing behind it closes the connection); only the first says the host's client can load it,
so only the first counts as ready, and the second is what a timeout reports.

The wire format (fio's server.h; little endian): a 24-byte header (version u16, opcode u16,
flags u32, tag u64, pdu_len u32, then the CRC-16 of those 20 bytes and the CRC-16 of the
payload), then the payload. The CRC is CRC-16/ARC (fio's lib/crc16.c). Checked against fio
3.33 on the wire: its client sends version 97, opcode 10, a 136-byte probe payload.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar

from explorer.readiness.base import Strategy, connect, recv_exactly, shown

HEADER = struct.Struct("<HHIQIHH")
CMD_TEXT = 5
CMD_PROBE = 10
PROBE_REPLY = struct.Struct("<64sB32sBBBIQ")  # hostname, bigendian, fio_version, os, arch, bpp, cpus, flags
MAX_PDU = 1 << 20  # a probe reply is 112 bytes, a text line a few dozen: anything larger is not fio


def crc16(data: bytes, crc: int = 0) -> int:
    """CRC-16/ARC (polynomial 0x8005 reflected, initial 0), as fio's crc16 computes it."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def command(version: int, opcode: int, payload: bytes, tag: int = 1) -> bytes:
    head = struct.pack("<HHIQI", version, opcode, 0, tag, len(payload))
    return head + struct.pack("<HH", crc16(head), crc16(payload)) + payload


def probe_payload(server: str) -> bytes:
    """cmd_client_probe_pdu: flags (no zlib: the answer stays readable) and the server's name."""
    return struct.pack("<Q", 0) + server.encode()[:127].ljust(128, b"\0")


def read_reply(data: bytes) -> tuple[int, int, bytes]:
    """(version, opcode, payload) of one reply, checked; ValueError saying what is wrong."""
    version, opcode, _flags, _tag, length, head_crc, payload_crc = HEADER.unpack(data[: HEADER.size])
    if crc16(data[:20]) != head_crc:
        raise ValueError("not a fio reply (its header checksum does not match)")
    payload = data[HEADER.size : HEADER.size + length]
    if len(payload) != length or crc16(payload) != payload_crc:
        raise ValueError("a fio reply whose payload is cut short or damaged")
    return version, opcode, payload


def describe_probe(payload: bytes) -> str:
    host, _big, fio_version, *_rest, cpus, _flags = PROBE_REPLY.unpack(payload[: PROBE_REPLY.size])
    return f"{_text(fio_version)} on {_text(host)} ({cpus} CPUs)"


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


@dataclass
class Fio(Strategy):
    """fio's client/server probe, answered by a probe reply of the protocol version asked."""

    KIND: ClassVar[str] = "fio"
    PARAMS: ClassVar[dict[str, dict[str, Any]]] = {
        # fio's client/server protocol version (FIO_SERVER_VER): 97 is fio 3.33's, Debian
        # bookworm's. Client and server must speak the same one.
        "protocol": {"type": "integer", "minimum": 1, "maximum": 65535},
    }

    protocol: int = 97

    def check(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        with connect(host, port, timeout) as sock:
            sock.sendall(command(self.protocol, CMD_PROBE, probe_payload(host)))
            head = recv_exactly(sock, HEADER.size)
            length = HEADER.unpack(head)[4]
            if length > MAX_PDU:
                return False, f"not a fio reply (it announces {length} bytes): {shown(head)}"
            data = head + recv_exactly(sock, length)
        try:
            version, opcode, payload = read_reply(data)
        except ValueError as exc:
            return False, f"{exc}: {shown(head)}"
        if opcode == CMD_PROBE and version == self.protocol and len(payload) >= PROBE_REPLY.size:
            return True, f"a probe reply: {describe_probe(payload)}"
        if opcode == CMD_TEXT:
            said = _text(payload[24:]).strip()  # cmd_text_pdu: level, buf_len, log_sec, log_usec, text
            return False, f"fio's server speaks protocol {version}, not {self.protocol}: {said!r}"
        return False, f"a fio reply with opcode {opcode} (protocol {version}), not a probe reply"

    def describe(self) -> str:
        return (
            f"fio's server to answer a client probe with a probe reply (protocol {self.protocol}; fio 3.33 speaks 97)"
        )
