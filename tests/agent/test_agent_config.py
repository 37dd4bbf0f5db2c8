"""The agent's configuration: layers, strict parsing, secrets that never show."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from agent.config import ConfigError, QueueSpec, describe, load_config, mask_url

pytestmark = pytest.mark.smoke
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def test_defaults_need_only_a_site(tmp_path: Path):
    config = load_config(environ={"HUB_VAR_DIR": str(tmp_path)}, overrides={"site": "lab"})
    assert config.site == "lab" and config.node
    assert config.broker_url == "filesystem://" and config.broker_dir == tmp_path / "broker"
    assert config.state_dir == tmp_path / "agent" / "lab"
    assert config.queues == (QueueSpec("default", 2),)
    assert config.hub_queue == "hub" and config.heartbeat_interval == 30
    assert config.visibility_timeout == 12 * 3600 and config.roots == () and config.agent_key is None


def test_the_control_queue_follows_from_site_and_node_without_any_setting():
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_NODE": "nsd1"})

    assert config.control_queue == "lab.control.nsd1"
    assert config.control_queue not in {spec.broker_name("lab") for spec in config.queues}
    assert describe(config)["control_queue"] == {"value": "lab.control.nsd1", "from": "site and node"}


def test_a_node_name_with_a_slash_is_refused_since_it_names_the_control_queue():
    with pytest.raises(ConfigError, match="not a node name"):
        load_config(environ={"AGENT_SITE": "lab", "AGENT_NODE": "rack1/nsd1"})


def test_a_missing_site_is_an_error():
    with pytest.raises(ConfigError, match="site is required"):
        load_config(environ={})


def test_toml_file_then_environment_then_command_line(tmp_path: Path, data: Path):
    config_file = tmp_path / "agent.toml"
    config_file.write_text(f"""
site = "lab"
node = "from-file"
broker_url = "redis://broker.example:6379/0"
heartbeat_interval = 15
roots = ["{data}"]
log_format = "json"

[queues]
default = 3
transfer = 4
""")
    config = load_config(config_file=config_file, environ={"AGENT_NODE": "from-env", "AGENT_LOG_LEVEL": "debug"},
                         overrides={"heartbeat_interval": "5"})
    assert config.node == "from-env" and config.heartbeat_interval == 5.0 and config.log_level == "DEBUG"
    assert config.log_format == "json" and config.roots == (data,)
    assert config.queues == (QueueSpec("default", 3), QueueSpec("transfer", 4))
    assert config.queues[1].broker_name("lab") == "lab.transfer"
    assert config.sources["node"] == "AGENT_NODE" and config.sources["heartbeat_interval"] == "command line"
    assert config.sources["broker_url"] == str(config_file)


def test_ini_file_with_agent_and_queues_sections(tmp_path: Path, data: Path):
    config_file = tmp_path / "agent.conf"
    config_file.write_text(f"[agent]\nsite = lab\nroots = {data}\nvisibility_timeout = 7200\n\n"
                           "[queues]\ndiscovery = 4\n")
    config = load_config(config_file=config_file, environ={})
    assert config.visibility_timeout == 7200 and config.roots == (data,)
    assert config.queue_names() == ["default", "discovery"]


def test_the_config_file_can_come_from_agent_config(tmp_path: Path):
    config_file = tmp_path / "agent.toml"
    config_file.write_text('site = "lab"\nhub_queue = "hub2"\n')
    assert load_config(environ={"AGENT_CONFIG": str(config_file)}).hub_queue == "hub2"


def test_the_lanes_c_core_is_on_by_default_and_can_be_switched_off():
    assert load_config(environ={"AGENT_SITE": "lab"}).small_file_native is True
    for off in ("0", "false", "No", "off"):
        assert load_config(environ={"AGENT_SITE": "lab", "AGENT_SMALL_FILE_NATIVE": off}).small_file_native is False
    assert load_config(environ={"AGENT_SITE": "lab", "AGENT_SMALL_FILE_NATIVE": "yes"}).small_file_native is True


def test_small_file_workers_default_to_twice_the_cpu_count_and_zero_is_allowed():
    assert load_config(environ={"AGENT_SITE": "lab"}).small_file_workers == 2 * (os.cpu_count() or 1)
    assert load_config(environ={"AGENT_SITE": "lab", "AGENT_SMALL_FILE_WORKERS": "0"}).small_file_workers == 0


def test_queues_from_the_environment_always_include_the_default_queue():
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_QUEUES": "transfer=4, discovery"})
    assert config.queues == (QueueSpec("default", 2), QueueSpec("discovery", 2), QueueSpec("transfer", 4))


@pytest.mark.parametrize(("environ", "message"), [
    ({"AGENT_HEARTBEAT_INTERVAL": "ten"}, "heartbeat_interval (from AGENT_HEARTBEAT_INTERVAL): 'ten' is not a number"),
    ({"AGENT_HEARTBEAT_INTERVAL": "0"}, "outside"),
    ({"AGENT_QUEUES": "transfer=0"}, "queue transfer: concurrency"),
    ({"AGENT_QUEUES": "bad name=1"}, "is not a name"),
    ({"AGENT_BROKER_URL": "sqla+sqlite:///x"}, "use filesystem://"),
    ({"AGENT_LOG_FORMAT": "xml"}, "not one of plain, json"),
    ({"AGENT_VISIBILITY_TIMEOUT": "1.5"}, "not an integer"),
    ({"AGENT_ROOTS": "relative/dir"}, "not an absolute path"),
    ({"AGENT_ROOTS": "/no/such/hub/root"}, "not an existing directory"),
    ({"AGENT_STAET_DIR": "/tmp"}, "unknown environment variable AGENT_STAET_DIR"),
    ({"AGENT_POOL": "gevent"}, "not one of prefork, threads, solo"),
    ({"AGENT_SMALL_FILE_WORKERS": "-1"}, "small_file_workers"),
    ({"AGENT_SMALL_FILE_NATIVE": "maybe"}, "small_file_native"),
    ({"AGENT_SMALL_FILE_WORKERS": "two"}, "small_file_workers"),
])
def test_bad_values_are_errors_naming_the_key_and_source(environ: dict[str, str], message: str):
    with pytest.raises(ConfigError) as error:
        load_config(environ={"AGENT_SITE": "lab", **environ})
    assert message in str(error.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigError) as error:
        load_config(environ={"AGENT_LOG_LEVEL": "LOUD", "AGENT_POOL": "x"})
    text = str(error.value)
    assert "log_level" in text and "pool" in text and "site is required" in text


def test_unknown_keys_in_the_file_are_errors(tmp_path: Path):
    config_file = tmp_path / "agent.toml"
    config_file.write_text('site = "lab"\nheartbeat = 5\n')
    with pytest.raises(ConfigError, match="unknown key 'heartbeat'"):
        load_config(config_file=config_file, environ={})
    ini = tmp_path / "agent.ini"
    ini.write_text("[agent]\nsite = lab\n[hub]\nurl = x\n")
    with pytest.raises(ConfigError, match="unknown section"):
        load_config(config_file=ini, environ={})


def test_a_broken_toml_file_is_an_error(tmp_path: Path):
    config_file = tmp_path / "agent.toml"
    config_file.write_text("site = \n")
    with pytest.raises(ConfigError, match="agent.toml"):
        load_config(config_file=config_file, environ={})


def test_the_agent_key_is_never_shown(tmp_path: Path):
    key = Fernet.generate_key().decode()
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_KEY": key})
    assert config.agent_key is not None and config.agent_key.reveal() == key
    for text in (repr(config), str(config), repr(config.agent_key), json.dumps(describe(config))):
        assert key not in text
    assert describe(config)["agent_key"]["value"] == "******** (set)"
    # Handed to the worker processes by pickling: the key must survive that.
    assert pickle.loads(pickle.dumps(config)).agent_key.reveal() == key


def test_a_malformed_agent_key_is_refused_without_echoing_it():
    with pytest.raises(ConfigError) as error:
        load_config(environ={"AGENT_SITE": "lab", "AGENT_KEY": "not-a-key-but-maybe-a-password"})
    assert "not a Fernet key" in str(error.value) and "maybe-a-password" not in str(error.value)


def test_the_agent_key_can_come_from_a_private_file(tmp_path: Path):
    key = Fernet.generate_key().decode()
    key_file = tmp_path / "lab.key"
    key_file.write_text(key + "\n")
    key_file.chmod(0o600)
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_KEY_FILE": str(key_file)})
    assert config.agent_key.reveal() == key
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by every user"):
        load_config(environ={"AGENT_SITE": "lab", "AGENT_KEY_FILE": str(key_file)})
    with pytest.raises(ConfigError, match="both set"):
        load_config(environ={"AGENT_SITE": "lab", "AGENT_KEY": key, "AGENT_KEY_FILE": str(key_file)})


def test_broker_passwords_are_masked():
    assert mask_url("redis://:s3cret@broker:6379/0") == "redis://:****@broker:6379/0"
    assert mask_url("amqp://hub:s3cret@mq/vhost") == "amqp://hub:****@mq/vhost"
    assert mask_url("filesystem://") == "filesystem://"
    config = load_config(environ={"AGENT_SITE": "lab", "AGENT_BROKER_URL": "redis://:s3cret@broker:6379/0"})
    assert "s3cret" not in json.dumps(describe(config))


def _agent(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_")}
    return subprocess.run([sys.executable, "-m", "agent", *args], cwd=ROOT, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_check_prints_the_effective_configuration_with_secrets_masked(tmp_path: Path, data: Path):
    key = Fernet.generate_key().decode()
    result = _agent("check", "--site", "lab", "--root", str(data), "--queue", "transfer=4",
                    env={"AGENT_KEY": key, "AGENT_BROKER_URL": "redis://:pw-123@127.0.0.1:6379/3",
                         "HUB_VAR_DIR": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["site"] == {"value": "lab", "from": "command line"}
    assert shown["queues"]["value"]["transfer"] == {"concurrency": 4, "broker_queue": "lab.transfer"}
    assert shown["broker_url"]["value"] == "redis://:****@127.0.0.1:6379/3"
    assert shown["agent_key"] == {"value": "******** (set)", "from": "AGENT_KEY"}
    assert key not in result.stdout and "pw-123" not in result.stdout


def test_a_configuration_error_exits_78_without_a_traceback(tmp_path: Path):
    result = _agent("run", "--site", "lab", env={"AGENT_HEARTBEAT_INTERVAL": "often", "HUB_VAR_DIR": str(tmp_path)})
    assert result.returncode == 78
    assert "heartbeat_interval" in result.stderr and "Traceback" not in result.stderr
