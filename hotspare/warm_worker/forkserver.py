"""The warm process: imports Prefect's engine and the runbooks once, then forks one child per
flow run, so a run starts in milliseconds instead of re-importing everything.

    python -m hotspare.warm_worker.forkserver SOCKET [PACKAGE ...]   (started by worker.py)

It listens on a Unix socket in a folder only its owner can open. A request is one JSON line
``{"flow_run_id", "env", "cwd"}``; the answer is ``{"pid": N}`` once the child runs, then
``{"exit": code}`` when it ends (a negative code: the signal that ended it), or one
``{"refused": reason}`` line when this process must not run it:

- the run asks for another ``PYTHONPATH`` than this process was started with (its code would be
  other code than what is imported here);
- a project module imported here changed on disk since (a new release): the worker then runs it
  the classic way and starts a fresh warm process.

Why a separate process and not a fork of the worker: the worker runs an event loop and threads
(API clients, log and event senders); forking a process with threads can copy a lock held by
another thread and hang the child. This process stays single-threaded: it checks that before
every fork and refuses otherwise.

The child is the flow run's process, like ``python -m prefect.engine``: it takes the run's
environment, rebuilds Prefect's settings from it, runs the flow with Prefect's own engine entry
(``prefect.engine.handle_engine_signals``), runs the exit handlers and exits. It stays in the
worker's process group, so stopping the worker's group stops its runs as before. The warm
process exits when its worker dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import selectors
import signal
import socket
import sys
import threading
import time
from pathlib import Path

REQUEST_SECONDS = 10.0  # a worker sends its request at once; a silent peer is dropped
PR_SET_PDEATHSIG = 1


def preload(packages: list[str]) -> None:
    """Import Prefect's engine and every module of ``packages`` (the runbooks)."""
    import prefect.engine
    import prefect.flow_engine
    import prefect.flows  # noqa: F401

    from hotspare.warm_worker.event_stream import send_login_on_upgrade

    send_login_on_upgrade()  # the runs' cancellation and suspension observers connect instead of polling

    for name in packages:
        package = importlib.import_module(name)
        for module in pkgutil.iter_modules(getattr(package, "__path__", [])):
            importlib.import_module(f"{name}.{module.name}")


def project_files(roots: list[str]) -> dict[str, int]:
    """{file: mtime_ns} of every imported module that lives under ``roots`` (the project)."""
    found = {}
    resolved = [str(Path(root).resolve()) + os.sep for root in roots if root]
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if path and any(str(Path(path).resolve()).startswith(root) for root in resolved):
            try:
                found[path] = os.stat(path).st_mtime_ns
            except OSError:
                found[path] = -1
    return found


def changed_files(recorded: dict[str, int]) -> list[str]:
    changed = []
    for path, mtime in recorded.items():
        try:
            now = os.stat(path).st_mtime_ns
        except OSError:
            now = -1
        if now != mtime:
            changed.append(path)
    return changed


def refusal(request: dict, recorded: dict[str, int]) -> str | None:
    """Why this process must not run ``request`` (None: it may)."""
    wanted = (request.get("env") or {}).get("PYTHONPATH") or ""
    own = os.environ.get("PYTHONPATH", "")
    if wanted != own:
        return f"the run's PYTHONPATH {wanted!r} is not the warm process's {own!r}"
    changed = changed_files(recorded)
    if changed:
        return f"code changed since the warm process started: {', '.join(sorted(changed)[:3])}"
    if threading.active_count() != 1:
        return f"the warm process has {threading.active_count()} threads; forking it is unsafe"
    return None


def run_child(request: dict) -> int:
    """In the forked child: become the flow run's process and run it; returns the exit code."""
    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD, signal.SIGPIPE):
        signal.signal(number, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update({key: value for key, value in request["env"].items() if value is not None})
    if request.get("cwd"):
        os.chdir(request["cwd"])
    import prefect.context

    prefect.context.refresh_global_settings_context()  # the run's environment, not the warm one's
    code = 1
    try:
        engine_main(request["flow_run_id"])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    except BaseException:  # noqa: BLE001  # the run's process ends here whatever happened; its code says how
        import traceback

        traceback.print_exc()
    finally:
        code = finish(code)
    return code


def engine_main(flow_run_id_text: str) -> None:
    """What ``python -m prefect.engine`` does after its imports (prefect/engine.py, 3.9)."""
    from uuid import UUID

    from prefect._internal.control_listener import configure_from_env
    from prefect._internal.metrics import RunMetrics
    from prefect.engine import _drive_run_flow_result, handle_engine_signals
    from prefect.flow_engine import flow_run_logger, load_flow, load_flow_run, run_flow

    flow_run_id = UUID(flow_run_id_text)
    configure_from_env()
    with handle_engine_signals(flow_run_id):
        flow_run = load_flow_run(flow_run_id=flow_run_id)
        run_logger = flow_run_logger(flow_run=flow_run)
        try:
            flow = load_flow(flow_run)
        except Exception:
            run_logger.exception("Unexpected exception encountered when trying to load flow")
            raise
        with RunMetrics(flow_run, flow):
            result = run_flow(flow, flow_run=flow_run, error_logger=run_logger)  # type: ignore[arg-type]
            _drive_run_flow_result(flow, result)


def finish(code: int) -> int:
    """An interpreter's exit without leaving it: join threads, run exit handlers (Prefect's log
    and event senders drain there), flush."""
    import atexit

    steps = (threading._shutdown, atexit._run_exitfuncs, sys.stdout.flush, sys.stderr.flush)  # type: ignore[attr-defined]
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001  # the exit goes on; the run's own outcome is already recorded
            print(
                f"warm child {os.getpid()}: {getattr(step, '__name__', step)} failed at exit: {error}",
                file=sys.stderr,
                flush=True,
            )
    return code


def die_with_parent() -> None:
    """Ask the kernel to end this process when the worker that started it ends."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def send(connection: socket.socket, message: dict) -> None:
    try:
        connection.sendall((json.dumps(message) + "\n").encode())
    except OSError:
        pass  # the worker went away; the run goes on, as a classic run would


def read_request(connection: socket.socket) -> dict:
    connection.settimeout(REQUEST_SECONDS)
    data = b""
    while not data.endswith(b"\n"):
        chunk = connection.recv(65536)
        if not chunk:
            raise ValueError("connection closed before a full request")
        data += chunk
    connection.settimeout(None)
    return json.loads(data)


def serve(socket_path: str, packages: list[str]) -> None:
    die_with_parent()
    started = time.monotonic()
    preload(packages)
    recorded = project_files(os.environ.get("PYTHONPATH", "").split(os.pathsep))
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    temporary = f"{socket_path}.{os.getpid()}"
    listener.bind(temporary)
    os.chmod(temporary, 0o600)
    os.replace(temporary, socket_path)  # the socket appears only when this process is ready
    listener.listen(16)
    print(
        f"warm process ready (pid {os.getpid()}) in {time.monotonic() - started:.1f} s: {len(sys.modules)} modules, "
        f"{len(recorded)} project files watched",
        file=sys.stderr,
        flush=True,
    )
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, None)
    while True:
        for key, _events in selector.select():
            if key.data is None:
                accept(listener, selector, recorded)
            else:
                reap(selector, key)


def accept(listener: socket.socket, selector, recorded: dict[str, int]) -> None:
    connection, _ = listener.accept()
    try:
        request = read_request(connection)
    except (OSError, ValueError) as error:
        print(f"warm process: dropped a request: {error}", file=sys.stderr, flush=True)
        connection.close()
        return
    reason = refusal(request, recorded)
    if reason:
        send(connection, {"refused": reason})
        connection.close()
        return
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            for key in list(selector.get_map().values()):  # the listener, other runs' pidfds and connections
                os.close(key.fd) if isinstance(key.fileobj, int) else key.fileobj.close()
                if key.data is not None:
                    key.data[1].close()
            selector.close()
            connection.close()
            code = run_child(request)
        finally:
            os._exit(code)
    pidfd = os.pidfd_open(pid)
    send(connection, {"pid": pid})
    selector.register(pidfd, selectors.EVENT_READ, (pid, connection))


def reap(selector, key) -> None:
    pid, connection = key.data
    selector.unregister(key.fileobj)
    os.close(key.fileobj)
    _, status = os.waitpid(pid, 0)
    send(connection, {"exit": os.waitstatus_to_exitcode(status)})
    connection.close()


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2:] or ["flows"])
