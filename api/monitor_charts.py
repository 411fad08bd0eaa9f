"""The monitor page's charts as inline SVG drawn on the server (no script, no chart library): daily volume,
label mix per week (stacked), agent accuracy with Wilson whiskers, PSI with the alert line.

Every bar carries ``data-figure`` (its name in ``evaluation.monitoring.figures``) and ``data-value`` (the
report's value, empty for None), like the page's table cells."""

from __future__ import annotations

from markupsafe import Markup, escape

from helpdesk_triage.api.ui_pages import HEAD_NAMES
from helpdesk_triage.policy.labels import HEADS, LABELS

WIDTH, HEIGHT = 720, 200
LEFT, BOTTOM, TOP = 40, 36, 12
PALETTE = ("#1f5fbf", "#e08a00", "#2e7d32", "#c62828", "#6a4fb3", "#00838f")
OK_COLOUR, BAD_COLOUR, GRID_COLOUR = "#1f5fbf", "#c62828", "#d9dee5"


def value_attribute(value) -> str:
    return "" if value is None else str(value)


def _svg(title: str, body: list[str], height: int = HEIGHT) -> Markup:
    return Markup(f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}"'
                  f' xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>')


def _bar(x: float, y: float, w: float, h: float, colour: str, figure: str, value, tip: str) -> str:
    return (f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0):.1f}" height="{max(h, 0):.1f}" fill="{colour}"'
            f' data-figure="{escape(figure)}" data-value="{escape(value_attribute(value))}"><title>{escape(tip)}</title></rect>')


def _text(x: float, y: float, text: str, anchor: str = "middle", size: int = 11, colour: str = "#5f6b7a") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" fill="{colour}">{escape(text)}</text>'


def _axis(top_value: float, labels: int = 4, fmt: str = "{:.2f}", height: int = HEIGHT) -> list[str]:
    parts, plot = [], height - TOP - BOTTOM
    for i in range(labels + 1):
        y = TOP + plot * (1 - i / labels)
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID_COLOUR}"/>')
        parts.append(_text(LEFT - 4, y + 4, fmt.format(top_value * i / labels), anchor="end", size=10))
    return parts


def _y(value: float, top_value: float, height: int = HEIGHT) -> float:
    return TOP + (height - TOP - BOTTOM) * (1 - value / top_value if top_value else 1)


def daily_volume(report: dict) -> Markup:
    days = report["days"]
    top = max([d["volume"] for d in days] + [1])
    slot = (WIDTH - LEFT) / max(len(days), 1)
    body = _axis(top, fmt="{:.0f}")
    for i, day in enumerate(days):
        x = LEFT + i * slot + slot * 0.1
        y = _y(day["volume"], top)
        body.append(_bar(x, y, slot * 0.8, HEIGHT - BOTTOM - y, OK_COLOUR, f"days.{day['key']}.volume", day["volume"],
                         f"{day['key']}：{day['volume']} 单"))
        if len(days) <= 14 or i % 7 == 0:
            body.append(_text(x + slot * 0.4, HEIGHT - BOTTOM + 14, day["key"][5:], size=10))
    return _svg("每日工单量", body)


def label_mix(report: dict, head: str) -> Markup:
    """One stacked bar per week: the shares of the head's labels, with a legend."""
    weeks = report["weeks"]
    slot = (WIDTH - LEFT) / max(len(weeks), 1)
    body = _axis(1.0)
    codes = LABELS.codes(head)
    for i, week in enumerate(weeks):
        x, bottom = LEFT + i * slot + slot * 0.2, HEIGHT - BOTTOM
        for j, code in enumerate(codes):
            share = week["label_share"][head][code]
            if not share:
                continue
            h = (HEIGHT - TOP - BOTTOM) * share
            body.append(_bar(x, bottom - h, slot * 0.6, h, PALETTE[j % len(PALETTE)],
                             f"weeks.{week['key']}.label_share.{head}.{code}", share,
                             f"{week['key']} {LABELS.get(head, code).name_zh}：{share:.3f}"))
            bottom -= h
        body.append(_text(x + slot * 0.3, HEIGHT - BOTTOM + 14, week["key"], size=10))
    for j, code in enumerate(codes):
        x = LEFT + j * 120
        body.append(f'<rect x="{x}" y="{HEIGHT - 14}" width="10" height="10" fill="{PALETTE[j % len(PALETTE)]}"/>')
        body.append(_text(x + 14, HEIGHT - 5, LABELS.get(head, code).name_zh, anchor="start", size=10))
    return _svg(f"{HEAD_NAMES[head]}分布（每周）", body)


def accuracy(report: dict) -> Markup:
    """Per head, the agents' accuracy over the period as a bar with its 95% Wilson interval as a whisker."""
    total = report["total"]
    slot = (WIDTH - LEFT) / len(HEADS)
    body = _axis(1.0)
    for i, head in enumerate(HEADS):
        x = LEFT + i * slot + slot * 0.3
        value = total["accuracy"][head]
        label = f"{HEAD_NAMES[head]}（n={total['verdicts'][head]}）"
        body.append(_text(x + slot * 0.2, HEIGHT - BOTTOM + 14, label, size=11))
        if value is None:
            body.append(_text(x + slot * 0.2, HEIGHT - BOTTOM - 6, "无客服判定"))
            continue
        y = _y(value, 1.0)
        body.append(_bar(x, y, slot * 0.4, HEIGHT - BOTTOM - y, OK_COLOUR, f"total.accuracy.{head}", value,
                         f"{HEAD_NAMES[head]} 准确率 {value:.3f}"))
        low, high, centre = _y(total["accuracy_low"][head], 1.0), _y(total["accuracy_high"][head], 1.0), x + slot * 0.2
        body.append(f'<g class="whisker" stroke="#1d2430" stroke-width="1.5">'
                    f'<line x1="{centre:.1f}" x2="{centre:.1f}" y1="{low:.1f}" y2="{high:.1f}"/>'
                    f'<line x1="{centre - 8:.1f}" x2="{centre + 8:.1f}" y1="{low:.1f}" y2="{low:.1f}"/>'
                    f'<line x1="{centre - 8:.1f}" x2="{centre + 8:.1f}" y1="{high:.1f}" y2="{high:.1f}"/></g>')
    return _svg("客服判定的准确率（95% Wilson 区间）", body)


def drift(report: dict) -> Markup:
    """Per week, one bar per head: PSI against the reference, red when over the alert line."""
    weeks, alert = report["weeks"], report["psi_alert"]
    values = [w["psi"][h] for w in weeks for h in HEADS if w["psi"][h] is not None]
    top = max(values + [alert * 1.5])
    slot = (WIDTH - LEFT) / max(len(weeks), 1)
    bar = slot * 0.8 / len(HEADS)
    body = _axis(top)
    for i, week in enumerate(weeks):
        for j, head in enumerate(HEADS):
            value = week["psi"][head]
            if value is None:
                continue
            x, y = LEFT + i * slot + slot * 0.1 + j * bar, _y(value, top)
            colour = BAD_COLOUR if week["psi_flagged"][head] else OK_COLOUR
            body.append(_bar(x, y, bar * 0.9, HEIGHT - BOTTOM - y, colour, f"weeks.{week['key']}.psi.{head}", value,
                             f"{week['key']} {HEAD_NAMES[head]} PSI {value:.3f}"))
            body.append(_text(x + bar * 0.45, HEIGHT - BOTTOM + 12, HEAD_NAMES[head][:1], size=9))
        body.append(_text(LEFT + i * slot + slot / 2, HEIGHT - BOTTOM + 26, week["key"], size=10))
    y = _y(alert, top)
    body.append(f'<line class="alert" x1="{LEFT}" x2="{WIDTH}" y1="{y:.1f}" y2="{y:.1f}" stroke="{BAD_COLOUR}"'
                f' stroke-dasharray="6 4"/>')
    body.append(_text(WIDTH - 4, y - 4, f"警戒线 {alert}", anchor="end", size=10, colour=BAD_COLOUR))
    return _svg("标签分布漂移（PSI，对比参考周）", body)
