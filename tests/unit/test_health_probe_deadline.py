"""An app that answers a byte at a time cannot hold a health round: the HTTP probe has one
deadline for the whole answer (a real loopback server; no lab)."""

from __future__ import annotations

import socket
import threading
import time

from hotspare.health_probe_script import http_probe


def test_a_dripping_answer_is_cut_at_the_probe_timeout():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def drip() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            for byte in b"HTTP/1.0 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100:
                if stop.wait(0.2):  # 28 s for the whole answer, one byte each 0.2 s
                    return
                try:
                    connection.send(bytes([byte]))
                except OSError:
                    return

    server = threading.Thread(target=drip, daemon=True)
    server.start()
    started = time.monotonic()
    result = http_probe({"address": "127.0.0.1", "port": listener.getsockname()[1], "path": "/", "host": "app"}, 1.0)
    seconds = time.monotonic() - started
    stop.set()
    server.join(5)
    listener.close()
    assert result["ok"] is False and "no complete answer within 1 s" in result["evidence"], result
    assert seconds < 5, seconds  # bounded by the probe's timeout, not by the app's pace
