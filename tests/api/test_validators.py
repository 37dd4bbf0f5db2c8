"""sites.validators: the rules several estate resources share (pure functions, no database)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from sites.validators import (
    absolute_path_problem,
    ancestors,
    clean_absolute_path,
    clean_relative_or_absolute_path,
    is_inside,
    problem,
    validate_host,
    validate_nfs_endpoint,
    validate_secret,
    validate_smb_endpoint,
    validate_url_endpoint,
)


@pytest.mark.parametrize(("value", "options", "expected"), [
    ("//a//b/", {}, "/a/b"),
    ("/a/./b", {"resolve_dots": True}, "/a/b"),
    ("/", {"allow_root": True}, "/"),
    ("/a\\b", {}, "/a\\b"),  # a backslash is an ordinary character of a POSIX name...
])
def test_clean_absolute_path_normalises(value, options, expected):
    assert clean_absolute_path(value, **options) == expected


@pytest.mark.parametrize(("value", "options", "message"), [
    ("a/b", {}, "absolute"),
    ("/a/../b", {"resolve_dots": True}, ".."),
    ("/a\\..\\b", {}, ".."),  # ...but never a way to climb
    ("/a/./b", {}, "'.'"),
    ("/", {"resolve_dots": True}, "root"),
    ("/a\nb", {}, "control"),
    ("/" + "a" * 4096, {}, "longer"),
    (None, {}, "string"),
])
def test_clean_absolute_path_refuses(value, options, message):
    with pytest.raises(ValidationError) as caught:
        clean_absolute_path(value, **options)
    assert message in caught.value.messages[0]


def test_the_strict_form_names_the_normal_form():
    assert absolute_path_problem("/etc/key.json") is None
    assert "use '/etc/key.json'" in absolute_path_problem("/etc/./key.json")
    assert "root" in absolute_path_problem("/")


def test_relative_or_absolute_paths_keep_their_kind():
    assert clean_relative_or_absolute_path("a//b/./") == "a/b"
    assert clean_relative_or_absolute_path("/x//") == "/x"
    assert clean_relative_or_absolute_path("/") == "/"
    assert clean_relative_or_absolute_path("./") == ""
    assert problem(clean_relative_or_absolute_path, "a/../b")


def test_inside_and_ancestors():
    assert is_inside("/a/b", "/a") and is_inside("/a", "/a") and not is_inside("/a/bc", "/a/b")
    assert ancestors("/a/b/c") == ["/a", "/a/b"]


@pytest.mark.parametrize("host", ["minio", "s3.example.org", "10.0.0.5", "::1", "[2001:db8::1]"])
def test_hosts(host):
    validate_host(host)


@pytest.mark.parametrize("host", ["example.org.", "-a.example.org", "a_b", "fe80::1%eth0", "a" * 64, "h:9000"])
def test_bad_hosts(host):
    assert problem(validate_host, host)


@pytest.mark.parametrize(("check", "value"), [
    (validate_url_endpoint, "minio.local:9000"), (validate_url_endpoint, "https://[2001:db8::1]:443/"),
    (validate_nfs_endpoint, "nas01:/export/a"), (validate_smb_endpoint, "//filer/share"),
    (validate_smb_endpoint, "filer"),
])
def test_endpoints(check, value):
    check(value)


@pytest.mark.parametrize(("check", "value"), [
    (validate_url_endpoint, "ftp://host"), (validate_url_endpoint, "host:0"), (validate_url_endpoint, "http://"),
    (validate_url_endpoint, "[zz::1]"), (validate_url_endpoint, "::1"), (validate_nfs_endpoint, "nas01:export"),
    (validate_smb_endpoint, "\\\\filer\\share"), (validate_smb_endpoint, "//bad_host/share"),
])
def test_bad_endpoints(check, value):
    assert problem(check, value)


@pytest.mark.parametrize("secret", ["fernet:gAAAA-token", "has space", "tab\there", "bell\x07"])
def test_secrets_are_refused_without_being_quoted(secret):
    message = problem(validate_secret, secret)
    assert message and secret not in message
