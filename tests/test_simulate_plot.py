"""``--plot``: a PNG with the completion-time CDF and the success rates."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from saga import InvalidInput
from saga.simulate import Scenario, build_report, draw, plot, simulate
from tests.fixtures.simulate_sagas import trip


def test_writes_a_png_with_two_charts(tmp_path: Path) -> None:
    scenario = Scenario.parse(fail=["book_hotel=0.4"], latency=["book_flight=exp:0.3"])
    report = build_report(simulate(trip, scenario, runs=60, seed=3), samples=2000)
    path = plot(report, tmp_path / "policy.png")
    assert path.exists()
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (1100, 450)
    figure = draw(report)
    cdf, rates = figure.axes
    assert len(figure.axes) == 2
    assert cdf.get_title() == "time to completion" and len(cdf.get_lines()) == 2
    assert rates.get_title() == "success rate"
    assert [t.get_text() for t in rates.get_xticklabels()] == [
        "step book_flight", "step book_hotel", "step charge_card", "saga"]


@pytest.mark.parametrize(("name", "message"), [
    ("policy.jpg", "the file name must end in .png"),
    ("missing/policy.png", "no folder"),
])
def test_a_bad_path_is_refused(tmp_path: Path, name: str, message: str) -> None:
    report = build_report(simulate(trip, Scenario(), runs=2, seed=1), samples=10)
    with pytest.raises(InvalidInput, match=message):
        plot(report, tmp_path / name)
    assert list(tmp_path.iterdir()) == []
