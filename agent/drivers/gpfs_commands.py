"""The one way the agent runs IBM Storage Scale (GPFS) ``mm*`` commands, and the parser of their
machine-readable ``-Y`` output.

Why one helper: every GPFS administration command is a shell script that may talk to every node of
the cluster, take cluster-wide locks, and hang when a node or the cluster manager is unwell. Each
call therefore gets the same treatment here, in one place:

* **No shell.** The program is ``<bin_dir>/<command>`` (a bare ``mm`` name, never a path) and the
  arguments are a list of strings passed as they are, so a file, fileset or snapshot name can
  never be read as shell syntax.
* **A small, fixed environment**: ``PATH`` (the binary directory first), ``LANG``/``LC_ALL=C`` so
  messages, dates and numbers have one format to parse, and ``HOME``/``TZ`` when set. Nothing
  else of the agent's environment (broker URLs, tokens, credentials) reaches the command.
* **A timeout.** The command runs in its own session; when the time is up the whole process
  group gets SIGTERM (the mm scripts trap it and release their cluster locks), then SIGKILL
  after a grace period, so no ssh or ``mmcommon`` grandchild outlives the call.
* **Errors mapped at the boundary** to the driver hierarchy (``agent.drivers.base``):
  a timeout, a command killed by a signal, or a failure whose message says the cluster is busy
  (``BUSY_PATTERNS``) is a ``TransientError`` - retry later; any other non-zero exit is a
  ``PermanentError``; a missing binary is a ``PermanentError`` saying so; a binary the agent may
  not run is ``AccessDenied``. Messages name the command and its exit code, plus the last line
  of its error output for the operator - never the environment, and never the arguments (which
  hold only names, but the helper does not guess what a future caller passes).

The ``-Y`` format (``parse_y``): one line per record, fields separated by ``:``, each command
printing a ``HEADER`` line per section before that section's data::

    mmdf:poolTotal:HEADER:version:reserved:reserved:poolName:poolSize:freeBlocks:...
    mmdf:poolTotal:0:1:::system:50009787008:34200018944:68:...

The first field is the command, the second the section (empty for single-section commands such
as ``mmlsfs``), the third ``HEADER`` on a header line. Values that contain ``:`` or other special
characters are percent-encoded (``%3A``, ``%2F``...; the encoding ``mmclidecode`` reverses), so
lines are split first and each value decoded after. A section may repeat its HEADER (mmrepquota
prints one per quota report); each data line is read with the latest header of its section.
Lines that are not ``-Y`` records (mmrepquota's ``*** Report for ...`` banners, "No snapshots in
file system ...") are skipped.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import unquote

from agent.drivers.base import AccessDenied, DriverError, PermanentError, TransientError

logger = logging.getLogger(__name__)

DEFAULT_BIN_DIR = "/usr/lpp/mmfs/bin"
#: Seconds an administrative query (mmlsfs, mmdf, mmlsfileset, snapshots) may take.
DEFAULT_TIMEOUT = 300.0
#: Seconds between SIGTERM and SIGKILL for a command that overran its timeout.
DEFAULT_KILL_GRACE = 5.0

#: Failure messages meaning "the cluster is busy, try again later" rather than "this cannot work".
#: Matched case-insensitively against the command's output; a match makes the error transient.
BUSY_PATTERNS: tuple[re.Pattern[str], ...] = tuple(re.compile(p, re.IGNORECASE) for p in (
    r"\bbusy\b",
    r"try again",
    r"temporarily unavailable",
    r"\btimed out\b",
    r"\bquiesce",
    r"another \S+ (command )?is (already )?(running|in progress)",
    r"\bin progress\b",
    r"(waiting for|unable to obtain|could not obtain|failed to obtain) .{0,40}\block\b",
    r"\block is (held|busy)",
    r"(is|are) not available at this time",
    r"cluster manager .{0,40}(unavailable|not available|not responding)",
    r"\bEAGAIN\b",
    r"\bEBUSY\b",
))

_COMMAND = re.compile(r"mm[a-z]+")
#: GPFS message identifiers, e.g. ``6027-2612``, kept on errors for callers that need them.
_MESSAGE_CODE = re.compile(r"\b6027-\d{3,4}\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_DETAIL = 300


@dataclass(frozen=True)
class CommandResult:
    """A finished command: exit status 0 unless the caller asked not to check it."""

    command: str
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


class MmCommandError(DriverError):
    """A command that did not succeed; each concrete class is also a Transient- or PermanentError.

    ``returncode`` is None when the command never finished (timeout) or never started;
    ``message_codes`` lists the GPFS message identifiers (``6027-NNNN``) found in its output.
    """

    def __init__(self, message: str, *, command: str, returncode: int | None = None, stdout: str = "",
                 stderr: str = "") -> None:
        super().__init__(message)
        self.command = command
        self.returncode = returncode
        self.stderr = stderr
        self.message_codes = tuple(dict.fromkeys(_MESSAGE_CODE.findall(stderr + "\n" + stdout)))


class MmCommandFailed(MmCommandError, PermanentError):
    """The command exited non-zero (or could not start) for a reason retrying will not fix."""


class MmCommandBusy(MmCommandError, TransientError):
    """The command failed because the cluster was busy, or was killed by a signal: retry later."""


class MmCommandTimeout(MmCommandError, TransientError):
    """The command did not finish in time and was killed (with its whole process group)."""


class MmOutputError(PermanentError):
    """The command's output is not in the format this module understands."""


def is_busy(text: str) -> bool:
    """Whether a failure message says the cluster was busy (see ``BUSY_PATTERNS``)."""
    return any(pattern.search(text) for pattern in BUSY_PATTERNS)


#: The closing line most mm commands print after the real reason; useless as the detail.
_GENERIC = re.compile(r"command failed\. examine previous error messages", re.IGNORECASE)


def _last_line(*texts: str) -> str:
    """The last informative line of the first text that has one, cleaned for a one-line message."""
    for text in texts:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        informative = [line for line in lines if not _GENERIC.search(line)] or lines
        if informative:
            return _CONTROL.sub(" ", informative[-1])[:_MAX_DETAIL]
    return ""


class MmCommands:
    """Runs ``mm*`` commands from ``bin_dir`` with a timeout (see the module docstring).

    Thread-safe: it holds only settings. ``bin_dir`` is configurable so tests (and sites with a
    non-standard install) can point it elsewhere.
    """

    def __init__(self, bin_dir: str | os.PathLike[str] = DEFAULT_BIN_DIR, *, timeout: float = DEFAULT_TIMEOUT,
                 kill_grace: float = DEFAULT_KILL_GRACE) -> None:
        self.bin_dir = os.fspath(bin_dir)
        if not os.path.isabs(self.bin_dir):
            raise ValueError(f"the GPFS binary directory must be absolute, got {self.bin_dir!r}")
        if timeout <= 0 or kill_grace < 0:
            raise ValueError("timeout must be positive and kill_grace not negative")
        self.timeout = timeout
        self.kill_grace = kill_grace

    def environment(self) -> dict[str, str]:
        """The whole environment a command sees (nothing else of the agent's leaks through)."""
        env = {"PATH": f"{self.bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "LC_ALL": "C"}
        for name in ("HOME", "TZ"):
            value = os.environ.get(name)
            if value:
                env[name] = value
        return env

    def run(self, command: str, args: Sequence[str], *, timeout: float | None = None,
            check: bool = True) -> CommandResult:
        """Run ``<bin_dir>/<command> args...`` and return its output.

        With ``check`` (the default) a non-zero exit raises; ``check=False`` returns the result
        for the caller to judge (timeouts and start failures still raise).
        Raises: MmCommandTimeout / MmCommandBusy (TransientError), MmCommandFailed
        (PermanentError), AccessDenied, PermanentError (bad command name or argument, or the
        binary is missing).
        """
        if not _COMMAND.fullmatch(command):
            raise PermanentError(f"not a Storage Scale command name: {command!r}")
        argv = [os.path.join(self.bin_dir, command)]
        for arg in args:
            if not isinstance(arg, str) or "\0" in arg:
                raise PermanentError(f"{command}: arguments must be strings without NUL")
            argv.append(arg)
        limit = self.timeout if timeout is None else timeout
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, env=self.environment(), cwd="/",
                                    close_fds=True, start_new_session=True)
        except FileNotFoundError:
            raise MmCommandFailed(f"{command}: not found in {self.bin_dir} (is Storage Scale installed?)",
                                  command=command, returncode=None) from None
        except PermissionError:
            raise AccessDenied(f"{command}: not permitted to run it from {self.bin_dir}") from None
        except OSError as exc:
            raise MmCommandFailed(f"{command}: could not start: {exc.strerror or exc}", command=command,
                                  returncode=None) from None
        try:
            raw_out, raw_err = proc.communicate(timeout=limit)
        except subprocess.TimeoutExpired:
            raw_out, raw_err = self._stop(proc)
            out, err = _text(raw_out), _text(raw_err)
            logger.warning("%s timed out after %.1f s and was killed", command, limit)
            raise MmCommandTimeout(f"{command} timed out after {limit:g} s (killed)", command=command,
                                   stdout=out, stderr=err) from None
        except BaseException:  # interrupted (cancel, shutdown): never leave the command running
            self._stop(proc)
            raise
        seconds = time.monotonic() - started
        out, err = _text(raw_out), _text(raw_err)
        logger.debug("%s exited %s after %.2f s", command, proc.returncode, seconds)
        result = CommandResult(command, tuple(argv[1:]), proc.returncode, out, err, seconds)
        if check and proc.returncode != 0:
            raise command_error(result)
        return result

    def _stop(self, proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
        """SIGTERM the command's process group, SIGKILL it after the grace period; reap it."""
        for sig, wait in ((signal.SIGTERM, self.kill_grace), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                return proc.communicate(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        # Something escaped the group and still holds our pipes: stop waiting for them.
        proc.kill()
        proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return b"", b""

    def run_y(self, command: str, args: Sequence[str], *,
              timeout: float | None = None) -> dict[str, list[dict[str, str]]]:
        """Run a command that prints ``-Y`` output (the caller includes ``-Y`` in ``args``, where
        the command's syntax wants it) and parse it with ``parse_y``."""
        return parse_y(self.run(command, args, timeout=timeout).stdout, command=command)


def command_error(result: CommandResult) -> MmCommandBusy | MmCommandFailed:
    """The error for a command that exited non-zero: transient when busy or killed by a signal."""
    command, code = result.command, result.returncode
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else "?"
        return MmCommandBusy(f"{command} was killed by signal {-code} ({name})", command=command, returncode=code,
                             stdout=result.stdout, stderr=result.stderr)
    detail = _last_line(result.stderr, result.stdout)
    message = f"{command} failed with exit code {code}" + (f": {detail}" if detail else "")
    if is_busy(result.stderr) or is_busy(result.stdout):
        return MmCommandBusy(message + " (busy; retry later)", command=command, returncode=code,
                             stdout=result.stdout, stderr=result.stderr)
    return MmCommandFailed(message, command=command, returncode=code, stdout=result.stdout, stderr=result.stderr)


def _text(raw: bytes | None) -> str:
    # LC_ALL=C output is ASCII; surrogateescape keeps any stray byte (a path) round-trippable.
    return (raw or b"").decode("utf-8", "surrogateescape")


# --- -Y output -------------------------------------------------------------------------------------

#: A record: command, a section name (an identifier, or empty), then HEADER or the record number.
#: Anything else - banners, warnings like ``mmlsfs: Warning: ...`` - is not a record.
_Y_LINE = re.compile(r"mm[a-z]+:[A-Za-z0-9_]*:(HEADER|[0-9]+):")
_SKIPPED_NAMES = frozenset({"", "reserved"})


def decode_value(value: str) -> str:
    """One ``-Y`` field, percent-decoded (``%3A`` -> ``:``, ``%2F`` -> ``/``). Bytes that are not
    UTF-8 survive as surrogate escapes, so ``os.fsencode`` gives back the exact name."""
    return unquote(value, errors="surrogateescape") if "%" in value else value


def parse_y(text: str, *, command: str | None = None) -> dict[str, list[dict[str, str]]]:
    """Parse ``-Y`` output into ``{section: [record, ...]}``, records in output order.

    Each record maps the header's field names to decoded values (``version`` included; the
    ``reserved`` and unnamed columns left out; a short line's missing fields are ``""``; the
    first of two same-named columns wins). ``section`` is ``""`` for commands without sections.
    With ``command``, lines of other commands are ignored. A data line whose section has not had
    a HEADER raises ``MmOutputError``: the output is not what we think it is.
    """
    headers: dict[tuple[str, str], list[str]] = {}
    sections: dict[str, list[dict[str, str]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.rstrip("\r\n")
        if not _Y_LINE.match(line):
            continue
        fields = line.split(":")
        if command is not None and fields[0] != command:
            continue
        key = (fields[0], fields[1])
        if fields[2] == "HEADER":
            headers[key] = fields
            continue
        names = headers.get(key)
        if names is None:
            raise MmOutputError(f"{fields[0]} output line {number}: data before any HEADER for section "
                                f"{fields[1]!r}")
        record: dict[str, str] = {}
        for index in range(3, len(names)):
            name = names[index]
            if name in _SKIPPED_NAMES or name in record:
                continue
            record[name] = decode_value(fields[index]) if index < len(fields) else ""
        sections.setdefault(fields[1], []).append(record)
    return sections


def y_int(value: str | None, default: int | None = None) -> int | None:
    """A ``-Y`` number; ``default`` for the empty, ``-`` and ``--`` placeholders GPFS prints."""
    if value is None:
        return default
    value = value.strip()
    if value in ("", "-", "--"):
        return default
    try:
        return int(value)
    except ValueError:
        raise MmOutputError(f"expected a whole number, got {value!r}") from None


def y_text(value: str | None) -> str:
    """A ``-Y`` text value with GPFS's ``-``/``--`` "nothing" placeholders turned into ``""``."""
    value = (value or "").strip()
    return "" if value in ("-", "--") else value


_MONTHS = {name: number for number, name in enumerate(
    ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1)}


def y_ctime(value: str | None) -> datetime | None:
    """A C-locale ``ctime`` text (``Wed Jan 20 00:30:02 2021``, how mm commands print creation
    times) as an aware datetime. The text is the node's local time, and the agent runs on a
    cluster node (``TZ`` is passed through to the commands), so the local zone applies. Parsed by
    hand, not with ``strptime``, so the agent's own locale cannot change the answer. None when
    the text is not a ctime."""
    parts = (value or "").split()
    if len(parts) != 5 or parts[1] not in _MONTHS:
        return None
    try:
        hour, minute, second = (int(x) for x in parts[3].split(":"))
        return datetime(int(parts[4]), _MONTHS[parts[1]], int(parts[2]), hour, minute, second).astimezone()
    except ValueError:
        return None
