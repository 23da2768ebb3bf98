"""docs/runbook.md holds the target of every alert's runbook_url, and its commands are today's CLI."""

from __future__ import annotations

import functools
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK = ROOT / "docs/runbook.md"
RULES = ROOT / "deploy/prometheus/authgw-alerts.yml"
RUNBOOK_URL = "https://authgw.invalid/docs/runbook.md"  # the placeholder the install replaces

MODES = {"auto", "force-standin", "force-issuer"}


def _slug(heading: str) -> str:
    """The anchor GitHub and GitLab give a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(text: str) -> set[str]:
    return {_slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", text, re.MULTILINE)}


def _alert_urls() -> dict[str, set[str]]:
    """Alert name -> the runbook_url annotations of its rules."""
    urls: dict[str, set[str]] = {}
    name = ""
    for line in RULES.read_text().splitlines():
        if alert := re.match(r"\s*- alert: (\S+)", line):
            name = alert.group(1)
            urls.setdefault(name, set())
        elif url := re.match(r'\s*runbook_url: "([^"]+)"', line):
            urls[name].add(url.group(1))
    return urls


def test_every_alert_links_to_its_own_section() -> None:
    """Each alert's runbook_url is the runbook's section named after the alert, and that section exists."""
    anchors = _anchors(RUNBOOK.read_text())
    urls = _alert_urls()
    assert len(urls) >= 15
    for alert, found in urls.items():
        assert found == {f"{RUNBOOK_URL}#{alert.lower()}"}, alert
        assert alert.lower() in anchors, f"docs/runbook.md has no section '### {alert}'"


def test_internal_links_resolve() -> None:
    """Every (#anchor) link inside the runbook names one of its headings."""
    text = RUNBOOK.read_text()
    links = set(re.findall(r"\]\(#([^)]+)\)", text))
    assert links
    assert links - _anchors(text) == set()


def _commands() -> list[list[str]]:
    """`authgw ...` lines of the runbook's sh blocks, without comments and pipes."""
    blocks = re.findall(r"```sh\n(.*?)```", RUNBOOK.read_text(), re.DOTALL)
    lines = [
        line.split("#", 1)[0].split("|", 1)[0].strip() for block in blocks for line in block.splitlines()
    ]
    return [shlex.split(line) for line in lines if line.startswith("authgw ")]


@functools.cache
def _help(*command: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", *command, "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, (command, done.stderr)
    return done.stdout


def test_runbook_commands_use_real_subcommands_and_flags() -> None:
    """Each `authgw` command in the runbook names a sub-command and flags its --help lists."""
    commands = _commands()
    assert len(commands) >= 10
    top = _help()
    for words in commands:
        command = [words[1]]
        assert re.search(rf"^  {re.escape(words[1])}\s", top, re.MULTILINE), words
        if words[1] == "standin":
            command.append(words[2])
        if words[1] == "mode":
            assert words[2] in MODES, words
        flags = {w.split("=", 1)[0] for w in words if w.startswith("--")}
        listed = set(re.findall(r"--[a-z][a-z-]*", _help(*command)))
        assert flags <= listed, (words, flags - listed)


def test_command_check_catches_a_wrong_flag() -> None:
    """The flag check is not blind: a flag settle does not take is missing from its help."""
    assert "--config" in _help("settle")
    assert "--dead-letters" not in _help("settle")
