"""The built-in lab: real sshd hosts in network namespaces, BIND and SMTP on one machine.

    from hotspare.lab import Lab
    env = Lab(Path("/tmp/lab"), slot=1).up()

Slot n (0..19) uses subnet 10.211.(70+n).0/24, BIND on 127.0.0.1:(5390+n), SMTP on
127.0.0.1:(2525+n) and names starting with "hs{n}". The demo uses slot 0, the tests slot 1.
"""

from hotspare.lab.errors import LabError

__all__ = ["Lab", "LabError"]


def __getattr__(name: str):
    """``Lab`` loads on first use, so the command line can list the lab's commands quickly."""
    if name == "Lab":
        from hotspare.lab.lab import Lab

        return Lab
    raise AttributeError(f"module 'hotspare.lab' has no attribute {name!r}")
