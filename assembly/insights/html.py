"""The HTML report: one self-contained page, plots as base64 PNGs (matplotlib, Agg backend)."""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def _bars(labels: list[str], values: list[float], title: str, xlabel: str) -> str:
    fig, ax = plt.subplots(figsize=(7, 0.35 * max(len(labels), 3) + 1))
    ax.barh(labels[::-1], values[::-1], color="#3b6ea5")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    return _png(fig)


def _roc(model: dict[str, Any]) -> str:
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(model["roc"]["fpr"], model["roc"]["tpr"], label=f"model AUC {model['auc']:.3f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", label="base rate AUC 0.5")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    return _png(fig)


def _img(data: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _table(head: list[str], rows: list[list[Any]]) -> str:
    cells = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{cells}</tr>{body}</table>"


def render(report: dict[str, Any]) -> str:
    parts = [
        f"<h1>Insights: {html.escape(report['goal'])}</h1>",
        f"<p>{report['visitors']} visitors, {report['converted']} converted "
        f"(base rate {report['baseRate']:.3f}); {report['eventsRead']} events read; "
        f"truncated: {html.escape(', '.join(report['truncated']) or 'no')}</p>",
    ]
    parts += _candidates(report["candidates"])
    parts += _correlations(report["correlations"][:15])
    parts += _sequences(report["sequences"])
    if report["model"] is not None:
        parts += _model(report["model"])
    style = (
        "body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;border-bottom:1px solid #ddd}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Insights</title>"
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>"
    )


def _candidates(items: list[dict[str, Any]]) -> list[str]:
    rows = [
        [f"{c['condition']}", f"{c['coverage']:.3f}", f"{c['lift']:.2f}", f"{c['qValue']:.2g}"]
        for c in items
    ]
    return ["<h2>Candidate triggers</h2>", _table(["condition", "coverage", "lift", "q"], rows)]


def _correlations(items: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{c['condition']}",
            c["nWith"],
            f"{c['difference']:+.3f} [{c['differenceCi'][0]:+.3f}, {c['differenceCi'][1]:+.3f}]",
            f"{c['oddsRatio']:.2f} [{c['oddsRatioCi'][0]:.2f}, {c['oddsRatioCi'][1]:.2f}]",
            f"{c['pValue']:.2g}",
            f"{c['qValue']:.2g}",
        ]
        for c in items
    ]
    head = ["condition", "visitors", "rate difference", "odds ratio", "p", "q (BH)"]
    out = ["<h2>Correlation with conversion</h2>", _table(head, rows)]
    if items:
        labels = [str(c["condition"])[:48] for c in items]
        out.append(_img(_bars(labels, [c["lift"] for c in items], "Lift", "lift"), "lift"))
    return out


def _sequences(items: list[dict[str, Any]]) -> list[str]:
    rows = [
        [" → ".join(s["names"]), s["visitors"], f"{s['support']:.3f}", f"{s['lift']:.2f}"]
        for s in items
    ]
    head = ["sequence", "visitors", "support", "lift"]
    return ["<h2>Sequences before conversion</h2>", _table(head, rows)]


def _model(model: dict[str, Any]) -> list[str]:
    top = model["importance"][:12]
    bars = _bars([i["feature"] for i in top], [i["mean"] for i in top], "Permutation", "AUC drop")
    return [
        "<h2>Classifier (held-out)</h2>",
        f"<p>AUC {model['auc']:.3f}; base rate 0.5; best single rule "
        f"({html.escape(model['bestRule'])}) {model['bestRuleAuc']:.3f}</p>",
        _img(_roc(model), "ROC"),
        _img(bars, "permutation importance"),
    ]
