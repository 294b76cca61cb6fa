"""What a running service's /metrics says, for tests and benchmarks that start processes."""

from __future__ import annotations

import re
import urllib.request


def assigned_partitions(port: int) -> float:
    """Input partitions the consumer on `port` holds now; 0 while it is not serving metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics/", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return 0
    match = re.search(r"^syncstatus_consumer_assigned_partitions (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0
