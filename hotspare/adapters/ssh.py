"""SSH adapter (paramiko): pinned host keys, argument-list commands, bounded time.

This module is the only place where a remote command becomes a string (``command_line``).
Host keys come from the inventory and are enforced with ``RejectPolicy``: an unknown or
changed key is a permanent error that names the host. Secrets travel on stdin, never in argv.

A server's answer is bounded: each command may write at most ``max_stdout`` bytes to stdout
and ``max_stderr`` to stderr (defaults 16 MiB and 1 MiB, per connection or per call). Past
the cap the adapter stops reading, closes the channel and raises an ``OutputTooLarge`` (a
permanent error naming host, command and cap), so a hostile or broken server cannot grow the
orchestrator's memory: paramiko only opens the SSH window as far as we read, so unread
output stays on the server's side.
"""

from __future__ import annotations

import base64
import contextlib
import contextvars
import io
import select
import shlex
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import paramiko

from hotspare.adapters.errors import ChannelRefused, PermanentError, RemoteCommandError, TransientError


class OutputTooLarge(PermanentError):
    """A remote command wrote more than its cap: the channel was closed, the output dropped."""


STDERR_TAIL = 2000
MAX_STDOUT_BYTES = 16 * 1024 * 1024  # default cap on one command's stdout
MAX_STDERR_BYTES = 1024 * 1024  # default cap on one command's stderr
STDIN_CHUNK = 32768
STDIN_POLL = 0.01
READY_CAP = 64 * 1024  # what a held command may write before its ready line
HOLD_RELEASE_SECONDS = 5.0  # how long to wait for a held command to end once its stdin closes


@dataclass(frozen=True)
class Endpoint:
    """Where a server answers SSH and which host key it must present."""

    name: str
    address: str
    port: int
    host_key: str  # "TYPE BASE64"

    @property
    def known_hosts_name(self) -> str:
        """Host name as OpenSSH writes it in known_hosts (``[addr]:port`` off port 22)."""
        return self.address if self.port == 22 else f"[{self.address}]:{self.port}"

    def known_hosts_line(self) -> str:
        return f"{self.known_hosts_name} {self.host_key}"


@dataclass(frozen=True)
class Login:
    """Who to log in as. ``private_key`` is the key text; keep it out of logs (repr hides it).

    ``certificate``: an OpenSSH certificate of that key (``ssh-ed25519-cert-v01@openssh.com ...``),
    issued for one run by the control site (``hotspare/issuer``); the server checks its principals,
    source addresses and validity."""

    user: str
    private_key: str = field(repr=False)
    certificate: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: bytes
    stderr_tail: str

    @property
    def text(self) -> str:
        return self.stdout.decode(errors="replace")


class CommandCount:
    """Remote commands (SSH channels: exec and SFTP sessions) sent per host while counted.

    A run counts its own (``counting``); threads it starts in a copy of its context add to the
    same count. What a replication costs in round trips is then a number a test can assert."""

    def __init__(self, outer: CommandCount | None = None) -> None:
        self._lock = threading.Lock()
        self._outer = outer  # a count around this one (a fleet run's, a benchmark's) counts these too
        self.per_host: dict[str, int] = {}
        self.commands: list[tuple[str, str]] = []  # (host, the command's first words), in order

    def add(self, host: str, what: str) -> None:
        with self._lock:
            self.per_host[host] = self.per_host.get(host, 0) + 1
            self.commands.append((host, what))
        if self._outer is not None:
            self._outer.add(host, what)

    @property
    def total(self) -> int:
        return sum(self.per_host.values())

    def sentence(self, what: str) -> dict[str, object]:
        """The count for a run's record: per host, the total and a sentence for its log."""
        hosts = ", ".join(f"{host} {number}" for host, number in sorted(self.per_host.items()))
        return {
            "per_host": dict(self.per_host),
            "total": self.total,
            "sentence": f"{what}: {self.total} remote command(s) sent ({hosts or 'none'})",
        }


_COUNT: contextvars.ContextVar[CommandCount | None] = contextvars.ContextVar("hotspare_command_count", default=None)


@contextlib.contextmanager
def counting() -> Iterator[CommandCount]:
    """Count every remote command this context (and the threads it starts) sends, per host."""
    count = CommandCount(_COUNT.get())
    token = _COUNT.set(count)
    try:
        yield count
    finally:
        _COUNT.reset(token)


def _counted(host: str, what: str) -> None:
    count = _COUNT.get()
    if count is not None:
        count.add(host, what)


def command_line(argv: Sequence[str]) -> str:
    """The one place an argument list becomes a shell string: every argument quoted."""
    if not argv:
        raise ValueError("empty command")
    return shlex.join(str(argument) for argument in argv)


def secret_env_command(variable: str, argv: Sequence[str]) -> list[str]:
    """Wrap ``argv`` so that the first line of stdin becomes environment ``variable``.

    Lets a secret (e.g. a repository password) reach a remote program's environment without
    ever appearing in argv or on the remote process list.
    """
    script = f'IFS= read -r {variable} && export {variable} && exec "$@"'
    return ["sh", "-c", script, "sh", *argv]


def _private_key(text: str) -> paramiko.PKey:
    for key_class in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return key_class.from_private_key(io.StringIO(text))
        except (paramiko.SSHException, ValueError):
            continue
    raise PermanentError("the SSH private key in the credentials block is not a readable unencrypted key")


def _login_key(login: Login) -> paramiko.PKey:
    """The login's private key, carrying its certificate when it has one."""
    key = _private_key(login.private_key)
    if login.certificate:
        try:
            key.load_certificate(login.certificate)
        except ValueError:
            raise PermanentError("the SSH certificate does not belong to this run's key") from None
    return key


def _pinned_host_key(endpoint: Endpoint) -> tuple[str, paramiko.PKey]:
    try:
        key_type, blob = endpoint.host_key.split()[:2]
        return key_type, paramiko.PKey.from_type_string(key_type, base64.b64decode(blob))
    except Exception:
        raise PermanentError(
            f"host key of {endpoint.name} in the inventory is malformed; fix host_key in the fleet file"
        ) from None


class SshConnection:
    """An open, authenticated SSH connection to one server. Use as a context manager."""

    def __init__(
        self,
        endpoint: Endpoint,
        login: Login,
        *,
        connect_timeout: float = 10.0,
        max_stdout: int = MAX_STDOUT_BYTES,
        max_stderr: int = MAX_STDERR_BYTES,
    ):
        self.endpoint = endpoint
        self.login = login
        self.connect_timeout = connect_timeout
        self.max_stdout = max_stdout  # bytes one command may write to stdout (OutputTooLarge past it)
        self.max_stderr = max_stderr
        self._client: paramiko.SSHClient | None = None

    def __enter__(self) -> SshConnection:
        self.connect()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def connect(self) -> None:
        endpoint = self.endpoint
        client = paramiko.SSHClient()
        client.set_log_channel(f"paramiko.{endpoint.name}")
        key_type, host_key = _pinned_host_key(endpoint)
        client.get_host_keys().add(endpoint.known_hosts_name, key_type, host_key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        where = f"{endpoint.name} ({endpoint.address}:{endpoint.port})"
        try:
            client.connect(
                endpoint.address,
                port=endpoint.port,
                username=self.login.user,
                pkey=_login_key(self.login),
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException:
            client.close()
            raise PermanentError(
                f"{where} presented a different host key than the one pinned in the fleet file: "
                "refusing to connect. If the server was reinstalled, verify and update host_key."
            ) from None
        except paramiko.AuthenticationException:
            client.close()
            if self.login.certificate:
                raise PermanentError(
                    f"{where} refused the certificate login of {self.login.user!r}: the run's "
                    "certificate does not name this host, came from another address or expired"
                ) from None
            raise PermanentError(f"{where} refused the login of {self.login.user!r}: check the credentials block") from None
        except paramiko.SSHException as error:
            client.close()
            if "not found in known_hosts" in str(error):
                raise PermanentError(f"{where} answered with a host key that is not pinned: refusing") from None
            raise TransientError(f"SSH to {where} failed: {error}") from None
        except TimeoutError:
            client.close()
            raise TransientError(
                f"SSH to {where} timed out after {self.connect_timeout:g} s (host down or unreachable?)"
            ) from None
        except (OSError, paramiko.ssh_exception.NoValidConnectionsError) as error:
            client.close()
            raise TransientError(f"cannot reach {where}: {getattr(error, 'strerror', None) or error}") from None
        client.get_transport().set_keepalive(5)
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    @property
    def transport(self) -> paramiko.Transport:
        if self._client is None:
            self.connect()
        transport = self._client.get_transport() if self._client is not None else None
        if transport is None or not transport.is_active():
            raise TransientError(f"SSH connection to {self.endpoint.name} was lost")
        return transport

    def run(
        self,
        argv: Sequence[str],
        *,
        stdin: bytes | None = None,
        timeout: float = 60.0,
        check: bool = True,
        open_timeout: float | None = None,
        max_stdout: int | None = None,
        max_stderr: int | None = None,
    ) -> CommandResult:
        """Run ``argv`` on the server; raise on non-zero exit when ``check``.

        ``timeout`` bounds the whole command; on expiry the channel is closed and a
        TransientError says what ran where. ``open_timeout`` bounds opening the channel
        (default: the connect timeout), for callers sharing a connection with other bounds.
        ``max_stdout`` / ``max_stderr`` override the connection's output caps for this command.
        """
        limits = (self.max_stdout if max_stdout is None else max_stdout, self.max_stderr if max_stderr is None else max_stderr)
        line = command_line(argv)
        deadline = time.monotonic() + timeout
        _counted(self.endpoint.name, _short(argv)[:120])
        channel = self._open_channel(min(open_timeout or self.connect_timeout, timeout))
        try:
            channel.exec_command(line)
            stdout, stderr = _collect(channel, stdin or b"", deadline, self.endpoint.name, argv, limits)
            status = channel.recv_exit_status()
        except (paramiko.SSHException, EOFError, OSError) as error:
            self.close()
            raise TransientError(f"on {self.endpoint.name}: `{_short(argv)}` lost its SSH channel ({error})") from None
        finally:
            channel.close()
        tail = stderr[-STDERR_TAIL:].decode(errors="replace")
        result = CommandResult(tuple(argv), status, stdout, tail)
        if check and status != 0:
            raise RemoteCommandError(self.endpoint.name, _short(argv), status, tail)
        return result

    def _open_channel(self, timeout: float) -> paramiko.Channel:
        try:
            return self.transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as error:
            if self.is_open() and "Timeout" not in str(error):
                # refused on a transport that is up: closing it would end every other command
                # running on this shared connection
                raise ChannelRefused(f"{self.endpoint.name} refused a new SSH channel ({error}); try again") from None
            # An outage can leave the transport "active" while nothing gets through
            # (lab-facts.md): drop it so the next call reconnects instead of waiting again.
            self.close()
            raise TransientError(f"SSH connection to {self.endpoint.name} is not usable ({error}); reconnect") from None

    @contextlib.contextmanager
    def holding(self, argv: Sequence[str], *, ready: bytes, timeout: float) -> Iterator[Held]:
        """Run ``argv`` on a channel of its own and keep it running while the block runs.

        The block starts once the command has written ``ready`` to stdout (within ``timeout``
        seconds); when it ends, the command's stdin is closed (it is expected to exit then) and
        the channel too. A remote lock held by such a command (``flock … cat``) is therefore held
        exactly as long as the block, and freed by the server when this process dies (its
        connection closes). A command that exits before ``ready`` raises ``RemoteCommandError``
        with its exit status. ``Held.check`` tells, before a last step, whether it still runs.
        """
        _counted(self.endpoint.name, _short(argv)[:120])
        channel = self._open_channel(min(self.connect_timeout, timeout))
        try:
            try:
                channel.exec_command(command_line(argv))
                _await_ready(channel, ready, time.monotonic() + timeout, self.endpoint.name, argv)
            except (paramiko.SSHException, EOFError, OSError) as error:
                raise TransientError(f"on {self.endpoint.name}: `{_short(argv)}` lost its SSH channel ({error})") from None
            yield Held(channel, self.endpoint.name, _short(argv))
        finally:
            try:
                channel.shutdown_write()  # EOF on its stdin: the command ends, the lock is freed
                channel.status_event.wait(HOLD_RELEASE_SECONDS)
            except (paramiko.SSHException, EOFError, OSError):
                pass  # the channel is gone already: so is the command, and what it held
            finally:
                channel.close()

    def probe(self, timeout: float) -> None:
        """One round trip to the server without a command (a global request sshd answers), so
        a transport an outage left "active" is found out; TransientError (and the connection
        closed) when no answer came within ``timeout``."""
        transport = self.transport
        answered = threading.Event()

        def ask() -> None:
            try:
                transport.global_request("keepalive@openssh.com", wait=True)  # sshd refuses it: an answer all the same
            except Exception:  # noqa: BLE001 - a broken transport is told by the missing answer
                return
            if transport.is_active():
                answered.set()

        threading.Thread(target=ask, name=f"probe-{self.endpoint.name}", daemon=True).start()
        if not answered.wait(timeout):
            self.close()  # ends the request's wait too (the transport is no longer active)
            raise TransientError(f"SSH connection to {self.endpoint.name} did not answer within {timeout:g} s; reconnect")

    def is_open(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def open_sftp(self) -> paramiko.SFTPClient:
        _counted(self.endpoint.name, "sftp")
        return self.transport.open_sftp_client()


def _collect(
    channel: paramiko.Channel,
    stdin: bytes,
    deadline: float,
    host: str,
    argv: Sequence[str],
    limits: tuple[int, int] = (MAX_STDOUT_BYTES, MAX_STDERR_BYTES),
) -> tuple[bytes, bytes]:
    """Feed ``stdin`` and read stdout and stderr until the command exits or ``deadline`` passes.

    Writing and reading are interleaved: a program that echoes its input (``cat``) stops
    reading once its output window is full, so sending all of stdin first would deadlock
    beyond ~4 MiB and ignore the deadline. Output past ``limits`` (stdout, stderr bytes) is
    never read: the channel is closed (the caller's ``finally``) and ``OutputTooLarge`` raised.
    """
    stdout, stderr = bytearray(), bytearray()
    pending = memoryview(stdin)
    if not pending:
        channel.shutdown_write()
    while True:
        progressed = False
        if pending and channel.send_ready():
            try:
                sent = channel.send(bytes(pending[:STDIN_CHUNK]))
            except OSError:  # the command exited or closed its stdin: the rest is not wanted
                sent = len(pending)
            pending = pending[sent:]
            if not pending:
                channel.shutdown_write()
            progressed = True
        while channel.recv_ready():
            stdout += channel.recv(min(65536, limits[0] + 1 - len(stdout)))
            _within(len(stdout), limits[0], "stdout", host, argv)
            progressed = True
        while channel.recv_stderr_ready():
            stderr += channel.recv_stderr(min(65536, limits[1] + 1 - len(stderr)))
            _within(len(stderr), limits[1], "stderr", host, argv)
            progressed = True
        # the status has arrived and nothing is left in flight: done
        drained = not channel.recv_ready() and not channel.recv_stderr_ready()
        if channel.exit_status_ready() and drained and (channel.eof_received or channel.closed):
            return bytes(stdout), bytes(stderr)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError(f"on {host}: `{_short(argv)}` did not finish in time; it was abandoned")
        if not progressed and channel.eof_received and not channel.exit_status_ready():
            # no more output can come (EOF covers stdout and stderr) but the exit status has not
            # arrived yet: wait for it. The channel's pipe stays set after EOF, so select would
            # return at once and this loop would spin, taking the GIL from the transport thread
            # that is about to deliver the status.
            channel.status_event.wait(remaining)
        elif not progressed:
            # select wakes on stdout only; poll briefly while stdin waits for window space
            select.select([channel], [], [], min(remaining, STDIN_POLL if pending else 0.5))


class Held:
    """A command kept running by ``SshConnection.holding``."""

    def __init__(self, channel: paramiko.Channel, host: str, command: str) -> None:
        self._channel, self._host, self._command = channel, host, command

    def check(self, before: str) -> None:
        """TransientError when the command has ended (its connection dropped, say): what it
        held is no longer held, so ``before`` (the step about to run) must not run."""
        transport = self._channel.get_transport()
        if self._channel.closed or self._channel.exit_status_ready() or transport is None or not transport.is_active():
            raise TransientError(f"on {self._host}: `{self._command}` ended before {before}; nothing was done, try again")


def _await_ready(channel: paramiko.Channel, ready: bytes, deadline: float, host: str, argv: Sequence[str]) -> None:
    """Read stdout until ``ready`` arrives; RemoteCommandError if the command exits first,
    TransientError at ``deadline``. Reads at most a few KiB (a ready line is short)."""
    seen, errors = bytearray(), bytearray()
    while ready not in seen:
        if channel.recv_ready():
            seen += channel.recv(4096)
            _within(len(seen), READY_CAP, "stdout", host, argv)
            continue
        if channel.recv_stderr_ready():
            errors += channel.recv_stderr(4096)
            del errors[:-STDERR_TAIL]
            continue
        if channel.exit_status_ready():
            while channel.recv_stderr_ready():
                errors += channel.recv_stderr(4096)
            raise RemoteCommandError(
                host, _short(argv), channel.recv_exit_status(), bytes(errors[-STDERR_TAIL:]).decode(errors="replace")
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TransientError(f"on {host}: `{_short(argv)}` was not ready in time; it was abandoned")
        select.select([channel], [], [], min(remaining, 0.2))


def _within(size: int, cap: int, stream: str, host: str, argv: Sequence[str]) -> None:
    """Raise ``OutputTooLarge`` once ``size`` bytes of ``stream`` exceed ``cap``."""
    if size > cap:
        raise OutputTooLarge(
            f"on {host}: `{_short(argv)}` wrote more than {_bytes_text(cap)} to {stream} (the cap): stopped "
            f"reading and closed the channel; if that much is expected, raise max_{stream} for this command"
        )


def _bytes_text(size: int) -> str:
    """``16 MiB``, ``1 MiB``, ``512 KiB``, ``100 bytes``: the cap as an operator wrote it."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


def _short(argv: Sequence[str]) -> str:
    line = command_line(argv)
    return line if len(line) <= 200 else line[:197] + "..."


PIPE_BUFFER = 1024 * 1024  # bytes of the source's output held here at most while the sink catches up


@dataclass(frozen=True)
class PipeResult:
    """What ``pipe`` saw: the sink's result, the source's exit status (None: it was stopped) and
    stderr tail, and how many bytes went from one to the other."""

    sink: CommandResult
    source_status: int | None
    source_stderr_tail: str
    relayed_bytes: int


def pipe(
    source: SshConnection,
    source_argv: Sequence[str],
    source_stdin: bytes,
    sink: SshConnection,
    sink_argv: Sequence[str],
    sink_prefix: bytes,
    *,
    timeout: float,
    max_stdout: int | None = None,
) -> PipeResult:
    """Run ``source_argv`` on one server and ``sink_argv`` on another, the source's stdout
    streamed into the sink's stdin after ``sink_prefix``; return the sink's stdout.

    The source's output is never parsed or kept here: at most ``PIPE_BUFFER`` bytes of it wait
    for the sink at any time (paramiko opens the source's SSH window only as far as we read, so
    the rest waits on the source). The sink's stdout is capped like ``run``'s; when the sink
    ends, the source's channel is closed, whatever it still had to say. Neither command's exit
    status raises: the caller judges them. ``timeout`` bounds both together."""
    deadline = time.monotonic() + timeout
    stdout_cap = sink.max_stdout if max_stdout is None else max_stdout
    _counted(source.endpoint.name, _short(source_argv)[:120])  # a command on each host, like ``run``'s
    _counted(sink.endpoint.name, _short(sink_argv)[:120])
    sources = source._open_channel(min(source.connect_timeout, timeout))
    try:
        sinks = sink._open_channel(min(sink.connect_timeout, timeout))
    except BaseException:
        sources.close()
        raise
    relayed = 0
    try:
        try:
            sources.exec_command(command_line(source_argv))
            sinks.exec_command(command_line(sink_argv))
            sources.sendall(source_stdin)
            sources.shutdown_write()
            pending = bytearray(sink_prefix)
            source_done = sink_closed = False
            stdout, sink_errors, source_errors = bytearray(), bytearray(), bytearray()
            while True:
                progressed = False
                while not sink_closed and len(pending) < PIPE_BUFFER and sources.recv_ready():
                    chunk = sources.recv(PIPE_BUFFER - len(pending))
                    if not chunk:
                        break
                    pending += chunk
                    relayed += len(chunk)
                    progressed = True
                if not source_done and not pending and not sources.recv_ready() and sources.eof_received:
                    source_done = True
                    sinks.shutdown_write()
                while sources.recv_stderr_ready():
                    source_errors += sources.recv_stderr(65536)
                    del source_errors[:-STDERR_TAIL]
                    progressed = True
                while pending and sinks.send_ready():
                    try:
                        sent = sinks.send(bytes(pending[:STDIN_CHUNK]))
                    except OSError:  # the sink stopped reading (it judged the input already)
                        sent, sink_closed = len(pending), True
                    del pending[:sent]
                    progressed = True
                while sinks.recv_ready():
                    stdout += sinks.recv(min(65536, stdout_cap + 1 - len(stdout)))
                    _within(len(stdout), stdout_cap, "stdout", sink.endpoint.name, sink_argv)
                    progressed = True
                while sinks.recv_stderr_ready():
                    sink_errors += sinks.recv_stderr(65536)
                    del sink_errors[:-STDERR_TAIL]
                    progressed = True
                if (
                    sinks.exit_status_ready()
                    and not sinks.recv_ready()
                    and not sinks.recv_stderr_ready()
                    and (sinks.eof_received or sinks.closed)
                ):
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransientError(
                        f"`{_short(source_argv)}` on {source.endpoint.name} piped into "
                        f"`{_short(sink_argv)}` on {sink.endpoint.name} did not finish in time; "
                        "both were abandoned"
                    )
                if not progressed and sinks.eof_received:  # its exit status is on its way (see _collect)
                    sinks.status_event.wait(remaining)
                elif not progressed:
                    # a channel past its EOF stays readable for select: watch only those still open
                    watched = [channel for channel in (sources, sinks) if not channel.eof_received]
                    select.select(watched, [], [], min(remaining, STDIN_POLL if pending else 0.2))
            status = sinks.recv_exit_status()
            source_status = sources.recv_exit_status() if sources.exit_status_ready() else None
        except (paramiko.SSHException, EOFError, OSError) as error:
            raise TransientError(
                f"piping {source.endpoint.name} into {sink.endpoint.name} lost an SSH channel ({error})"
            ) from None
    finally:
        sources.close()
        sinks.close()
    result = CommandResult(tuple(sink_argv), status, bytes(stdout), bytes(sink_errors).decode(errors="replace"))
    return PipeResult(result, source_status, bytes(source_errors).decode(errors="replace"), relayed)
