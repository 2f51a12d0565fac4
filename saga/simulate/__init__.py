"""The fault simulator: choosing retry policies with numbers.

It runs a saga's real definition on the real coordinator many times, with
simulated failures and latencies on a virtual clock, and sets what happened
beside what the retry policies predict analytically.

    scenario = Scenario.parse(fail=["charge=0.2"], latency=["charge=exp:0.3"])
    report = build_report(simulate(saga, scenario, runs=1000, seed=1))
    print(report.table())
"""

from saga.simulate.distributions import Distribution, Empirical, Exponential, Fixed, LogNormal, Uniform
from saga.simulate.fromlog import LogProfile, StepProfile, read_profile
from saga.simulate.intervals import mean_interval, percentile, percentile_interval, wilson
from saga.simulate.measure import Figure, Summary, summarise
from saga.simulate.model import CallModel
from saga.simulate.plot import PlotUnavailable, check_plot_path, draw, plot, require_matplotlib
from saga.simulate.predict import Effect, SagaPrediction, StepPrediction, predict
from saga.simulate.report import Disagreement, Report, build_report
from saga.simulate.runner import Measurements, SagaRun, SimulatedFault, StepRun, simulate
from saga.simulate.spec import Scenario, parse_distribution, parse_policy

__all__ = [
    "CallModel",
    "Disagreement",
    "Distribution",
    "Effect",
    "Empirical",
    "Exponential",
    "Figure",
    "Fixed",
    "LogNormal",
    "LogProfile",
    "Measurements",
    "PlotUnavailable",
    "Report",
    "SagaPrediction",
    "SagaRun",
    "Scenario",
    "SimulatedFault",
    "StepPrediction",
    "StepProfile",
    "StepRun",
    "Summary",
    "Uniform",
    "build_report",
    "check_plot_path",
    "draw",
    "mean_interval",
    "parse_distribution",
    "parse_policy",
    "percentile",
    "percentile_interval",
    "plot",
    "predict",
    "read_profile",
    "require_matplotlib",
    "simulate",
    "summarise",
    "wilson",
]
