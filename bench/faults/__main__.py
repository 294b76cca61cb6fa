"""Fault campaign: the real service under crashes and outages while a messy stream flows.

    python -m bench.faults [--quick] [--faults N] [--connections N] [--seed N] [--keep]
                           [--mutate-relay]

Starts its own PostgreSQL and Tansu, runs `syncstatus run` as processes (through
`bench.faults.crashpoints`, which lets the campaign aim a kill at two boundaries), and
publishes a stream of scenarios (`stories.py`): retries, failures, aggregators, account
events, stale, illegal and superseded events, events parked for good, abandoned
authorizations and stalled stages that the clock must end, and every kind of invalid message.
Faults of eight kinds are injected in a seeded order: SIGKILL at random, SIGKILL between the
database commit and the offset commit, SIGKILL between the broker's acknowledgement and
marking published, PostgreSQL killed -9, the broker paused, the broker restarted empty (the
ledger republishes what it lost), a second instance joining and dying, the status relay's loop
dying alone.

Judged from the outside: every status record on the topic, and every history row, against
what `oracle.py` computes from the stories and the declared machine (from, to, cause, session,
error, sequence); lost and applied twice counted from the topic and from the tables; every
invalid message's dead letter by its origin partition and offset (reason and key), every
refused event's by its id. The last line says it all, and starts with FAILED if anything
failed:

    faults: N injected (K kinds); lost L on the topic, L2 in the tables; applied twice T;
    wrong records W; sequence gaps G; dead-lettered D/M; worst recovery R s

`--quick` (10 faults, every kind, under two minutes) is what the e2e tier runs; the default is
the full campaign (100 faults). `--mutate-relay` corrupts every seventh status record, to show
the campaign catches it.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.faults.campaign import FULL, QUICK, Campaign
from bench.faults.processes import log
from syncstatus.runtime.logs import configure_logging

DEFAULT_SEED = 20260101


def last_line(campaign: Campaign, verdict) -> str:  # noqa: ANN001
    kinds = len({f.kind for f in campaign.faults})
    figures = (
        f"faults: {len(campaign.faults)} injected ({kinds} kinds); lost {verdict.lost_topic} on "
        f"the topic, {verdict.lost_tables} in the tables; applied twice {verdict.twice}; "
        f"wrong records {verdict.wrong}; sequence gaps {verdict.gaps}; dead-lettered "
        f"{verdict.dead_lettered}/{verdict.to_dead_letter}; worst recovery "
        f"{campaign.worst_recovery():.1f} s"
    )
    return f"FAILED: {'; '.join(verdict.problems)}; {figures}" if verdict.problems else figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small campaign CI runs")
    parser.add_argument("--faults", type=int, help="override the profile's number of faults")
    parser.add_argument("--connections", type=int, help="override the profile's connections")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--log-level", default="WARNING", help="the services' SYNCSTATUS_LOG_LEVEL")
    parser.add_argument("--keep", action="store_true", help="keep the work dir and logs")
    parser.add_argument("--mutate-relay", action="store_true", help="break the status relay")
    args = parser.parse_args(argv)
    configure_logging("WARNING", json=False)
    profile = QUICK if args.quick else FULL
    overrides = {k: v for k, v in (("faults", args.faults), ("connections", args.connections)) if v}
    profile = dataclasses.replace(profile, **overrides)
    started = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    campaign = Campaign(profile, args.seed, work, args.log_level, args.mutate_relay)
    line = "FAILED: the campaign did not finish"
    try:
        verdict = campaign.run()
        line = last_line(campaign, verdict)
    except Exception as error:
        log(f"campaign failed: {error!r}")
        campaign.print_logs()
        line = f"FAILED: the campaign broke off: {error!r}"
    finally:
        campaign.stop()
        failed = line.startswith("FAILED")
        if failed:
            campaign.print_logs()
        if args.keep or failed:
            shutil.rmtree(work / "pg", ignore_errors=True)
            log(f"logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        log(f"{'quick' if args.quick else 'full'} campaign: {time.monotonic() - started:.0f} s")
    log(line)
    return 1 if line.startswith("FAILED") else 0


if __name__ == "__main__":
    sys.exit(main())
