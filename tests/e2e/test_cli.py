"""The README's first command, run as a user would, then the CLI against what it started."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest

from syncstatus.consumers.reader import TopicReader
from syncstatus.kafka import client_config
from syncstatus.schemas.messages import CommandMessages
from syncstatus.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


class Output:
    """Collects a process's output in a thread, so a test can wait for a line without blocking."""

    def __init__(self, process: subprocess.Popen) -> None:
        self.text = ""
        self._process = process
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self._process.stdout:
            self.text += line

    def wait_for(self, pattern: str, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if re.search(pattern, self.text):
                return self.text
            if self._process.poll() is not None:
                time.sleep(0.2)
                break
            time.sleep(0.1)
        if re.search(pattern, self.text):
            return self.text
        pytest.fail(f"no {pattern!r} within {timeout_s} s; output:\n{self.text}")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def syncstatus(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "syncstatus.cli", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_make_run_shows_the_demo_reaching_synced_and_stops_cleanly_on_ctrl_c(tmp_path):
    data_dir = tmp_path / "dev"
    make = subprocess.Popen(
        ["make", "--no-print-directory", "run", f"DATA_DIR={data_dir}"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    out = Output(make)
    try:
        output = out.wait_for(r"demo (passed|FAILED)", 180)
        assert "demo passed: every event gave the expected status" in output
        assert re.search(r"#16\s+SYNC_COMPLETED\s+18 Processed -> 19 Synced", output)
        assert "dead letter: illegal_transition" in output
        assert "Waiting For Webhook" in output
        kafka = re.search(r"Kafka:\s+(\S+)", output).group(1)
        database = re.search(r"PostgreSQL: (\S+)", output).group(1)
        env = {"SYNCSTATUS_BOOTSTRAP_SERVERS": kafka, "SYNCSTATUS_DATABASE_URL": database}
        connection = re.search(r"(facebook_ads-\w+)\s+#1 ", output).group(1)

        history = syncstatus("history", connection, env=env)
        assert history.returncode == 0, history.stderr
        lines = history.stdout.splitlines()
        assert lines[0].split()[:3] == ["seq", "occurred", "at"]
        assert re.search(r"^16 .*SYNC_COMPLETED\s+18 Processed\s+19 Synced", lines[16])
        assert len(lines) == 17
        assert syncstatus("history", "no-such-connection", env=env).returncode == 1

        tail = subprocess.Popen(
            [sys.executable, "-m", "syncstatus.cli", "tail", "--from-beginning"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        tailed = Output(tail).wait_for(rf"{connection}\s+#16\s+18 Processed -> 19 Synced", 30)
        tail.send_signal(signal.SIGINT)
        tail.wait(10)
        assert "SYNC_COMPLETED" in tailed

        api, token = re.search(r"Dashboard:\s+(\S+)/\s+\(API token: (\S+)\)", output).groups()
        listed = get_json(f"{api}/connections?search=facebook_ads")["items"]
        line = next(item for item in listed if item["connection_id"] == connection)
        assert (line["status"]["code"], line["credentials"]) == (19, "Active")
        (session,) = get_json(f"{api}/connections/{connection}/sessions")["sessions"]
        assert (session["final_status"]["code"], session["errors"]) == (19, 1)
        reconnect = urllib.request.Request(
            f"{api}/connections/{connection}/reconnect",
            method="POST",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(reconnect, timeout=10) as response:
            issued = json.load(response)
        assert response.status == 202
        commands = TopicReader(
            client_config(Settings(bootstrap_servers=kafka)),
            [Settings().topic_commands],
            from_beginning=True,
        )
        published, deadline = [], time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            c["command_id"] == uuid.UUID(issued["command_id"]) for c in published
        ):
            published += [CommandMessages().decode(r.value) for r in commands.poll(200)]
        commands.close()
        assert [c["type"] for c in published if c["connection_id"] == connection] == ["RECONNECT"]
    finally:
        os.killpg(make.pid, signal.SIGINT)
        # make itself always dies of the SIGINT; the service below it must stop cleanly.
        assert make.wait(30) in (0, -signal.SIGINT)
    assert out.wait_for(r"\nstopped\n", 5)
    leftovers = [
        p
        for p in psutil.process_iter(["cmdline"])
        if str(data_dir) in " ".join(p.info["cmdline"] or [])
    ]
    assert leftovers == []


def test_diagram_prints_the_machine_as_mermaid():
    result = syncstatus("diagram", env={})
    assert result.returncode == 0
    assert result.stdout.startswith("stateDiagram-v2")
    assert '"Waiting For Webhook"' in result.stdout
