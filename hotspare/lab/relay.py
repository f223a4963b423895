"""Loopback relay: makes the lab's DNS and SMTP servers (on the machine's 127.0.0.1) answer on
127.0.0.1 inside a lab namespace, for the Prefect workers that run there.

The fleet file names the lab's BIND and SMTP at 127.0.0.1, which inside a network namespace is
that namespace's own loopback. The relay opens its listening sockets inside the namespace
(``setns`` to it, bind, ``setns`` back: a socket keeps the namespace it was made in) and
connects to the real servers from the machine's namespace. TCP only: hotspare speaks DNS over
TCP and SMTP is TCP. When the namespace's facility is failed, its worker cannot reach the
Prefect server or the inventory either, so the relay never hides an outage that matters.

    python -m hotspare.lab.relay NETNS PORT [PORT ...]
"""

from __future__ import annotations

import ctypes
import os
import selectors
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def setns(descriptor: int) -> None:
    """Move this thread into the network namespace ``descriptor`` names (os.setns is 3.12+)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(descriptor, CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"setns: {os.strerror(error)}")


def listen_inside(netns: str, ports: list[int]) -> list[socket.socket]:
    """Listening sockets on 127.0.0.1:PORT inside ``netns``; this thread returns home after."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{netns}", os.O_RDONLY)
    try:
        setns(target)
        listeners = []
        for port in ports:
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen(64)
            listeners.append(listener)
        return listeners
    finally:
        setns(home)
        os.close(home)
        os.close(target)


def pipe(client: socket.socket, port: int) -> None:
    """Copy bytes both ways between a client and the machine's 127.0.0.1:PORT until either closes."""
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError:
        client.close()
        return
    upstream.settimeout(None)
    selector = selectors.DefaultSelector()
    selector.register(client, selectors.EVENT_READ, upstream)
    selector.register(upstream, selectors.EVENT_READ, client)
    try:
        while True:
            for key, _ in selector.select(timeout=300):
                data = key.fileobj.recv(65536)
                if not data:
                    return
                key.data.sendall(data)
    except OSError:
        return
    finally:
        selector.close()
        client.close()
        upstream.close()


def serve(listeners: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for listener in listeners:
        selector.register(listener, selectors.EVENT_READ, listener.getsockname()[1])
    while True:
        for key, _ in selector.select():
            client, _address = key.fileobj.accept()
            threading.Thread(target=pipe, args=(client, key.data), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python -m hotspare.lab.relay NETNS PORT [PORT ...]", file=sys.stderr)
        return 2
    listeners = listen_inside(argv[0], [int(port) for port in argv[1:]])
    print(f"relaying 127.0.0.1:{','.join(argv[1:])} in {argv[0]} to this machine's loopback", flush=True)
    serve(listeners)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
