"""How fast the simulator runs: sagas of three steps, with retries and backoffs of seconds.

Runs the real coordinator on the in-memory store and a virtual clock (no
real time is spent in backoffs or latencies), prints the real time the runs
took (and the CPU time, which a busy machine does not inflate), sagas/s and
attempts/s, the time to build the report (predictions and intervals), and
the time 10,000 runs would take at that rate.

    python benchmarks/simulate_throughput.py --runs 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from saga import Retry, Saga, StepContext
from saga.simulate import Scenario, build_report, simulate

TARGET_RUNS = 10_000


def build_saga() -> Saga:
    """Three steps with backoffs of seconds, each undone when a later one fails."""
    saga = Saga("bench-simulate")

    def unreachable(ctx: StepContext) -> None:
        raise AssertionError("the simulator replaces every step's work")

    policies = {
        "reserve": Retry.fixed(2.0, attempts=4),
        "charge": Retry.exponential(initial=1.0, maximum=30.0, attempts=5),
        "ship": Retry.fixed(5.0, attempts=3),
    }
    for name, retry in policies.items():
        saga.step(name=name, retry=retry, timeout=10.0)(unreachable).compensate(unreachable)
    return saga


SCENARIO = Scenario.parse(
    fail=["reserve=0.2", "charge=0.3", "ship=0.1"],
    latency=["reserve=exp:0.2", "charge=lognormal:-1,0.8", "ship=uniform:0.5,2"],
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; prints one line per figure."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    saga = build_saga()
    cpu = time.process_time()
    m = simulate(saga, SCENARIO, runs=args.runs, seed=args.seed)
    cpu = time.process_time() - cpu
    began = time.perf_counter()
    report = build_report(m)
    reporting = time.perf_counter() - began
    attempts = sum(s.attempts for run in m.runs for s in run.steps.values())
    print(f"{args.runs} sagas of 3 steps, {attempts} attempts, seed {args.seed}")
    print(f"simulation        {m.seconds:8.2f} s   {args.runs / m.seconds:8.0f} sagas/s   "
          f"{attempts / m.seconds:8.0f} attempts/s")
    print(f"  of which CPU    {cpu:8.2f} s   (this process; on a busy machine the wall time "
          "above is longer)")
    print(f"report            {reporting:8.2f} s")
    estimate = m.seconds * TARGET_RUNS / args.runs + reporting
    print(f"{TARGET_RUNS} runs (est.) {estimate:8.2f} s")
    completed = report.summary.saga["completed"]
    print(f"completed share   {completed.value:.4f} (predicted {report.prediction.completed:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
