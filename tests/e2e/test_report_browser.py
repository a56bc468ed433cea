"""The drain report of real evictions, opened in headless Chromium over the DevTools protocol.

The operator (webhook and controller) runs against the real control plane; Pods of two
Deployments on two fake nodes are evicted (one behind a PodDisruptionBudget, one by a user
whose name is markup), plus one attempt at a Pod that does not exist. The report is made by
the command in its own process, then loaded in Chromium: no console errors, no requests, one
mark per record with the settled outcome, the hostile name shown as text and never run.

Chromium is required, not optional: without it this test fails and says how to install it.
"""

from __future__ import annotations

import asyncio
import datetime
import struct
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from lightkube import AsyncClient
from lightkube.resources.rbac_authorization_v1 import Role, RoleBinding

from evictwatch.kube.client import from_manifest
from evictwatch.operator import Operator
from evictwatch.records.resource import PodEviction
from evictwatch.report.browser import Chromium, Page, find_chromium
from evictwatch.report.collect import collect
from evictwatch.report.render import render
from evictwatch.report.sample import sample_records
from evictwatch.report.window import Window
from evictwatch.testing.cluster import Cluster, unique, wait_for
from evictwatch.testing.controlplane import ControlPlane
from evictwatch.testing.fixtures import StartOperator, settling_operator

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
HOSTILE_USER = "<script>window.__evictwatch_xss=1</script>"
UTC = datetime.UTC


def require_chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.fail(
            "Chromium is required for the report's browser test and was not found "
            "(/usr/bin/chromium or chromium on PATH): run scripts/install-chromium.sh "
            "(apt-get install chromium)",
            pytrace=False,
        )
    return path


@pytest.fixture
async def operator(start_operator: StartOperator, cluster: Cluster) -> Operator:
    return await settling_operator(start_operator, cluster, blocked_after=4)


async def plain_records(kube: AsyncClient, namespace: str) -> list[dict[str, Any]]:
    return [item.to_dict() async for item in kube.list(PodEviction, namespace=namespace)]


async def allow_user_to_evict(cluster: Cluster, user: str) -> None:
    name = unique("evictor")
    await cluster.client.create(
        from_manifest(
            Role,
            {
                "metadata": {"name": name, "namespace": cluster.namespace},
                "rules": [{"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]}],
            },
        )
    )
    await cluster.client.create(
        from_manifest(
            RoleBinding,
            {
                "metadata": {"name": name, "namespace": cluster.namespace},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
            },
        )
    )


async def run_report(*args: str) -> tuple[int, str, str]:
    """``evictwatch report`` in a process of its own (the command object, as cli.py registers it)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import sys; from evictwatch.cli_report import report_command; "
        "report_command.main(sys.argv[1:], prog_name='evictwatch report')",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 180)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def open_page(browser: Chromium, path: Path) -> Page:
    page = await browser.page()
    await page.goto(path.as_uri())  # absolute: tmp_path or the repository folder
    await page.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")
    return page


VISIBLE_MARKS = (
    "[...document.querySelectorAll('#timeline .mark')].filter(m => getComputedStyle(m).display !== 'none')"
    ".map(m => m.dataset.outcome)"
)
NODE_ROWS = (
    "[...document.querySelectorAll('#timeline text.node')].map(t => [...t.childNodes]"
    ".filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent).join(''))"
)
TABLE = (
    "[...document.querySelectorAll('#{id} tbody tr')].map(r => [...r.cells].map(c => c.textContent.trim()))"
)


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_report_of_real_evictions_in_chromium(
    cluster: Cluster, operator: Operator, control_plane: ControlPlane, tmp_path: Path
) -> None:
    require_chromium()
    node_a = await cluster.create_node()
    node_b = await cluster.create_node()
    web = await cluster.create_deployment("web", {"app": "web"}, replicas=3)
    db = await cluster.create_deployment("db", {"app": "db"}, replicas=2)
    for pods, node in ((web, node_a), (db, node_b)):
        for pod in pods:
            await cluster.bind(pod, node)
            await cluster.mark_ready(pod)
    await cluster.create_pdb("db", {"app": "db"}, min_available=2)
    await allow_user_to_evict(cluster, HOSTILE_USER)

    assert (await cluster.evict(web[0], user_agent="kubectl/v1.37.2 (linux/amd64)")).status == 201
    assert (await cluster.evict(web[1])).status == 201
    reply = await cluster.evict(web[2], impersonate=HOSTILE_USER)
    assert reply.status == 201, reply.body
    for _ in range(3):
        assert (await cluster.evict(db[0])).status == 429
    assert (await cluster.evict("ghost-0")).status == 404

    names = {*web, db[0], "ghost-0"}

    async def all_settled() -> list[dict[str, Any]] | None:
        found = await plain_records(cluster.client, cluster.namespace)
        pending = [r for r in found if (r.get("status") or {}).get("outcome") in (None, "Pending")]
        return found if len(found) == len(names) and not pending else None

    records = await wait_for(all_settled, timeout=60, what="five records settled by the controller")
    outcomes = {r["spec"]["pod"]["name"]: r["status"]["outcome"] for r in records}
    assert set(outcomes) == names
    assert (outcomes[db[0]], outcomes["ghost-0"]) == ("Blocked", "PodGone")
    # The evicted web Pods settle as Evicted; on a starved machine the API server may apply an
    # eviction later than blockedAfterSeconds after the webhook saw it, and the controller then
    # says Blocked. The report must show what the records say either way.
    web_evicted = sum(outcomes[pod] == "Evicted" for pod in web)
    assert all(outcomes[pod] in ("Evicted", "Blocked") for pod in web), outcomes
    assert {
        r["spec"]["pod"]["name"]: r["status"]["owners"][-1]["name"]
        for r in records
        if r["status"].get("owners")
    } == {
        web[0]: "web",
        web[1]: "web",
        web[2]: "web",
        db[0]: "db",
    }

    # The command, in its own process, against the control plane.
    html_path = tmp_path / "report.html"
    code, out, err = await run_report(
        "--kubeconfig",
        str(control_plane.kubeconfig_path),
        "-n",
        cluster.namespace,
        "--since",
        "1h",
        "-o",
        str(html_path),
    )
    assert code == 0, err
    assert "5 records" in out

    # collect + render directly: the node filter keeps node A's three
    window = Window.last("1h")
    on_a = await collect(cluster.client, window, namespace=cluster.namespace, node=node_a)
    assert sorted(r["spec"]["pod"]["name"] for r in on_a) == sorted(web)
    # across all namespaces (a node name is unique to this test): the same three
    everywhere = await collect(cluster.client, window, node=node_a, page_size=2)
    assert sorted(r["spec"]["pod"]["name"] for r in everywhere) == sorted(web)
    node_a_path = tmp_path / "node-a.html"
    node_a_path.write_text(render(on_a, window, node=node_a, namespace=cluster.namespace))
    # a window that ended before the evictions has none of them
    before = Window(window.start - datetime.timedelta(hours=2), window.start)
    assert await collect(cluster.client, before, namespace=cluster.namespace) == []

    ARTIFACTS.mkdir(exist_ok=True)
    async with Chromium() as browser:
        page = await open_page(browser, html_path)
        marks: list[str] = await page.evaluate(VISIBLE_MARKS)
        assert Counter(marks) == Counter(outcomes.values())
        rows = await page.evaluate(NODE_ROWS)
        assert sorted(rows) == sorted([f"{node_a} (3)", f"{node_b} (1)", "(no node) (1)"])
        workloads = {tuple(row[:2]): row for row in await page.evaluate(TABLE.format(id="workloads"))}
        assert workloads[(cluster.namespace, "Deployment/web")][2:4] == ["3", str(web_evicted)]
        # db: one Pod blocked, its three attempts refused, blocked for as long as the retries took
        assert workloads[(cluster.namespace, "Deployment/db")][2:6] == ["1", "0", "1", "3"]
        assert workloads[(cluster.namespace, "(no controller)")][2] == "1"
        listed = await page.evaluate(TABLE.format(id="records"))
        assert len(listed) == 5
        # The drain that never finished stands at the top: db-0 on node B, held by a budget that
        # requires both of the Deployment's 2 Pods (minAvailable 2), flagged with its fix.
        stuck = {row[0]: row for row in await page.evaluate(TABLE.format(id="blocked-nodes"))}
        assert stuck[node_b][1] == "1" and f"{cluster.namespace}/db" in stuck[node_b][5], stuck
        flagged = await page.evaluate(
            "[...document.querySelectorAll('#impossible li')].map(li => li.textContent)"
        )
        assert any(f"{cluster.namespace}/db: it requires 2 healthy of 2 Pods" in text for text in flagged), (
            flagged
        )
        assert await page.evaluate(
            "document.getElementById('stuck').getBoundingClientRect().top"
            " < document.querySelector('svg.chart').getBoundingClientRect().top"
        )
        heights = await page.evaluate(
            "[...document.querySelectorAll('#records tbody tr')].map(r => r.offsetHeight)"
        )
        # one line each (13 px text, 4 px padding: about 27 px), however long the message or name
        assert max(heights) <= min(heights) + 1 and max(heights) < 36, heights
        # The hostile user name is shown as text and never ran.
        assert await page.evaluate("typeof window.__evictwatch_xss") == "undefined"
        assert await page.evaluate("document.scripts.length") == 1
        assert any(HOSTILE_USER in cell for row in listed for cell in row)
        assert HOSTILE_USER in workloads[(cluster.namespace, "Deployment/web")][7]
        png = await page.screenshot()
        (ARTIFACTS / "report.png").write_bytes(png)
        assert png_size(png)[0] == 1400

        # The legend hides an outcome; the filter narrows the list.
        await page.evaluate("document.querySelector('button[data-toggle=\"Evicted\"]').click()")
        remaining = Counter(o for o in outcomes.values() if o != "Evicted")
        assert Counter(await page.evaluate(VISIBLE_MARKS)) == remaining
        await page.evaluate(
            "(() => { const f = document.getElementById('filter'); f.value = 'ghost';"
            " f.dispatchEvent(new Event('input')); })()"
        )
        visible = await page.evaluate(
            "[...document.querySelectorAll('#records tbody tr')].filter(r => !r.hidden).length"
        )
        assert visible == 1
        assert await page.evaluate("document.getElementById('shown').textContent") == "1"

        node_page = await open_page(browser, node_a_path)
        assert Counter(await node_page.evaluate(VISIBLE_MARKS)) == Counter(outcomes[pod] for pod in web)

        await asyncio.sleep(0.2)  # late console events
        for opened in (page, node_page):
            assert opened.console_errors == [], opened.console_errors
            assert opened.requests == [opened.requests[0]] and opened.requests[0].startswith("file://"), (
                opened.requests
            )

    # --format png through the command: one picture, as wide as asked.
    png_path = ARTIFACTS / "report-cli.png"
    code, out, err = await run_report(
        "--kubeconfig",
        str(control_plane.kubeconfig_path),
        "-n",
        cluster.namespace,
        "--format",
        "png",
        "-o",
        str(png_path),
    )
    assert code == 0, err
    width, height = png_size(png_path.read_bytes())
    assert width == 1400 and height > 600

    # -o x.pdf: Chromium prints it.
    pdf_path = ARTIFACTS / "report-cli.pdf"
    code, out, err = await run_report(
        "--kubeconfig", str(control_plane.kubeconfig_path), "-n", cluster.namespace, "-o", str(pdf_path)
    )
    assert code == 0, err
    pdf = pdf_path.read_bytes()
    assert pdf.startswith(b"%PDF-") and b"%%EOF" in pdf[-1024:] and len(pdf) > 10_000


async def test_sample_reports_in_chromium() -> None:
    """A busy day (300 records, every section full) and the 10,000-record page, in the browser."""
    require_chromium()
    window = Window.last("12h", datetime.datetime(2026, 3, 2, 18, 0, tzinfo=UTC))
    ARTIFACTS.mkdir(exist_ok=True)
    async with Chromium() as browser:
        for count in (300, 10_000):
            records = sample_records(count, window)
            path = ARTIFACTS / f"report-sample-{count}.html"
            path.write_text(render(records, window), encoding="utf-8")
            page = await open_page(browser, path)
            marks = await page.evaluate(VISIBLE_MARKS)
            assert Counter(marks) == Counter(r["status"]["outcome"] for r in records)
            pressure = await page.evaluate(TABLE.format(id="pressure"))
            kubelet = Counter(r["spec"]["pressure"]["resource"] for r in records if "pressure" in r["spec"])
            assert {row[0]: int(row[1]) for row in pressure} == dict(kubelet)
            if count == 300:
                (ARTIFACTS / "report-sample.png").write_bytes(await page.screenshot())
            await asyncio.sleep(0.1)
            assert page.console_errors == [], page.console_errors
            assert page.requests == [path.as_uri()], page.requests
