#!/usr/bin/env python3
"""Protocol probe for infra/local: `probe.py kafka|mongo|smtp PORT`.

Exit 0 when the server on 127.0.0.1:PORT answers one real request: Kafka ApiVersions v0 with
error_code 0, a MongoDB OP_MSG {ping: 1} with ok: 1, or an SMTP greeting 220 then EHLO 250.
Standard library only.
"""
import socket
import struct
import sys


def recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


def kafka(sock):
    client_id = b"rayltics-probe"
    # Request header v1: api_key 18 (ApiVersions), api_version 0, correlation_id, client_id.
    body = struct.pack(">hhih", 18, 0, 4711, len(client_id)) + client_id
    sock.sendall(struct.pack(">i", len(body)) + body)
    (size,) = struct.unpack(">i", recv_exact(sock, 4))
    correlation_id, error_code = struct.unpack(">ih", recv_exact(sock, size)[:6])
    return correlation_id == 4711 and error_code == 0


def bson_ping():
    elems = b"\x10ping\x00" + struct.pack("<i", 1)
    db = b"admin\x00"
    elems += b"\x02$db\x00" + struct.pack("<i", len(db)) + db
    return struct.pack("<i", 4 + len(elems) + 1) + elems + b"\x00"


def mongo(sock):
    # OP_MSG (2013): flagBits 0, one kind-0 section holding the command document.
    payload = struct.pack("<I", 0) + b"\x00" + bson_ping()
    sock.sendall(struct.pack("<iiii", 16 + len(payload), 4711, 0, 2013) + payload)
    (length,) = struct.unpack("<i", recv_exact(sock, 4))
    rest = recv_exact(sock, length - 4)
    _request_id, response_to, opcode = struct.unpack("<iii", rest[:12])
    if response_to != 4711 or opcode != 2013:
        return False
    doc = rest[12 + 4 + 1 :]
    at = doc.find(b"\x01ok\x00")
    if at >= 0:
        return struct.unpack("<d", doc[at + 4 : at + 12])[0] == 1.0
    at = doc.find(b"\x10ok\x00")
    return at >= 0 and struct.unpack("<i", doc[at + 4 : at + 8])[0] == 1


def smtp(sock):
    reader = sock.makefile("rb")

    def reply():
        # The last line of a (multi-line) reply has a space after its code.
        while True:
            line = reader.readline(1024)
            if not line:
                raise EOFError("connection closed")
            if line[3:4] != b"-":
                return line[:3]

    if reply() != b"220":
        return False
    sock.sendall(b"EHLO rayltics-probe\r\n")
    ok = reply() == b"250"
    sock.sendall(b"QUIT\r\n")
    return ok


CHECKS = {"kafka": kafka, "mongo": mongo, "smtp": smtp}


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in CHECKS:
        sys.exit("usage: probe.py kafka|mongo|smtp PORT")
    check = CHECKS[sys.argv[1]]
    try:
        with socket.create_connection(("127.0.0.1", int(sys.argv[2])), timeout=3) as sock:
            ok = check(sock)
    except (OSError, EOFError, struct.error) as err:
        sys.exit(f"{sys.argv[1]}: {err}")
    sys.exit(0 if ok else f"{sys.argv[1]}: unexpected answer")


if __name__ == "__main__":
    main()
