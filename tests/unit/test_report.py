"""The drain report (pure rendering, windows, filtering, the command's own errors) and the dashboard.

Expectations are written from the records given, not read back from the renderer's helpers:
the page is parsed with the standard library's HTML parser and counted.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from evictwatch.cli_report import report_command, window_from_options
from evictwatch.report import browser
from evictwatch.report.charts import chart_window
from evictwatch.report.collect import keep, record_node
from evictwatch.report.data import (
    NO_NODE,
    by_pressure,
    by_workload,
    impossible_budgets,
    read_row,
    still_blocked,
    union_seconds,
)
from evictwatch.report.render import render
from evictwatch.report.sample import sample_records
from evictwatch.report.window import Window, WindowError, in_window, parse_duration, parse_time

REPO = Path(__file__).parents[2]
UTC = datetime.UTC
END = datetime.datetime(2026, 3, 2, 18, 0, tzinfo=UTC)
WINDOW = Window.last("12h", END)
OWNER_WEB = {"kind": "Deployment", "name": "web"}


def at(hours_before_end: float) -> str:
    return (END - datetime.timedelta(hours=hours_before_end)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record(
    pod: str,
    *,
    namespace: str = "shop",
    node: str | None = "node-a",
    outcome: str | None = "Evicted",
    first: str | None = None,
    last: str | None = None,
    outcome_time: str | None = None,
    attempts: int = 1,
    source: str = "EvictionAPI",
    owners: list[dict[str, str]] | None = None,
    pod_owner: dict[str, str] | None = None,
    requester: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    pressure: dict[str, str] | None = None,
    message: str | None = None,
    status_node: str | None = None,
    budgets: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A record as the API returns it (only what the test needs is set)."""
    first = first or at(6)
    spec_pod: dict[str, Any] = {"name": pod, "found": True}
    if node:
        spec_pod["nodeName"] = node
    if labels:
        spec_pod["labels"] = labels
    if pod_owner:
        spec_pod["owner"] = pod_owner
    spec: dict[str, Any] = {
        "pod": spec_pod,
        "source": source,
        "sources": [source],
        "attempts": attempts,
        "firstAttemptTime": first,
        "lastAttemptTime": last or first,
    }
    if requester is not None:
        spec["requester"] = requester
    if pressure is not None:
        spec["pressure"] = pressure
    if message is not None:
        spec["message"] = message
    status: dict[str, Any] = {}
    if outcome is not None:
        status["outcome"] = outcome
    if outcome_time:
        status["outcomeTime"] = outcome_time
    if owners:
        status["owners"] = owners
    if status_node:
        status["node"] = {"name": status_node}
    if budgets:
        status["disruptionBudgets"] = budgets
    return {
        "apiVersion": "evictwatch.io/v1alpha1",
        "kind": "PodEviction",
        "metadata": {
            "name": f"{pod}.0123abcd",
            "namespace": namespace,
            "creationTimestamp": first[:19] + "Z",
        },
        "spec": spec,
        "status": status,
    }


class Page(HTMLParser):
    """Tags, attributes, text of <script>/<style>, table rows by table id, marks."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: Counter[str] = Counter()
        self.attributes: list[tuple[str, str, str]] = []
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.marks: list[dict[str, str]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.node_labels: list[str] = []
        self._raw: str | None = None
        self._raw_tag = ""
        self._table: str | None = None
        self._in_body = False
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._node_text: list[str] | None = None
        self._title_depth = 0
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        self.tags[tag] += 1
        self.attributes.extend((tag, name, value) for name, value in values.items())
        if tag in ("script", "style"):
            self._raw, self._raw_tag = "", tag
        if tag == "circle" and "mark" in values.get("class", "").split():
            self.marks.append(values)
        if tag == "table":
            self._table = values.get("id", "")
            self.tables[self._table] = []
        if tag == "tbody":
            self._in_body = True
        if tag == "tr" and self._in_body:
            self._row = []
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "text" and values.get("class") == "node":
            self._node_text = []
        if tag == "title":
            self._title_depth += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == self._raw_tag and self._raw is not None:
            (self.scripts if tag == "script" else self.styles).append(self._raw)
            self._raw = None
        if tag == "td" and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        if tag == "tbody":
            self._in_body = False
        if tag == "text" and self._node_text is not None:
            self.node_labels.append("".join(self._node_text).strip())
            self._node_text = None
        if tag == "title":
            self._title_depth -= 1

    def handle_data(self, data: str) -> None:
        if self._raw is not None:
            self._raw += data
        if self._cell is not None:
            self._cell.append(data)
        if self._node_text is not None and self._title_depth == 0:
            self._node_text.append(data)


# ---- rendering --------------------------------------------------------------------------------


def test_ten_thousand_records_one_mark_each() -> None:
    records = sample_records(10_000, WINDOW)
    page = Page(render(records, WINDOW))
    assert len(page.marks) == 10_000
    expected = Counter(r["status"]["outcome"] for r in records)
    assert Counter(m["data-outcome"] for m in page.marks) == expected
    assert len(expected) == 5  # the sample covers every outcome
    assert len(page.tables["records"]) == 10_000
    # every mark is inside the plot (times are inside the window)
    assert all(210 <= float(m["cx"]) <= 1360 - 16 for m in page.marks)


def test_hostile_strings_are_text_not_markup() -> None:
    hostile = "<script>window.pwned=1</script>"
    records = [
        record(
            hostile,
            namespace='ns"><b>x</b>',
            node="<img src=x onerror=alert(1)>",
            labels={"app": '"><svg onload=alert(2)>', "<k>": "v"},
            requester={"username": "<iframe src=//evil>", "component": "kubectl"},
            message="</td></tr></table><script>alert(3)</script>",
            pod_owner={"kind": "ReplicaSet", "name": "<style>*{display:none}</style>"},
            outcome='Evicted" onmouseover="alert(4)',
        ),
        record("kubelet-victim", source="Kubelet", pressure={"resource": "<marquee>mem", "usage": "<u>9Gi"}),
    ]
    text = render(records, WINDOW, node="<n>", namespace="<ns>")
    page = Page(text)
    assert page.tags["script"] == 1  # ours, at the end
    assert page.tags["style"] == 1
    assert page.tags["svg"] == 2  # the two charts
    for tag in ("img", "iframe", "marquee", "u"):
        assert page.tags[tag] == 0, tag
    assert "ns&#34;&gt;&lt;b&gt;x&lt;/b&gt;" in text  # Jinja2's autoescape (markupsafe)
    assert not [a for a in page.attributes if a[1].startswith("on")]
    assert not [a for a in page.attributes if a[1] in ("src", "href", "xlink:href", "action")]
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in text
    assert "window.pwned=1" not in page.scripts[0]
    # an outcome the CRD does not allow reads as Pending (the model's codec), never as markup
    assert page.marks[0]["data-outcome"] == "Pending"
    workloads = {row[1] for row in page.tables["workloads"]}
    assert "ReplicaSet/<style>*{display:none}</style>" in workloads
    assert page.tables["pressure"][0][0] == "<marquee>mem"


def test_page_is_self_contained_and_pinned_by_its_policy() -> None:
    text = render(sample_records(50, WINDOW), WINDOW)
    page = Page(text)
    policy = next(
        value
        for tag, name, value in page.attributes
        if tag == "meta" and name == "content" and "src" in value
    )

    def digest(body: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"

    assert "default-src 'none'" in policy
    assert f"script-src {digest(page.scripts[0])}" in policy
    assert f"style-src {digest(page.styles[0])}" in policy
    assert "url(" not in page.styles[0] and "@import" not in page.styles[0]
    assert not [a for a in page.attributes if a[1] in ("src", "href", "xlink:href", "style")]
    assert not re.search(r"https?://", text)


def test_workloads_grouped_by_top_owner() -> None:
    deployment_chain = [
        {"kind": "ReplicaSet", "name": "web-7d4b9"},
        {"kind": "Deployment", "name": "web"},
    ]
    kubectl = {"username": "alice", "component": "kubectl"}
    autoscaler = {
        "username": "system:serviceaccount:kube-system:cluster-autoscaler",
        "component": "cluster-autoscaler",
    }
    records = [
        record("web-1", owners=deployment_chain, requester=kubectl),
        record("web-2", owners=deployment_chain, requester=kubectl, attempts=3, last=at(5.9)),
        # Blocked 30 minutes, 12 attempts
        record(
            "web-3",
            owners=deployment_chain,
            requester=autoscaler,
            outcome="Blocked",
            attempts=12,
            first=at(4),
            last=at(3.5),
        ),
        # evicted by the kubelet: the controller calls that Failed, and it counts as evicted
        record("web-4", owners=deployment_chain, source="Kubelet", outcome="Failed"),
        # no status.owners yet: the Pod's own owner is the workload
        record(
            "db-0",
            pod_owner={"kind": "StatefulSet", "name": "db"},
            outcome="Blocked",
            attempts=2,
            first=at(2),
            last=at(1),
        ),
        record("db-1", pod_owner={"kind": "StatefulSet", "name": "db"}, outcome="PodGone"),
        record("bare", outcome="Pending"),
        # the same owner name in another namespace is another workload
        record("web-9", namespace="staging", owners=deployment_chain),
    ]
    summaries = {(s.namespace, s.workload): s for s in by_workload([read_row(r) for r in records])}
    assert set(summaries) == {
        ("shop", "Deployment/web"),
        ("shop", "StatefulSet/db"),
        ("shop", "(no controller)"),
        ("staging", "Deployment/web"),
    }
    web = summaries[("shop", "Deployment/web")]
    assert (web.records, web.evicted, web.blocked_records, web.refused_attempts) == (4, 3, 1, 2 + 12)
    # wall-clock while refused: web-3's 30 minutes, and the 6 minutes before web-2 got through
    assert web.blocked_seconds == pytest.approx(1800 + 360)
    assert dict(web.requesters) == {"alice (kubectl)": 2, "cluster-autoscaler": 1, "Kubelet": 1}
    db = summaries[("shop", "StatefulSet/db")]
    assert (db.records, db.evicted, db.blocked_records, db.refused_attempts) == (2, 0, 1, 2)
    assert db.blocked_seconds == pytest.approx(3600)

    rows = Page(render(records, WINDOW)).tables["workloads"]
    by_name = {(row[0], row[1]): row for row in rows}
    assert by_name[("shop", "Deployment/web")][2:7] == ["4", "3", "1", "14", "36m"]
    assert by_name[("shop", "StatefulSet/db")][2:7] == ["2", "0", "1", "2", "1h"]
    assert rows[0][:2] == ["shop", "Deployment/web"]  # most evicted first
    assert "alice (kubectl) \u00d72" in by_name[("shop", "Deployment/web")][7]


def _budget(name: str, allowed: int, healthy: int, desired: int, expected: int) -> dict[str, Any]:
    return {
        "name": name,
        "disruptionsAllowed": allowed,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "expectedPods": expected,
    }


def test_time_blocked_is_wall_clock_not_summed_over_pods() -> None:
    ten_held_together = [
        record(f"web-{i}", outcome="Blocked", attempts=5, first=at(3), last=at(2.5), owners=[OWNER_WEB])
        for i in range(10)
    ]
    (web,) = by_workload([read_row(r) for r in ten_held_together])
    assert web.blocked_seconds == pytest.approx(1800)  # not 10 x 30 minutes
    assert union_seconds([]) == 0
    spans = [
        (parse_time(at(5)), parse_time(at(4))),
        (parse_time(at(4.5)), parse_time(at(3))),
        (parse_time(at(1)), parse_time(at(0.5))),
    ]
    assert union_seconds(spans) == pytest.approx(2 * 3600 + 1800)  # two overlap, one apart


def test_a_drain_that_never_finished_is_listed_per_node_and_per_budget() -> None:
    impossible = _budget("db", 0, 3, 3, 3)  # minAvailable 3 of 3 Pods
    tight = _budget("web", 0, 2, 2, 3)  # blocked now, could pass once a Pod is healthy again
    records = [
        # node-a's drain: two Pods still refused, since 3 h and since 2 h before the end
        record(
            "db-0",
            node="node-a",
            outcome="Blocked",
            attempts=40,
            first=at(3),
            last=at(0.1),
            budgets=[impossible],
        ),
        record(
            "web-0", node="node-a", outcome="Blocked", attempts=20, first=at(2), last=at(0.1), budgets=[tight]
        ),
        # node-b: held for an hour, then let through inside the window: not still blocked
        record(
            "web-1", node="node-b", attempts=12, first=at(5), last=at(4), outcome_time=at(4), budgets=[tight]
        ),
        # node-c: refused inside the window, got through only after it ended: still blocked at its end
        record(
            "web-2", node="node-c", attempts=3, first=at(1), last=at(-1), outcome_time=at(-1), budgets=[tight]
        ),
        record("fine", node="node-a"),
        # node-d: a drain still retrying when the report ran (Pending until the retries stop)
        record("api-0", node="node-d", outcome="Pending", attempts=9, first=at(0.2), last=at(0.01)),
        record("api-1", node="node-d", outcome="Pending", attempts=1, first=at(0.01)),  # not refused yet
    ]
    rows = [read_row(r) for r in records]
    nodes, budgets = still_blocked(rows, WINDOW)
    assert [n.name for n in nodes] == ["node-a", "node-c", "node-d"]  # longest blocked first
    assert nodes[2].pods == ["shop/api-0"] and dict(nodes[2].related) == {"(no budget found)": 1}
    node_a = nodes[0]
    assert sorted(node_a.pods) == ["shop/db-0", "shop/web-0"]
    assert node_a.since == parse_time(at(3)) and node_a.last_attempt == parse_time(at(0.1))
    assert node_a.blocked_seconds(WINDOW) == pytest.approx(3 * 3600)  # wall-clock, not 3 h + 2 h
    assert dict(node_a.related) == {"shop/db": 1, "shop/web": 1}
    assert [b.name for b in budgets] == ["shop/db", "shop/web"]
    assert budgets[1].pods == ["shop/web-0", "shop/web-2"] and dict(budgets[1].related) == {
        "node-a": 1,
        "node-c": 1,
    }
    assert budgets[0].budget is not None and budgets[0].budget.never_allows

    (flagged,) = impossible_budgets(rows)
    assert (flagged.namespace, flagged.name) == ("shop", "db")
    assert "lower minAvailable below 3" in flagged.fix and "maxUnavailable" in flagged.fix

    page = Page(render(records, WINDOW))
    assert [row[:2] for row in page.tables["blocked-nodes"]] == [
        ["node-a", "2"],
        ["node-c", "1"],
        ["node-d", "1"],
    ]
    assert page.tables["blocked-nodes"][0][3] == "3h"
    assert [row[0] for row in page.tables["blocked-budgets"]] == ["shop/db", "shop/web"]
    assert page.tables["blocked-budgets"][0][4:6] == ["0", "3 / 3 / 3"]
    text = render(records, WINDOW)
    assert text.index('id="stuck"') < text.index("<svg")  # at the top, before the charts
    assert "shop/db</b>: it requires 3 healthy of 3 Pods" in text


def test_nothing_blocked_says_so() -> None:
    text = render([record("a"), record("b", outcome="Blocked", first=at(-2))], WINDOW)  # b: after the window
    assert "Nothing was still blocked when the window ended." in text
    assert "blocked-nodes" not in Page(text).tables


def test_axes_carry_their_units() -> None:
    text = render([record("a")], WINDOW, fit=False)
    assert "records per 12m" in text  # 12 h in 60 slices
    assert text.count("time (UTC)") == 2


def test_kubelet_pressure_by_resource() -> None:
    memory = {"resource": "memory", "usage": "7.6Gi"}
    records = [
        record("a", source="Kubelet", node="n1", pressure=memory, outcome_time=at(1)),
        record("b", source="Kubelet", node="n2", pressure=memory, namespace="batch", outcome_time=at(2)),
        record("c", source="Kubelet", node="n1", pressure=memory, outcome_time=at(3)),
        record("d", source="Kubelet", node="n3", pressure={"resource": "ephemeral-storage"}),
        record("e", source="Kubelet", node="n3"),  # the kubelet said no resource
        record("f", source="EvictionAPI", node="n3", pressure=memory),  # not a kubelet eviction
    ]
    summaries = {s.resource: s for s in by_pressure([read_row(r) for r in records])}
    assert set(summaries) == {"memory", "ephemeral-storage", "(not given)"}
    assert summaries["memory"].evictions == 3
    assert dict(summaries["memory"].nodes) == {"n1": 2, "n2": 1}
    assert summaries["memory"].namespaces == {"shop", "batch"}
    assert summaries["memory"].last == parse_time(at(1))

    rows = Page(render(records, WINDOW)).tables["pressure"]
    assert [row[:3] for row in rows] == [
        ["memory", "3", "2"],
        ["(not given)", "1", "1"],
        ["ephemeral-storage", "1", "1"],
    ]
    assert rows[0][3] == "n1 \u00d72, n2 \u00d71"


def test_no_pressure_evictions_says_so() -> None:
    text = render([record("a")], WINDOW)
    assert "pressure" not in Page(text).tables
    assert "No kubelet pressure evictions in this window." in text


def test_timeline_rows_per_node_in_order_of_first_eviction() -> None:
    records = [
        record("late", node="node-b", first=at(1)),
        record("early", node="node-a", first=at(10)),
        record("middle", node=None, first=at(5)),
        record("after-window", node="node-a", first=at(-3)),  # drawn at the right edge
        record("before-window", node="node-c", first=at(30), last=at(30)),  # drawn at the left edge
    ]
    page = Page(render(records, WINDOW))
    assert page.node_labels == ["node-c (1)", "node-a (2)", f"{NO_NODE} (1)", "node-b (1)"]
    xs = sorted(float(m["cx"]) for m in page.marks)
    assert xs[0] == 210.0 and xs[-1] == 1360 - 16


def test_spans_of_attempts_and_outcome_time_place_the_mark() -> None:
    records = [record("a", attempts=4, first=at(6), last=at(5), outcome_time=at(4))]
    text = render(records, WINDOW, fit=False)
    page = Page(text)
    span = re.search(r'<line class="span"[^>]*x1="([\d.]+)"[^>]*x2="([\d.]+)"', text)
    assert span is not None
    plot = 1360 - 210 - 16
    assert float(span.group(1)) == pytest.approx(210 + plot * 6 / 12, abs=0.1)
    assert float(page.marks[0]["cx"]) == pytest.approx(210 + plot * 8 / 12, abs=0.1)
    assert float(span.group(2)) == float(page.marks[0]["cx"])


def test_charts_zoom_to_a_short_drain() -> None:
    minutes = [5.0 + m / 60 for m in (0, 4, 9, 15, 20)]  # a 20-minute drain, 5 hours ago
    records = [record(f"p{i}", first=at(h)) for i, h in enumerate(minutes)]
    charts = chart_window([read_row(r) for r in records], WINDOW)
    assert WINDOW.start < charts.start < parse_time(at(5 + 20 / 60)) - datetime.timedelta(seconds=29)
    assert parse_time(at(5)) + datetime.timedelta(seconds=29) < charts.end < WINDOW.end
    assert charts.seconds < 1800
    text = render(records, WINDOW)
    assert "where this window's records are" in text
    xs = sorted(float(m["cx"]) for m in Page(text).marks)
    plot = 1360 - 210 - 16
    assert xs[0] - 210 < 0.1 * plot and 1344 - xs[-1] < 0.1 * plot  # spread over the plot
    assert xs[-1] - xs[0] > 0.8 * plot


def test_charts_keep_the_window_when_records_fill_it() -> None:
    rows = [read_row(record("a", first=at(11.5))), read_row(record("b", first=at(0.5)))]
    assert chart_window(rows, WINDOW) == WINDOW
    assert chart_window([], WINDOW) == WINDOW
    assert "records are." not in render([record("a", first=at(11.5)), record("b", first=at(0.5))], WINDOW)


def test_charts_of_one_late_record_are_two_minutes_wide_at_the_edge() -> None:
    charts = chart_window([read_row(record("a", first=at(0.001)))], WINDOW)
    assert (charts.end, charts.seconds) == (WINDOW.end, 120)


def test_empty_report() -> None:
    text = render([], WINDOW, namespace="shop")
    page = Page(text)
    assert page.marks == []
    assert "No evictions in this window." in text
    assert "namespace shop" in text
    assert page.tables["records"] == []


def test_png_list_is_capped_but_charts_are_not() -> None:
    page = Page(render(sample_records(300, WINDOW), WINDOW, max_listed=20))
    assert len(page.tables["records"]) == 20
    assert len(page.marks) == 300


# ---- windows and filtering ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("12h", 43200), ("90m", 5400), ("1h30m", 5400), ("2d", 172800), ("1w", 604800), (" 45s ", 45)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "12", "h", "0h", "12x", "5x12h", "12h foo", "-1h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(WindowError, match="not a duration"):
        parse_duration(text)


def test_times_and_window_options() -> None:
    assert parse_time("2026-03-02T10:00:00+02:00") == datetime.datetime(2026, 3, 2, 8, tzinfo=UTC)
    assert parse_time("2026-03-02T08:00:00.123456Z").microsecond == 123456
    with pytest.raises(WindowError, match="without a zone"):
        parse_time("2026-03-02T08:00:00")
    with pytest.raises(WindowError, match="RFC 3339"):
        parse_time("yesterday")
    assert window_from_options(None, None, None, now=END) == Window(END - datetime.timedelta(hours=12), END)
    assert window_from_options("30m", None, None, now=END).seconds == 1800
    explicit = window_from_options(None, "2026-03-01T00:00:00Z", "2026-03-01T06:00:00Z", now=END)
    assert explicit.seconds == 6 * 3600
    assert window_from_options(None, "2026-03-02T17:00:00Z", None, now=END).end == END
    with pytest.raises(WindowError, match="not both"):
        window_from_options("1h", "2026-03-01T00:00:00Z", None, now=END)
    with pytest.raises(WindowError, match="--to needs --from"):
        window_from_options(None, None, "2026-03-01T00:00:00Z", now=END)
    with pytest.raises(WindowError, match="before it starts"):
        window_from_options(None, "2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", now=END)


def test_window_membership_by_activity() -> None:
    assert in_window(record("inside", first=at(3)), WINDOW)
    assert not in_window(record("before", first=at(20), last=at(13)), WINDOW)
    assert not in_window(record("after", first=at(-1)), WINDOW)
    # attempts began before the window, the last one is inside
    assert in_window(record("retried-in", first=at(20), last=at(11)), WINDOW)
    # attempts before the window, settled inside it
    assert in_window(record("settled-in", first=at(20), last=at(19), outcome_time=at(2)), WINDOW)
    # attempts spanning the whole window
    assert in_window(record("spanning", first=at(20), last=at(-2)), WINDOW)
    # no times at all (and no creation time): never in a window
    bare = record("bare")
    del (
        bare["spec"]["firstAttemptTime"],
        bare["spec"]["lastAttemptTime"],
        bare["metadata"]["creationTimestamp"],
    )
    assert not in_window(bare, WINDOW)


def test_node_filter_uses_spec_then_status() -> None:
    on_a = record("a", node="node-a")
    settled_on_b = record("b", node=None, status_node="node-b")
    nowhere = record("c", node=None)
    assert [record_node(r) for r in (on_a, settled_on_b, nowhere)] == ["node-a", "node-b", ""]
    assert keep(on_a, WINDOW, "node-a") and not keep(on_a, WINDOW, "node-b")
    assert keep(settled_on_b, WINDOW, "node-b")
    assert not keep(nowhere, WINDOW, "node-a") and keep(nowhere, WINDOW)


# ---- the command's own errors (no cluster needed) -----------------------------------------------


def test_png_without_a_browser_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "DEFAULT_PATHS", (str(tmp_path / "no-chromium"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(report_command, ["--format", "png", "-o", str(tmp_path / "r.png")])
    assert result.exit_code == 4
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert "apt-get install chromium" in lines[0]
    assert not (tmp_path / "r.png").exists()


def test_pdf_without_a_browser_refuses_in_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(browser, "DEFAULT_PATHS", (str(tmp_path / "no-chromium"),))
    monkeypatch.setenv("PATH", str(tmp_path))
    result = CliRunner().invoke(report_command, ["-o", str(tmp_path / "night.pdf")])  # the suffix says PDF
    assert result.exit_code == 4
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: PDF needs Chromium") and "apt-get install chromium" in line
    assert not (tmp_path / "night.pdf").exists()


def test_a_format_that_contradicts_the_file_name_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(report_command, ["--format", "html", "-o", str(tmp_path / "night.pdf")])
    assert result.exit_code == 2
    assert "--format html would write HTML into" in result.stderr
    assert not (tmp_path / "night.pdf").exists()


def test_conflicting_window_options_are_a_usage_error() -> None:
    result = CliRunner().invoke(report_command, ["--since", "1h", "--from", "2026-03-01T00:00:00Z"])
    assert result.exit_code == 2
    assert "either --since or --from/--to" in result.stderr


def test_missing_kubeconfig_is_a_cluster_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        report_command, ["--kubeconfig", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 3
    assert "error: no Kubernetes configuration found" in result.stderr
    assert not (tmp_path / "r.html").exists()
