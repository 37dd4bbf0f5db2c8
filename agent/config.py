"""The agent's configuration: one frozen object built once at start-up, never changed afterwards.

Values come from four layers, each overriding the one before:

1. built-in defaults (``DEFAULTS`` below; ``node`` defaults to the host name);
2. a config file (``--config FILE`` or ``AGENT_CONFIG``): TOML (``*.toml``, keys at the top
   level and a ``[queues]`` table) or INI (any other name, an ``[agent]`` section and a
   ``[queues]`` section);
3. environment variables ``AGENT_<KEY>`` (``AGENT_KEY`` and ``AGENT_KEY_FILE`` for the agent key);
4. command-line options of ``python -m agent run``.

Parsing is strict, as the hub's settings are: an unknown key in the file, an unknown ``AGENT_*``
variable, a value of the wrong type or out of range stops the agent at start-up with a message
naming the key and where it came from, instead of running with a silent default. The agent key
(the Fernet key sealing target credentials, ``manage.py agent_key <site>`` on the hub) is kept in
a ``Secret`` whose ``repr`` and ``str`` never show it; ``describe`` masks it and any password in
the broker URL.

Cancels need no key: each node also consumes its own control queue (``<site>.control.<node>``,
``agent.contract.control_queue``) with one worker of its own (``agent.worker``); its name follows
from ``site`` and ``node``, and ``check`` shows it as ``control_queue``. A node name therefore
must be unique within its site, as the heartbeats already require.
"""

from __future__ import annotations

import configparser
import logging
import os
import re
import socket
import stat
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from agent.contract import DEFAULT_QUEUE, HUB_QUEUE, broker_queue, control_queue
from agent.drivers.gpfs_commands import DEFAULT_BIN_DIR as DEFAULT_GPFS_BIN_DIR

NAME = re.compile(r"^[A-Za-z0-9_-]+$")  # the hub's NAME_VALIDATOR for sites and queues
BROKER_SCHEMES = ("filesystem://", "redis://", "rediss://", "amqp://", "amqps://")
LOG_FORMATS = ("plain", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
POOLS = ("prefork", "threads", "solo")
#: The filesystem driver (``agent.filesystems``): auto-detected, or forced.
FILESYSTEMS = ("auto", "posix", "gpfs")
DEFAULT_CONCURRENCY = 2
ENV_PREFIX = "AGENT_"
CONFIG_ENV = "AGENT_CONFIG"
# The checkout the agent runs from: in a development setup the hub's ``var/`` lives there too,
# so ``python -m agent run --site demo`` next to ``make run`` shares the hub's filesystem broker.
_CHECKOUT = Path(__file__).resolve().parents[1]


class ConfigError(ValueError):
    """The configuration cannot be used; the message names the key and its source."""


class Secret:
    """A value that must never reach a log, a ``repr`` or the ``check`` output."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled only to hand the configuration to the agent's own worker processes.
        return (Secret, (self._value,))


@dataclass(frozen=True)
class QueueSpec:
    """A queue the node consumes, as the hub names it (``default``, ``transfer``...)."""

    name: str
    concurrency: int

    def broker_name(self, site: str) -> str:
        return broker_queue(site, self.name)


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to run; see the module docstring for where each value comes from."""

    site: str
    node: str
    broker_url: str
    broker_dir: Path
    queues: tuple[QueueSpec, ...]  # the default queue first
    hub_queue: str
    heartbeat_interval: float
    state_dir: Path
    roots: tuple[Path, ...]
    agent_key: Secret | None = field(default=None, repr=False)
    log_format: str = "plain"
    log_level: str = "INFO"
    visibility_timeout: int = 12 * 3600
    pool: str = "prefork"
    inventory_budget: float = 5.0
    small_file_workers: int = 0  # processes of the small-file lane (agent.lane); 0: the task's own thread
    small_file_native: bool = True  # the lane's C core (agent.native) where it is built; False: its Python loop
    filesystem: str = "auto"  # the filesystem driver (agent.filesystems): auto, posix or gpfs
    gpfs_bin_dir: Path = Path(DEFAULT_GPFS_BIN_DIR)  # where the Storage Scale mm commands are
    sources: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def uses_filesystem_broker(self) -> bool:
        return self.broker_url.startswith("filesystem://")

    def queue_names(self) -> list[str]:
        return [queue.name for queue in self.queues]

    @property
    def control_queue(self) -> str:
        """The broker queue of this node's control worker (cancels; see ``agent.worker``)."""
        return control_queue(self.site, self.node)


# --- parsers: raw value (TOML type or text) -> typed value, ConfigError on anything else -------

def _text(value: Any) -> str:
    if isinstance(value, str):
        return value.strip()
    raise ValueError(f"expected text, got {type(value).__name__}")


def _name(value: Any) -> str:
    text = _text(value)
    if not NAME.match(text) or len(text) > 100:
        raise ValueError(f"{text!r} is not a name (letters, digits, '-' and '_', at most 100)")
    return text


def _node(value: Any) -> str:
    text = _text(value)
    # '/' would end up in the control queue's name (<site>.control.<node>), a file name on the
    # filesystem broker.
    if not text or len(text) > 255 or any(ch.isspace() for ch in text) or "@" in text or "/" in text:
        raise ValueError(f"{text!r} is not a node name (1-255 characters, no blanks, '@' or '/')")
    return text


def _number(minimum: float, maximum: float, kind: type = float) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number, got a boolean")
        if isinstance(value, int | float):
            number = value
        else:
            text = _text(value)
            try:
                number = int(text) if kind is int else float(text)
            except ValueError:
                raise ValueError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        if kind is int and (not isinstance(number, int) and not float(number).is_integer()):
            raise ValueError(f"{number!r} is not an integer")
        number = kind(number)
        if not minimum <= number <= maximum:
            raise ValueError(f"{number} is outside {minimum:g}..{maximum:g}")
        return number

    return parse


def _choice(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        text = _text(value)
        text = text.upper() if upper else text.lower()
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = _text(value).lower()
    if text in _TRUE or text in _FALSE:
        return text in _TRUE
    raise ValueError(f"{text!r} is not a yes/no value ({', '.join(_TRUE)} or {', '.join(_FALSE)})")


def _broker_url(value: Any) -> str:
    text = _text(value)
    if not text.startswith(BROKER_SCHEMES):
        raise ValueError(f"{mask_url(text)!r}: use filesystem://, redis://, rediss://, amqp:// or amqps://")
    return text


def _path(value: Any) -> Path:
    text = _text(value) if not isinstance(value, Path) else str(value)
    if not text:
        raise ValueError("an empty path")
    path = Path(text).expanduser()
    if not path.is_absolute():
        raise ValueError(f"{text!r} is not an absolute path")
    return path


def _roots(value: Any) -> tuple[Path, ...]:
    if isinstance(value, str):
        items: list[Any] = [item for item in value.replace("\n", os.pathsep).split(os.pathsep) if item.strip()]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ValueError(f"expected a list of paths, got {type(value).__name__}")
    roots: list[Path] = []
    for item in items:
        path = _path(item)
        if not path.is_dir():
            raise ValueError(f"root {str(path)!r} is not an existing directory")
        if path not in roots:
            roots.append(path)
    return tuple(roots)


def _queues(value: Any) -> tuple[QueueSpec, ...]:
    """``{"default": 2, "transfer": 4}`` (a TOML/INI table), ``"default=2,transfer=4"`` or a list
    of ``name=N`` / ``name``; the default queue is always consumed (orders arrive there)."""
    pairs: list[tuple[Any, Any]] = []
    if isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise ValueError(f"expected name=concurrency pairs, got {type(value).__name__}")
        for item in items:
            text = _text(item)
            if not text:
                continue
            name, sep, count = text.partition("=")
            pairs.append((name.strip(), count.strip() if sep else DEFAULT_CONCURRENCY))
    specs: dict[str, QueueSpec] = {}
    concurrency = _number(1, 256, int)
    for raw_name, raw_count in pairs:
        name = _name(raw_name)
        try:
            specs[name] = QueueSpec(name, concurrency(raw_count))
        except ValueError as exc:
            raise ValueError(f"queue {name}: concurrency {exc}") from None
    specs.setdefault(DEFAULT_QUEUE, QueueSpec(DEFAULT_QUEUE, DEFAULT_CONCURRENCY))
    return (specs.pop(DEFAULT_QUEUE), *sorted(specs.values(), key=lambda spec: spec.name))


def _fernet_key(text: str) -> Secret:
    from cryptography.fernet import Fernet

    try:
        Fernet(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        # Never echo the value: it may be a real key with a typo.
        raise ValueError("not a Fernet key (32 url-safe base64-encoded bytes, as `manage.py agent_key` prints)") \
            from None
    return Secret(text)


def _agent_key(value: Any) -> Secret:
    return _fernet_key(_text(value))


def _agent_key_file(value: Any) -> Secret:
    path = _path(value)
    try:
        info = path.stat()
        text = path.read_text(encoding="ascii").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{str(path)!r} does not hold a Fernet key") from None
    if info.st_mode & stat.S_IROTH:
        raise ValueError(f"{str(path)!r} is readable by every user; chmod o-r it (the key seals credentials)")
    return _fernet_key(text)


# key -> (parser, environment variable)
KEYS: dict[str, tuple[Callable[[Any], Any], str]] = {
    "site": (_name, "AGENT_SITE"),
    "node": (_node, "AGENT_NODE"),
    "broker_url": (_broker_url, "AGENT_BROKER_URL"),
    "broker_dir": (_path, "AGENT_BROKER_DIR"),
    "queues": (_queues, "AGENT_QUEUES"),
    "hub_queue": (_name, "AGENT_HUB_QUEUE"),
    "heartbeat_interval": (_number(0.5, 3600), "AGENT_HEARTBEAT_INTERVAL"),
    "state_dir": (_path, "AGENT_STATE_DIR"),
    "roots": (_roots, "AGENT_ROOTS"),
    "agent_key": (_agent_key, "AGENT_KEY"),
    "agent_key_file": (_agent_key_file, "AGENT_KEY_FILE"),
    "log_format": (_choice(LOG_FORMATS), "AGENT_LOG_FORMAT"),
    "log_level": (_choice(LOG_LEVELS, upper=True), "AGENT_LOG_LEVEL"),
    "visibility_timeout": (_number(60, 7 * 24 * 3600, int), "AGENT_VISIBILITY_TIMEOUT"),
    "pool": (_choice(POOLS), "AGENT_POOL"),
    "inventory_budget": (_number(0, 3600), "AGENT_INVENTORY_BUDGET"),
    "small_file_workers": (_number(0, 256, int), "AGENT_SMALL_FILE_WORKERS"),
    "small_file_native": (_boolean, "AGENT_SMALL_FILE_NATIVE"),
    "filesystem": (_choice(FILESYSTEMS), "AGENT_FILESYSTEM"),
    "gpfs_bin_dir": (_path, "AGENT_GPFS_BIN_DIR"),
}
ENV_KEYS = {env: key for key, (_, env) in KEYS.items()}


def _var_dir(environ: Mapping[str, str]) -> Path:
    """Where a development setup keeps its state: the hub's ``HUB_VAR_DIR``, else ``<checkout>/var``."""
    value = (environ.get("HUB_VAR_DIR") or "").strip()
    return Path(value) if value else _CHECKOUT / "var"


def _defaults(environ: Mapping[str, str]) -> dict[str, Any]:
    var = _var_dir(environ)
    return {
        "node": socket.gethostname() or "localhost",
        "broker_url": "filesystem://",
        "broker_dir": var / "broker",
        "queues": {DEFAULT_QUEUE: DEFAULT_CONCURRENCY},
        "hub_queue": HUB_QUEUE,
        "heartbeat_interval": 30,
        "roots": [],
        "log_format": "plain",
        "log_level": "INFO",
        "visibility_timeout": 12 * 3600,
        "pool": "prefork",
        "inventory_budget": 5,
        "small_file_workers": 2 * (os.cpu_count() or 1),  # a worker waiting on a sync leaves its core to another
        "small_file_native": True,
        "filesystem": "auto",
        "gpfs_bin_dir": Path(DEFAULT_GPFS_BIN_DIR),
    }


def read_config_file(path: Path) -> dict[str, Any]:
    """The raw values of a TOML or INI config file (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc.strerror}") from None
    if path.suffix == ".toml":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {str(path)!r}: {exc}") from None
        if "agent" in data and isinstance(data["agent"], dict):
            # An [agent] table is accepted too, for files shared with other tools.
            data = {**data.pop("agent"), **data}
        return data
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ConfigError(f"config file {str(path)!r}: {exc}") from None
    unknown_sections = set(parser.sections()) - {"agent", "queues"}
    if unknown_sections:
        raise ConfigError(f"config file {str(path)!r}: unknown section(s) {sorted(unknown_sections)}; "
                          "use [agent] and [queues]")
    data: dict[str, Any] = dict(parser["agent"]) if parser.has_section("agent") else {}
    if parser.has_section("queues"):
        data["queues"] = dict(parser["queues"])
    return data


def load_config(
    *,
    config_file: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> AgentConfig:
    """Build the configuration from defaults, ``config_file`` (or ``AGENT_CONFIG``), ``AGENT_*``
    variables and ``overrides`` (command-line options; None values are ignored).

    Raises ``ConfigError`` listing every problem found, not only the first.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, tuple[Any, str]] = {key: (value, "default") for key, value in _defaults(environ).items()}
    errors: list[str] = []

    file_name = config_file if config_file is not None else (environ.get(CONFIG_ENV) or "").strip() or None
    if file_name is not None:
        path = Path(file_name).expanduser()
        for key, value in read_config_file(path).items():
            if key not in KEYS:
                errors.append(f"{path}: unknown key {key!r} (known: {', '.join(sorted(KEYS))})")
            else:
                raw[key] = (value, str(path))

    for env_name, value in environ.items():
        if not env_name.startswith(ENV_PREFIX) or env_name == CONFIG_ENV:
            continue
        key = ENV_KEYS.get(env_name)
        if key is None:
            errors.append(f"unknown environment variable {env_name} (known: {', '.join(sorted(ENV_KEYS))})")
        elif value.strip():
            raw[key] = (value, env_name)

    for key, value in (overrides or {}).items():
        if key not in KEYS:
            raise ConfigError(f"unknown option {key!r}")
        if value is not None and value != [] and value != ():
            raw[key] = (value, "command line")

    values: dict[str, Any] = {}
    for key, (value, source) in raw.items():
        parser = KEYS[key][0]
        try:
            values[key] = parser(value)
        except ValueError as exc:
            errors.append(f"{key} (from {source}): {exc}")

    if "agent_key" in raw and "agent_key_file" in raw:
        errors.append(f"agent_key (from {raw['agent_key'][1]}) and agent_key_file (from "
                      f"{raw['agent_key_file'][1]}) are both set; give one")
    if "site" not in raw:
        errors.append("site is required (--site, AGENT_SITE or `site` in the config file)")
    if errors:
        raise ConfigError("invalid agent configuration:\n  " + "\n  ".join(errors))

    site = values["site"]
    state_dir = values.get("state_dir") or _var_dir(environ) / "agent" / site
    sources = {key: source for key, (_, source) in raw.items()}
    sources.setdefault("state_dir", "default")
    agent_key = values.get("agent_key") or values.get("agent_key_file")
    if "agent_key_file" in raw:
        sources["agent_key"] = raw["agent_key_file"][1] + " (key file)"
    return AgentConfig(
        site=site,
        node=values["node"],
        broker_url=values["broker_url"],
        broker_dir=values["broker_dir"],
        queues=values["queues"],
        hub_queue=values["hub_queue"],
        heartbeat_interval=values["heartbeat_interval"],
        state_dir=state_dir,
        roots=values["roots"],
        agent_key=agent_key,
        log_format=values["log_format"],
        log_level=values["log_level"],
        visibility_timeout=values["visibility_timeout"],
        pool=values["pool"],
        inventory_budget=values["inventory_budget"],
        small_file_workers=values["small_file_workers"],
        small_file_native=values["small_file_native"],
        filesystem=values["filesystem"],
        gpfs_bin_dir=values["gpfs_bin_dir"],
        sources=sources,
    )


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``****`` (broker URLs carry them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"{user}:****@{host}", parts.path, parts.query, parts.fragment))


def describe(config: AgentConfig) -> dict[str, Any]:
    """The effective configuration for people (``python -m agent check``): secrets masked, with
    where each value came from."""
    sources = dict(config.sources)
    values: dict[str, Any] = {
        "site": config.site,
        "node": config.node,
        "broker_url": mask_url(config.broker_url),
        "broker_dir": str(config.broker_dir) if config.uses_filesystem_broker else "(unused: not filesystem://)",
        "queues": {spec.name: {"concurrency": spec.concurrency, "broker_queue": spec.broker_name(config.site)}
                   for spec in config.queues},
        "control_queue": config.control_queue,
        "hub_queue": config.hub_queue,
        "heartbeat_interval": config.heartbeat_interval,
        "state_dir": str(config.state_dir),
        "roots": [str(root) for root in config.roots],
        "agent_key": "******** (set)" if config.agent_key is not None else "(not set: targets cannot be configured)",
        "log_format": config.log_format,
        "log_level": config.log_level,
        "visibility_timeout": config.visibility_timeout,
        "pool": config.pool,
        "inventory_budget": config.inventory_budget,
        "small_file_workers": config.small_file_workers,
        "small_file_native": config.small_file_native,
        "filesystem": config.filesystem,
        "gpfs_bin_dir": str(config.gpfs_bin_dir),
    }
    sources.setdefault("control_queue", "site and node")
    return {key: {"value": value, "from": sources.get(key, "default")} for key, value in values.items()}


def level_number(name: str) -> int:
    """The ``logging`` level of a validated level name."""
    return logging.getLevelNamesMapping()[name]
