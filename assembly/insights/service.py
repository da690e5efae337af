"""Run trigger discovery end to end and write the reports (JSON and HTML) atomically."""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import structlog
from redis.asyncio import Redis

from assembly.insights.candidates import candidates
from assembly.insights.config import HTML_NAME, JSON_NAME
from assembly.insights.html import render
from assembly.insights.model import ModelResult, fit
from assembly.insights.reader import Bounds, read_recorded
from assembly.insights.rules import Rule, best_per_feature, rules_for, score_rules
from assembly.insights.sequences import frequent_sequences
from assembly.insights.table import Table, build_table, features_of
from core.progress import Progress, no_progress
from core.redis import Keys

log = structlog.get_logger()


async def run_insights(
    redis: Redis,
    keys: Keys,
    *,
    goal: str,
    window_seconds: float,
    bounds: Bounds,
    now: float | None = None,
    streams: Sequence[str] | None = None,
    progress: Progress = no_progress,
) -> dict[str, Any]:
    started = time.monotonic()
    recorded = await read_recorded(
        redis,
        keys,
        window_seconds=window_seconds,
        bounds=bounds,
        now=now,
        streams=streams,
        progress=progress,
    )
    table = build_table(recorded, goal)
    progress("analysis", 0, 3)
    report = analyse(table)
    progress("analysis", 3, 3)
    report.update(
        eventsRead=recorded.events_read,
        truncated=recorded.truncated,
        windowStart=recorded.window_start,
        windowEnd=recorded.window_end,
        seconds=round(time.monotonic() - started, 3),
    )
    log.info("insights.run.done", goal=goal, visitors=report["visitors"], seconds=report["seconds"])
    return report


def analyse(table: Table) -> dict[str, Any]:
    rows = table.rows
    converted = np.array([r.converted for r in rows], dtype=bool)
    features = features_of(rows)
    rules = score_rules(rules_for(rows, features), converted)
    best = best_per_feature(rules)
    model = fit(rows, features, best[0] if best else None)
    return {
        "goal": table.goal,
        "visitors": len(rows),
        "converted": int(converted.sum()),
        "baseRate": float(converted.mean()) if rows else 0.0,
        "correlations": [_rule_json(r) for r in best],
        "rulesTested": len(rules),
        "sequences": [_sequence_json(s) for s in frequent_sequences(rows)],
        "model": _model_json(model) if model is not None else None,
        "candidates": [
            {
                "condition": c.condition,
                "feature": c.feature,
                "coverage": c.coverage,
                "conversionRate": c.conversion_rate,
                "lift": c.lift,
                "qValue": c.q_value,
            }
            for c in candidates(best, rows)
        ],
    }


def _rule_json(rule: Rule) -> dict[str, Any]:
    e, t = rule.effect, rule.counts
    assert e is not None  # filled by score_rules
    assert t is not None
    return {
        "feature": rule.feature,
        "condition": rule.condition,
        "nWith": t.n_with,
        "rateWith": t.rate_with,
        "rateWithout": t.rate_without,
        "difference": e.difference,
        "differenceCi": list(e.difference_ci),
        "oddsRatio": e.odds_ratio,
        "oddsRatioCi": list(e.odds_ratio_ci),
        "lift": e.lift,
        "pValue": e.p_value,
        "qValue": rule.q_value,
    }


def _sequence_json(s: Any) -> dict[str, Any]:
    return {
        "names": list(s.names),
        "visitors": s.visitors,
        "support": s.support,
        "conversionRate": s.conversion_rate,
        "lift": s.lift,
    }


def _model_json(m: ModelResult) -> dict[str, Any]:
    return {
        "auc": m.auc,
        "baselineAuc": m.baseline_auc,
        "bestRule": m.best_rule,
        "bestRuleAuc": m.best_rule_auc,
        "importance": [{"feature": f, "mean": mean, "std": std} for f, mean, std in m.importance],
        "roc": {"fpr": m.roc[0], "tpr": m.roc[1]},
        "trainSize": m.train_size,
        "testSize": m.test_size,
    }


def write_reports(report: dict[str, Any], directory: Path) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, html_path = directory / JSON_NAME, directory / HTML_NAME
    _atomic(html_path, render(report).encode())
    _atomic(
        json_path, orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return json_path, html_path


def _atomic(path: Path, data: bytes) -> None:
    """Temp file in the same folder, fsync, rename: a reader sees the old file or the new one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
