"""Trigger discovery (issue 13, item 1): statistics against known answers, planted triggers
found through the real stream and profile store, the classifier against its baselines, the CLI
and the admin route."""

from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from pydantic import SecretStr
from redis.asyncio import Redis

from assembly.insights.command import parse_window
from assembly.insights.exceptions import InvalidWindow
from assembly.insights.reader import Bounds
from assembly.insights.sequences import frequent_sequences
from assembly.insights.service import run_insights, write_reports
from assembly.insights.stats import TwoByTwo, bh_adjust, difference_ci, effect, odds_ratio
from assembly.insights.table import Row
from assembly.targeting.compiler import compile_condition
from core.redis import Keys
from tests.assembly.insights_population import GOAL, plant
from tests.support.app import make_settings, running_app
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "insights-admin-token"
PLANTED = [{"signals.cartAbandoned": True}, {"signals.visits": {"$gte": 3}}]
WEEK = 7 * 86400.0


class TestStatisticsKnownAnswers:
    def test_fisher_exact_is_the_lady_tasting_tea(self) -> None:
        # Fisher (1935): 3 of 4 cups right each way; two-sided p = 34/70
        p = effect(TwoByTwo(conv_with=3, n_with=4, conv_without=1, n_without=4)).p_value
        assert p == pytest.approx(34 / 70)

    def test_odds_ratio_and_woolf_interval(self) -> None:
        # a=10 b=20 c=5 d=40: OR 4, se sqrt(1/10+1/20+1/5+1/40) = sqrt(0.375)
        ratio, (low, high) = odds_ratio(TwoByTwo(10, 30, 5, 45))
        half = 1.959964 * math.sqrt(0.375)
        assert ratio == pytest.approx(4.0)
        assert low == pytest.approx(4.0 * math.exp(-half), rel=1e-5)
        assert high == pytest.approx(4.0 * math.exp(half), rel=1e-5)
        assert (low, high) == pytest.approx((1.2045, 13.284), rel=1e-3)

    def test_an_empty_cell_gets_the_haldane_correction(self) -> None:
        ratio, _ = odds_ratio(TwoByTwo(0, 10, 5, 10))  # cells 0,10,5,5 → +0.5 each
        assert ratio == pytest.approx((0.5 * 5.5) / (10.5 * 5.5))

    def test_rate_difference_wald_interval(self) -> None:
        low, high = difference_ci(TwoByTwo(10, 30, 5, 45))
        assert (low, high) == pytest.approx((0.03017, 0.41428), abs=1e-4)

    def test_benjamini_hochberg_matches_hand_computation(self) -> None:
        # sorted p·m/rank with the running minimum from the top (R: p.adjust(p, "BH"))
        assert bh_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.02, 0.04, 0.04, 0.02])
        assert bh_adjust([0.01, 0.02, 0.03, 0.04, 0.05]) == pytest.approx([0.05] * 5)
        assert bh_adjust([]) == []

    def test_lift_is_the_rate_with_over_the_base_rate(self) -> None:
        e = effect(TwoByTwo(conv_with=30, n_with=100, conv_without=10, n_without=100))
        assert e.lift == pytest.approx(0.30 / 0.20)
        assert e.difference == pytest.approx(0.20)


class TestSequences:
    def test_ngrams_count_once_per_visitor_with_their_lift(self) -> None:
        def row(converted: bool, *names: str) -> Row:
            return Row("v", converted, {}, list(names))

        rows = [
            row(True, "page", "page", "Product Added"),
            row(True, "Product Added"),
            row(False, "page"),
            row(False, "page", "Video Played"),
        ]
        found = {s.names: s for s in frequent_sequences(rows, min_support=0.25)}
        added = found[("Product Added",)]
        assert (added.visitors, added.conversion_rate, added.lift) == (2, 1.0, 2.0)
        assert found[("page", "Product Added")].visitors == 1  # page, page collapsed
        assert found[("page",)].lift == pytest.approx((1 / 3) / 0.5)


def test_windows_parse_and_bad_ones_are_refused() -> None:
    assert parse_window("7d") == WEEK
    assert parse_window("90m") == 5400
    for bad in ("7", "d", "-1d", "0h", "7w"):
        with pytest.raises(InvalidWindow):
            parse_window(bad)


_PLANTED: dict[str, Any] = {}


@pytest.fixture
async def planted(redis: Redis, keys: Keys) -> dict[str, Any]:
    """One planted population and its report, shared by the tests that only read the report."""
    if not _PLANTED:
        now = time.time()
        await plant(redis, keys, visitors=1500, seed=7, now=now)
        bounds = Bounds()
        _PLANTED.update(
            await run_insights(redis, keys, goal=GOAL, window_seconds=WEEK, bounds=bounds, now=now)
        )
    return _PLANTED


class TestPlantedTriggers:
    async def test_the_planted_triggers_are_in_the_top_three(self, planted: dict[str, Any]) -> None:
        top = [c["condition"] for c in planted["candidates"][:3]]
        for trigger in PLANTED:
            assert trigger in top

    async def test_noise_is_no_candidate(self, planted: dict[str, Any]) -> None:
        features = {c["feature"] for c in planted["candidates"]}
        assert not features & {"traits.plan", "audiences:newsletter"}

    async def test_candidates_compile_and_cover_what_they_claim(
        self, planted: dict[str, Any]
    ) -> None:
        cart = next(c for c in planted["candidates"] if c["feature"] == "signals.cartAbandoned")
        assert 0.25 < cart["coverage"] < 0.35  # 30 % were planted as abandoners
        assert cart["lift"] > 1.5
        for candidate in planted["candidates"]:
            matches = compile_condition(candidate["condition"])
            assert matches({"signals": {}, "traits": {}, "audiences": []}) is False
            assert candidate["qValue"] < 0.05

    async def test_correlations_carry_intervals_and_corrected_p_values(
        self, planted: dict[str, Any]
    ) -> None:
        for c in planted["correlations"]:
            assert c["differenceCi"][0] <= c["difference"] <= c["differenceCi"][1]
            assert c["oddsRatioCi"][0] <= c["oddsRatio"] <= c["oddsRatioCi"][1]
            assert c["qValue"] >= c["pValue"]

    async def test_the_classifier_beats_the_baselines_on_held_out_visitors(
        self, planted: dict[str, Any]
    ) -> None:
        model = planted["model"]
        assert model["auc"] > model["baselineAuc"] == 0.5
        assert model["auc"] > model["bestRuleAuc"]
        top = {i["feature"] for i in model["importance"][:3]}
        assert "signals.cartAbandoned" in top
        assert top & {"signals.visits", "signals.sessions"}

    async def test_sequences_before_conversion_have_lift(self, planted: dict[str, Any]) -> None:
        added = next(s for s in planted["sequences"] if s["names"] == ["Product Added"])
        assert added["lift"] > 1.5

    async def test_reports_are_written_whole(self, planted: dict[str, Any], tmp_path: Path) -> None:
        json_path, html_path = write_reports(planted, tmp_path)
        assert orjson.loads(json_path.read_bytes())["goal"] == GOAL
        page = html_path.read_text()
        assert page.count("data:image/png;base64,") >= 3  # lift, ROC, importance
        assert _names(tmp_path) == ["insights.html", "insights.json"]  # no temporary files left


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


class TestBounds:
    async def test_a_100k_event_history_is_read_within_the_caps(
        self, redis: Redis, keys: Keys
    ) -> None:
        now = time.time()
        await plant(redis, keys, visitors=8700, seed=3, now=now, profiles=False)
        assert await redis.xlen(keys.events_stream) >= 100_000
        bounds = Bounds(max_events=60_000, max_visitors=3_000)
        report = await run_insights(
            redis, keys, goal=GOAL, window_seconds=WEEK, bounds=bounds, now=now
        )
        assert report["eventsRead"] <= 60_000
        assert report["visitors"] <= 3_000
        assert set(report["truncated"]) & {"max_events", "max_visitors"}
        assert report["candidates"]

    async def test_the_time_budget_stops_the_reading(self, redis: Redis, keys: Keys) -> None:
        now = time.time()
        await plant(redis, keys, visitors=300, seed=5, now=now)
        bounds = Bounds(time_budget_seconds=1e-9, batch=500)
        report = await run_insights(
            redis, keys, goal=GOAL, window_seconds=WEEK, bounds=bounds, now=now
        )
        assert report["truncated"] == ["time_budget"]
        assert report["eventsRead"] == 500

    async def test_events_before_the_window_are_not_read(self, redis: Redis, keys: Keys) -> None:
        now = time.time()
        await plant(redis, keys, visitors=50, seed=5, now=now)
        later = now + 10 * 86400  # the stream ids are all older than a one-day window then
        report = await run_insights(
            redis, keys, goal=GOAL, window_seconds=86400, bounds=Bounds(), now=later
        )
        assert (report["eventsRead"], report["visitors"]) == (0, 0)


def test_the_cli_writes_both_reports(redis_server: RedisServer, tmp_path: Path) -> None:
    import asyncio

    async def seed() -> None:
        client = Redis.from_url(redis_server.url)
        for key in await client.keys("mbins:*"):
            await client.delete(key)
        await plant(client, Keys("mbins"), visitors=300, seed=11, now=time.time())
        await client.aclose()

    asyncio.run(seed())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "INSIGHTS_"))}
    env.update(REDIS_URL=redis_server.url, REDIS_KEY_PREFIX="mbins")
    out = tmp_path / "reports"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "cli.py"),
            "insights",
            "--goal",
            GOAL,
            "--window",
            "7d",
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "300 visitors" in result.stderr
    assert orjson.loads((out / "insights.json").read_bytes())["visitors"] == 300
    assert "<h1>Insights: Order Completed</h1>" in (out / "insights.html").read_text()


@pytest.fixture
async def admin_client(
    redis: Redis, redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Any]:
    monkeypatch.setenv("INSIGHTS_DIR", str(tmp_path / "insights"))
    settings = make_settings(redis_server.url)
    service = settings.service.model_copy(update={"admin_token": SecretStr(TOKEN)})
    async with running_app(dataclasses.replace(settings, service=service)) as (_, client):
        yield client


class TestAdminRoute:
    async def test_no_token_is_401(self, admin_client: Any) -> None:
        answer = await admin_client.get("/admin/insights")
        assert answer.status_code == 401
        assert answer.json()["error"] == "Unauthorized"

    async def test_no_report_yet_is_404(self, admin_client: Any) -> None:
        headers = {"authorization": f"Bearer {TOKEN}"}
        for path in ("/admin/insights", "/admin/insights/report.html"):
            answer = await admin_client.get(path, headers=headers)
            assert answer.status_code == 404
            assert answer.json()["error"] == "InsightsNotFound"

    async def test_the_last_report_is_served_with_its_html(
        self, admin_client: Any, redis: Redis, tmp_path: Path
    ) -> None:
        keys = Keys("mbtest")
        now = time.time()
        await plant(redis, keys, visitors=200, seed=13, now=now)
        report = await run_insights(
            redis, keys, goal=GOAL, window_seconds=WEEK, bounds=Bounds(), now=now
        )
        write_reports(report, tmp_path / "insights")
        headers = {"authorization": f"Bearer {TOKEN}"}
        answer = await admin_client.get("/admin/insights", headers=headers)
        assert answer.status_code == 200
        assert answer.json()["visitors"] == 200
        assert answer.json()["html"] == "/admin/insights/report.html"
        page = await admin_client.get(answer.json()["html"], headers=headers)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
