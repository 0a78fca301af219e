"""Which git sources a build accepts: schemes, credentials, local sources, and where hosts resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.builds.sources import check_addresses, default_name, parse_git_url
from orchestrator.errors import InvalidInput


def test_https_url_is_accepted_with_host_and_port() -> None:
    src = parse_git_url("https://github.com/owner/repo.git", allow_local=False)
    assert (src.kind, src.host, src.port, src.loopback) == ("https", "github.com", 443, False)
    assert parse_git_url("https://git.example.com:8443/r", allow_local=False).port == 8443


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ssh://git@github.com/o/r.git", "scheme"),
        ("git://github.com/o/r.git", "scheme"),
        ("ftp://github.com/o/r.git", "scheme"),
        ("git@github.com:o/r.git", "ssh"),
        ("ext::sh -c id", "transport"),
        ("https://user:pw@github.com/o/r.git", "credentials"),
        ("https://token@github.com/o/r.git", "credentials"),
        ("https://github.com/o/r.git?x=1", "query"),
        ("https://github.com/o/r.git#main", "fragment"),
        ("https://github.com", "no repository path"),
        ("https://bad_host!/r", "invalid host"),
        ("http://github.com/o/r.git", "plain http"),
        ("-uhttps://x/y", "start with '-'"),
        ("https://github.com/o/r\n.git", "control characters"),
        ("", "empty"),
    ],
)
def test_refused_urls(url: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_git_url(url, allow_local=True)
    assert words in err.value.message


@pytest.mark.parametrize(
    "url", ["/srv/git/app", "file:///srv/git/app", "http://127.0.0.1:9/r.git", "https://localhost/r"]
)
def test_local_sources_need_the_operator_setting(url: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_git_url(url, allow_local=False)
    assert "allow_local_git" in err.value.hint


def test_local_sources_when_allowed() -> None:
    assert parse_git_url("/srv/git/app", allow_local=True).url == "file:///srv/git/app"
    assert parse_git_url("file:///srv/git/app", allow_local=True).url == "file:///srv/git/app"
    src = parse_git_url("http://127.0.0.1:9418/r.git", allow_local=True)
    assert (src.kind, src.loopback, src.port) == ("https", True, 9418)


def test_http_to_other_hosts_stays_refused_when_local_is_allowed() -> None:
    with pytest.raises(InvalidInput):
        parse_git_url("http://example.com/r.git", allow_local=True)


@pytest.mark.parametrize("url", ["/srv/../etc", "relative/path", "file://host/srv/x"])
def test_odd_local_paths_are_refused(url: str) -> None:
    with pytest.raises(InvalidInput):
        parse_git_url(url, allow_local=True)


def test_the_data_dir_is_never_a_source(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for url in (str(data), str(data / "sub"), str(tmp_path), f"file://{data}"):
        with pytest.raises(InvalidInput) as err:
            parse_git_url(url, allow_local=True, data_dir=data)
        assert "data dir" in err.value.message
    assert parse_git_url(str(tmp_path / "repo"), allow_local=True, data_dir=data).kind == "local"


def test_public_addresses_pass() -> None:
    assert check_addresses("github.com", ["140.82.121.4", "2606:50c0:8000::154"], allow_private=False)


@pytest.mark.parametrize(
    ("address", "words"),
    [
        ("10.1.2.3", "non-public"),
        ("192.168.1.1", "non-public"),
        ("172.17.0.1", "non-public"),
        ("100.64.0.1", "non-public"),
        ("169.254.1.1", "non-public"),
        ("fd00::1", "non-public"),
        ("fe80::1%eth0", "non-public"),
        ("::ffff:10.0.0.1", "non-public"),
        ("127.0.0.1", "this host"),
        ("::1", "this host"),
        ("0.0.0.0", "unusable"),
        ("224.0.0.1", "unusable"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
    ],
)
def test_forbidden_addresses(address: str, words: str) -> None:
    with pytest.raises(InvalidInput) as err:
        check_addresses("evil.example", ["140.82.121.4", address], allow_private=False)
    assert words in err.value.message


def test_operator_may_allow_private_but_never_metadata_or_loopback() -> None:
    assert check_addresses("git.corp", ["10.1.2.3", "fd00::1"], allow_private=True)
    with pytest.raises(InvalidInput):
        check_addresses("meta", ["169.254.169.254"], allow_private=True)
    with pytest.raises(InvalidInput):
        check_addresses("me", ["127.0.0.1"], allow_private=True)
    assert check_addresses("localhost", ["127.0.0.1", "::1"], allow_private=False, allow_loopback=True)


def test_no_addresses_is_refused() -> None:
    with pytest.raises(InvalidInput):
        check_addresses("nothing", [], allow_private=True)


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://github.com/owner/My_App.git", "my-app"),
        ("https://github.com/owner/repo/", "repo"),
        ("file:///srv/git/site.git", "site"),
        ("https://x.org/o/123", "app-123"),
        ("https://x.org/o/---", "app"),
    ],
)
def test_default_name(url: str, name: str) -> None:
    assert default_name(url) == name
