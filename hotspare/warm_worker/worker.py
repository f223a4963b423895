"""``WarmProcessWorker``: Prefect's process worker, with flow runs forked from a warm process
and a push channel that wakes it when a run of its pool is scheduled.

Everything a process worker does stays Prefect's: the pool (type ``process``, its job template),
the worker's heartbeat and identity, Pending → Running → final states, cancellation (the run's
PID is signalled), a crashed run proposed Crashed from its exit code. Only how the run's process
comes to life changes (``WarmStarter``), and when the worker looks at its pool
(``listen_for_scheduled_runs``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import anyio
import anyio.abc
from prefect.flows import load_flow_from_flow_run
from prefect.runner._flow_run_executor import FlowRunExecutorContext
from prefect.runner._process_manager import ProcessHandle
from prefect.runner._starter_engine import EngineCommandStarter
from prefect.settings import get_current_settings
from prefect.utilities.processutils import sanitize_subprocess_env
from prefect.workers.process import (
    ProcessJobConfiguration,
    ProcessWorker,
    ProcessWorkerResult,
)

from hotspare.errors import PermanentError
from hotspare.warm_worker.event_stream import send_login_on_upgrade

READY_SECONDS = 180.0  # the warm process imports ~1,800 modules; on a loaded machine that takes a while
EXITED_POLL_SECONDS = 1.0
SCHEDULED_EVENT = "prefect.flow-run.Scheduled"


@dataclass
class ForkedRun:
    """The part of a process Prefect's ``ProcessHandle`` reads: a PID and, once ended, its code."""

    pid: int
    returncode: int | None = None


class WarmProcess:
    """The worker's warm process (``forkserver.py``): started once, restarted when it dies or
    when the code it imported changed."""

    def __init__(self, packages: tuple[str, ...] = ("flows",), folder: str | None = None) -> None:
        self.packages = packages
        self.folder = private_folder(folder) if folder else Path(tempfile.mkdtemp(prefix="hotspare-warm."))
        self.socket_path = str(self.folder / "socket")
        self.process: subprocess.Popen | None = None
        self.logger = None

    def start(self) -> None:
        """Start it (not waiting: runs that come before it is ready start the classic way)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        command = [sys.executable, "-m", "hotspare.warm_worker.forkserver", self.socket_path, *self.packages]
        # same process group and output as the worker: stopping the worker's group stops it and its runs
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def ready(self) -> bool:
        return self.process is not None and self.process.poll() is None and os.path.exists(self.socket_path)

    def restart(self, reason: str) -> None:
        if self.logger:
            self.logger.info(f"restarting the warm process: {reason}")
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.restart("it is not running")

    def wait_ready(self, seconds: float = READY_SECONDS) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ready():
                return True
            if self.process is None or self.process.poll() is not None:
                return False
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None

    def remove(self) -> None:
        """Stop it and remove its socket's folder (the worker is ending)."""
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


def private_folder(path: str) -> Path:
    """The folder of the warm process's socket (``HOTSPARE_WARM_FOLDER``): whoever can open the
    socket can have a run forked with an environment of their choosing, so the folder must be
    this user's alone (0700), made here or refused."""
    folder = Path(path)
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if not folder.is_dir() or folder.is_symlink() or status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise SystemExit(
            f"HOTSPARE_WARM_FOLDER {folder} must be a folder of this user's alone (mode 0700, "
            f"not a link): remove it or name another"
        )
    return folder


class WarmStarter:
    """Starts a flow run as a child of the warm process; falls back to ``python -m
    prefect.engine`` (Prefect's ``EngineCommandStarter``) when the warm process is not ready or
    refuses the run. Follows Prefect's ``ProcessStarter`` contract: signal the handle, then
    block until the process ends."""

    def __init__(self, warm: WarmProcess, cold: EngineCommandStarter, *, env: dict, cwd: Path, control_channel, logger) -> None:
        self.warm, self.cold, self.env, self.cwd = warm, cold, env, cwd
        self.control_channel, self.logger = control_channel, logger

    async def start(self, flow_run, task_status: anyio.abc.TaskStatus[ProcessHandle] = anyio.TASK_STATUS_IGNORED):
        if not self.warm.ready():
            self.warm.ensure_running()
            self.logger.info("the warm process is not ready yet: starting the run the classic way")
            return await self.cold.start(flow_run, task_status=task_status)
        control_env, registered = self.register(flow_run)
        try:
            stream = await anyio.connect_unix(self.warm.socket_path)
        except OSError as error:
            self.unregister(flow_run, registered)
            self.warm.restart(f"it does not answer ({error})")
            return await self.cold.start(flow_run, task_status=task_status)
        async with stream:
            request = {
                "flow_run_id": str(flow_run.id),
                "env": self.run_environment(flow_run, control_env),
                "cwd": str(self.cwd) if self.cwd else None,
            }
            await stream.send((json.dumps(request) + "\n").encode())
            lines = _lines(stream)
            first = await _next_message(lines)
            if first is None or "refused" in first:
                self.unregister(flow_run, registered)
                reason = first["refused"] if first else "it closed the connection"
                self.logger.info(f"the warm process did not take flow run {flow_run.id}: {reason}; starting it the classic way")
                if first is None or reason.startswith("code changed"):
                    self.warm.restart(reason)
                return await self.cold.start(flow_run, task_status=task_status)
            child = ForkedRun(pid=int(first["pid"]))
            task_status.started(ProcessHandle(child))  # type: ignore[arg-type]  # a forked child, as Process
            ended = await _next_message(lines)
        if ended is not None and "exit" in ended:
            child.returncode = int(ended["exit"])
            return
        # the warm process died while the run went on: wait for the run itself to end
        while _alive(child.pid):
            await anyio.sleep(EXITED_POLL_SECONDS)
        child.returncode = 1  # its code is lost; a run that reported its own end is not marked crashed

    def register(self, flow_run) -> tuple[dict[str, str], bool]:
        """The control channel Prefect's engine connects back to (cancellation), as
        ``EngineCommandStarter`` does."""
        if self.control_channel is None:
            return {}, False
        try:
            port, token = self.control_channel.register(flow_run.id)
        except RuntimeError:
            return {}, False
        return {"PREFECT__CONTROL_PORT": str(port), "PREFECT__CONTROL_TOKEN": token}, True

    def unregister(self, flow_run, registered: bool) -> None:
        if registered:
            self.control_channel.unregister(flow_run.id)

    def run_environment(self, flow_run, control_env: dict[str, str]) -> dict[str, str]:
        """The environment ``EngineCommandStarter`` gives ``python -m prefect.engine``."""
        env: dict[str, str | None] = {**os.environ, **self.env}
        env.update(get_current_settings().to_environment_variables(exclude_unset=True))
        env.update(
            {
                "PREFECT__FLOW_RUN_ID": str(flow_run.id),
                "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS": "false",
                **control_env,
                "PREFECT__DEPLOYMENT_NAME": self.env.get("PREFECT__DEPLOYMENT_NAME"),
            }
        )
        return {key: value for key, value in sanitize_subprocess_env(env).items() if value is not None}


class WarmProcessWorker(ProcessWorker):
    """A process worker whose runs are forked from a warm process, woken by its pool's events."""

    _description = "Process worker that forks each flow run from a warm, pre-imported process."

    @classmethod
    def __dispatch_key__(cls) -> str:
        # polls "process" pools like Prefect's own, but must not replace it in Prefect's registry of worker types
        return "hotspare-warm-process"

    def __init__(self, *args, packages: tuple[str, ...] = ("flows",), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.warm = WarmProcess(packages, os.environ.get("HOTSPARE_WARM_FOLDER"))
        self.warm.logger = self._logger  # type: ignore[assignment]  # the worker's logger adapter
        self.executor_context: FlowRunExecutorContext | None = None

    async def start(self, run_once: bool = False, with_healthcheck: bool = False, printer=print) -> None:
        send_login_on_upgrade()
        self.warm.start()
        try:
            # one executor context for the worker's life (Prefect's Runner keeps one too): its API
            # client, control channel and cancellation observer are ready before a run arrives
            async with FlowRunExecutorContext() as context, anyio.create_task_group() as group:
                self.executor_context = context
                group.start_soon(self.listen_for_scheduled_runs)
                await super().start(run_once=run_once, with_healthcheck=with_healthcheck, printer=printer)
                group.cancel_scope.cancel()
        finally:
            self.executor_context = None
            self.warm.remove()

    async def listen_for_scheduled_runs(self) -> None:
        """Poll the pool the moment a run is scheduled in it (the server's event stream); the
        worker's periodic poll stays as the fallback when the stream is down."""
        from prefect.events.clients import PrefectEventSubscriber
        from prefect.events.filters import EventFilter, EventNameFilter

        while not getattr(self, "_has_successfully_synced", False):
            await anyio.sleep(0.2)
        event_filter = EventFilter(event=EventNameFilter(name=[SCHEDULED_EVENT]))
        while True:
            try:
                async with PrefectEventSubscriber(filter=event_filter, reconnection_attempts=3) as subscriber:
                    self._logger.info(f"listening for runs scheduled in {self._work_pool_name}")
                    async for event in subscriber:
                        if self.is_for_this_pool(event):
                            self._logger.debug(f"a run was scheduled in {self._work_pool_name}: polling now")
                            await self.get_and_submit_flow_runs()
            except Exception as error:  # noqa: BLE001  # the stream is a shortcut: the poll still finds every run
                self._logger.warning(
                    f"the event stream failed ({type(error).__name__}: {error}); relying on the poll, reconnecting in 5 s"
                )
            await anyio.sleep(5)

    def is_for_this_pool(self, event) -> bool:
        """A scheduled run of this pool (an event that names no pool is checked by a poll too)."""
        pools = [resource for resource in event.related if resource.role == "work-pool"]
        if not pools:
            return True
        return any(resource.name == self._work_pool_name for resource in pools)

    async def run(
        self, flow_run, configuration: ProcessJobConfiguration, task_status: anyio.abc.TaskStatus[int] | None = None
    ) -> ProcessWorkerResult:
        """Prefect's ``ProcessWorker.run`` for a pool whose job template sets no command, with
        the warm starter; a configured command runs as Prefect runs it."""
        if configuration._command_configured or self.executor_context is None:
            return await super().run(flow_run, configuration, task_status)
        if task_status is None:
            task_status = anyio.TASK_STATUS_IGNORED
        working_dir_context = (
            tempfile.TemporaryDirectory(suffix="prefect")
            if not configuration.working_dir
            else contextlib.nullcontext(configuration.working_dir)
        )
        execution = None
        with working_dir_context as working_dir, warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            context = self.executor_context  # the worker's, entered once in start()
            workspace = Path(working_dir).resolve()
            cold = EngineCommandStarter(
                command=configuration.command,
                cwd=workspace,
                env=configuration.env,
                stream_output=configuration.stream_output,
                control_channel=context.control_channel,
            )
            starter = WarmStarter(
                self.warm,
                cold,
                env=configuration.env,
                cwd=workspace,
                control_channel=context.control_channel,
                logger=self.get_flow_run_logger(flow_run),
            )
            executor = context.create_executor(flow_run, starter, resolve_flow=load_flow_from_flow_run, propose_submitting=False)

            async def execute(*, task_status=anyio.TASK_STATUS_IGNORED) -> None:
                nonlocal execution
                execution = await executor.submit(task_status=task_status)

            async with anyio.create_task_group() as group:
                handle = await group.start(execute)
                if handle.pid is None:
                    raise PermanentError("the flow run's process has no PID")
                task_status.started(handle.pid)
        if execution is None or execution.status_code is None:
            raise PermanentError("the flow run's process did not start")
        return ProcessWorkerResult(status_code=execution.status_code, identifier=str(execution.handle.pid))


def _lines(stream):
    from anyio.streams.buffered import BufferedByteReceiveStream

    return BufferedByteReceiveStream(stream)


async def _next_message(reader) -> dict | None:
    try:
        line = await reader.receive_until(b"\n", 65536)
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
        return None
    return json.loads(line)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
