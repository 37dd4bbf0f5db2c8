"""Command line of the site agent.

``python -m agent run --site <name> [--config FILE] [options]``
    Run the agent in the foreground until SIGTERM/SIGINT (see ``agent.worker``).
``python -m agent check [--site <name>] [--config FILE] [options]``
    Print the effective configuration as JSON, secrets masked, with where each value came from.

Options override ``AGENT_*`` variables, which override the config file (``agent.config``). A
configuration error exits with status 78 (``EX_CONFIG``), which the systemd unit does not
restart on: restarting cannot fix a typo.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EX_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m agent", description="The per-site storage agent.")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (("run", "run the agent until SIGTERM"),
                            ("check", "print the effective configuration (secrets masked)")):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--site", help="site name, as on the hub (AGENT_SITE)")
        sub.add_argument("--config", help="TOML (*.toml) or INI config file (AGENT_CONFIG)")
        sub.add_argument("--node", help="node name reported to the hub (AGENT_NODE; default: host name)")
        sub.add_argument("--broker-url", help="filesystem://, redis://... (AGENT_BROKER_URL)")
        sub.add_argument("--broker-dir", help="folder of the filesystem broker (AGENT_BROKER_DIR)")
        sub.add_argument("--queue", action="append", dest="queues", metavar="NAME=CONCURRENCY",
                         help="a queue to consume, repeatable (AGENT_QUEUES=default=2,transfer=4)")
        sub.add_argument("--root", action="append", dest="roots", metavar="PATH",
                         help="an allowed filesystem root, repeatable (AGENT_ROOTS=/a:/b)")
        sub.add_argument("--state-dir", help="local state directory (AGENT_STATE_DIR)")
        sub.add_argument("--heartbeat-interval", help="seconds between heartbeats (AGENT_HEARTBEAT_INTERVAL)")
        sub.add_argument("--pool", help="prefork, threads or solo (AGENT_POOL)")
        sub.add_argument("--log-level", help="DEBUG, INFO, WARNING, ERROR (AGENT_LOG_LEVEL)")
        sub.add_argument("--log-format", help="plain or json (AGENT_LOG_FORMAT)")
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("site", "node", "broker_url", "broker_dir", "queues", "roots", "state_dir", "heartbeat_interval",
            "pool", "log_level", "log_format")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    from agent.config import ConfigError, describe, load_config

    args = _parser().parse_args(argv)
    try:
        config = load_config(config_file=args.config, overrides=_overrides(args))
    except ConfigError as exc:
        print(f"agent: {exc}", file=sys.stderr)
        return EX_CONFIG
    if args.command == "check":
        print(json.dumps(describe(config), indent=2))
        return 0
    from agent.worker import run

    return run(config)


if __name__ == "__main__":
    sys.exit(main())
