"""A worker process with OpenTelemetry's SDK that prints the spans it made as JSON lines.

    python -m tests.procs.otel_worker --url URL [--crash]

Drives ``traced`` sagas until none is running (crossing backoffs), then prints one JSON object
per finished span. With ``--crash`` the first step kills the process mid-attempt
(as a machine dying would), leaving the saga leased to a dead worker.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from saga import Coordinator, EventStore, Saga, StepContext

LEASE = 1.0
CRASH = "SAGA_TEST_CRASH"

traced = Saga("traced")


@traced.step
def reserve(ctx: StepContext) -> str:
    """Dies here when told to, before it answers."""
    if os.environ.get(CRASH):
        os._exit(9)
    return "reserved"


@traced.step
def confirm(ctx: StepContext) -> str:
    return "confirmed"


def main(argv: list[str] | None = None) -> int:
    """Work until idle and print the spans."""
    p = argparse.ArgumentParser(prog="otel_worker")
    p.add_argument("--url", required=True)
    p.add_argument("--crash", action="store_true")
    args = p.parse_args(argv)
    if args.crash:
        os.environ[CRASH] = "1"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with EventStore(args.url) as store, Coordinator(store, [traced], lease=LEASE, poll_interval=0.05) as c:
        drives = c.work(until_idle=True)
        while store.find(status="running", limit=1):
            time.sleep(0.05)
            drives += c.work(until_idle=True)
    for span in exporter.get_finished_spans():
        ctx = span.get_span_context()
        assert ctx is not None
        print(json.dumps({
            "name": span.name,
            "trace_id": format(ctx.trace_id, "032x"),
            "span_id": format(ctx.span_id, "016x"),
            "parent": None if span.parent is None else format(span.parent.span_id, "016x"),
            "links": [{"trace_id": format(link.context.trace_id, "032x"),
                       "span_id": format(link.context.span_id, "016x")} for link in span.links],
            "attributes": dict(span.attributes or {}),
        }))
    print(json.dumps({"drives": drives}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
