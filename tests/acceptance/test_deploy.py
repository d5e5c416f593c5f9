"""deploy/: the alert rules (promtool), the Grafana dashboard, the Kubernetes example.

What can be checked offline is checked here: the rules by `promtool check rules` and their unit
tests (`promtool test rules`), every PromQL expression against the metric names a real
`PrometheusMetrics` registry exports, the manifests' structure, and the KEDA trigger's query
against a migrated database. Nothing here needs a cluster, Prometheus or Grafana server.
"""

import json
import re
import shutil
import subprocess
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from worker.core.db import asyncpg_dsn
from worker.core.settings import Settings
from worker.core.trading_calendar import shared_calendar
from worker.host.tables import Mirrored
from worker.ops.prometheus import PrometheusMetrics
from worker.ops.web import StatusServer
from worker.queue.store import Job
from worker.sql import queue as sql

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yml"
DASHBOARD = DEPLOY / "grafana" / "dashboard.json"
KUBERNETES = DEPLOY / "kubernetes"

# Added by the cancel/pause work (issue 21, items 1-2): exported once that work is merged; the
# rules and the dashboard already use them. (jobs_finished_total{outcome="cancelled"} needs no
# entry: it is a new label value of an exported counter.)
# The pause gauges (worker/control.py), exported once a pause row exists: the scrape below has one.
PAUSE_GAUGES = {
    "symbol_onboarding_source_paused",
    "symbol_onboarding_source_pause_remaining_seconds",
    "symbol_onboarding_queue_paused",
}
# Written by Prometheus itself for every target, not by the worker.
PROMETHEUS_OWN = {"up"}
# A metric name in an expression: ours, and the process_* metrics prometheus_client adds.
METRIC_NAME = re.compile(r"\b(?:symbol_onboarding_|process_)[a-zA-Z0-9_:]*|\bup\b")
# Grafana's variables, replaced by what Prometheus would see, to check the expressions' syntax.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__range": "6h", "$job": ".+"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool not found: it comes with Debian's `prometheus` package (`apt-get install"
            " prometheus`; .ci/run installs it)"
        )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_panels() -> list[dict[str, Any]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [p for p in panels if p["type"] != "row"]


def dashboard_expressions() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p["targets"]]


def metric_names(expression: str) -> set[str]:
    """The metric names an expression reads (quoted label values left out)."""
    return set(METRIC_NAME.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', expression)))


# --- the alert rules -----------------------------------------------------------------------------


def test_promtool_check_rules_accepts_the_alert_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alert_rules_pass() -> None:
    result = run_promtool("test", "rules", str(ALERTS_TEST))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in yaml.safe_load(ALERTS_TEST.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (fired if case["exp_alerts"] else quiet).add(case["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fired == set(), "never expected to fire"
    assert names - quiet == set(), "never expected to stay quiet"


def test_every_alert_says_what_happened_and_which_command_to_run() -> None:
    rules = alert_rules()
    assert {
        "SymbolOnboardingQueueBacklog",
        "SymbolOnboardingJobsFailing",
        "SymbolOnboardingSymbolsBehind",
        "SymbolOnboardingDatabaseDown",
        "SymbolOnboardingSourcePaused",
        "SymbolOnboardingQueuePaused",
        "SymbolOnboardingNoWorker",
        "SymbolOnboardingWorkerDown",
        "SymbolOnboardingBetasUnavailable",
    } <= {rule["alert"] for rule in rules}
    for rule in rules:
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), rule["alert"]
        assert "`python -m worker " in annotations["runbook"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]


def test_the_dashboards_expressions_are_valid_promql(tmp_path: Path) -> None:
    """Each expression, Grafana's variables replaced, as a recording rule for promtool."""
    rules = []
    for i, expression in enumerate(dashboard_expressions()):
        for variable, value in GRAFANA_VARIABLES.items():
            expression = expression.replace(variable, value)
        assert "$" not in expression, f"an unknown Grafana variable in {expression}"
        rules.append({"record": f"dashboard:expression_{i}", "expr": expression})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --- every expression names only what the worker exports -----------------------------------------


async def exported_names(database_url: str) -> set[str]:
    """Every sample name of a real registry's scrape, after one of everything was recorded."""
    metrics = PrometheusMetrics("w-1", "9.9")
    metrics.factors_state = lambda: (True, None)
    now = datetime.now(UTC)
    job = Job(uuid.uuid4(), "AAPL", "normal", 1, None, now, now)
    metrics.job_started(job)
    metrics.job_finished(job, "completed", 0.5)
    metrics.rows_written("yahoo", 250)
    metrics.rows_skipped("yahoo", {"close_price missing": 1})
    metrics.provider_request("yahoo", "200")
    metrics.source_paused("yahoo")
    metrics.rate_limit_deferral("yahoo")
    metrics.database_reconnect("claim")
    metrics.host_prices_mirrored(
        "yahoo",
        Mirrored(
            rows_written=3,
            host_rows_kept=1,
            host_disagrees=1,
            out_of_range=1,
            volume_too_large=1,
            examples=[],
        ),
    )
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:  # a source paused, so that the per-source pause gauges have a sample
        await conn.execute(
            "INSERT INTO price_source_state (source, paused_until, pause_reason, updated_at)"
            " VALUES ('yahoo', now() + interval '1 hour', 'scrape test', now())"
        )
    finally:
        await conn.close()
    settings = Settings(http_port=0)
    # Built before the scrape, as in a running worker: the first build imports exchange_calendars,
    # seconds on a loaded machine, longer than a scrape's read may take.
    shared_calendar(settings.refresh_calendar)
    server = StatusServer(settings, database_url, metrics, worker_id="w-1")
    base = await server.start()
    try:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            text = (await client.get("/metrics")).text
    finally:
        await server.close()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


async def test_dashboard_and_rules_name_only_exported_metrics(database_url: str) -> None:
    exported = await exported_names(database_url)
    # The scrape read the database (queue and universe gauges) and had every recorder's family.
    for name in (
        "symbol_onboarding_database_up",
        "symbol_onboarding_queue_jobs",
        "symbol_onboarding_symbols_behind",
        "symbol_onboarding_factors_available",
        "symbol_onboarding_job_duration_seconds_bucket",
        "symbol_onboarding_host_price_rows_refused_total",
    ):
        assert name in exported, name
    assert PAUSE_GAUGES <= exported
    known = exported | PROMETHEUS_OWN
    expressions = [rule["expr"] for rule in alert_rules()] + dashboard_expressions()
    for expression in expressions:
        names = metric_names(expression)
        assert names, f"no metric name found in {expression}"
        assert names <= known, f"{sorted(names - known)} not exported, in {expression}"


async def test_the_dashboard_shows_every_metric_the_worker_exports(database_url: str) -> None:
    """A new worker metric needs a panel: the reconciliation the other way round."""
    shown = {name for e in dashboard_expressions() for name in metric_names(e)}
    families = {
        re.sub(r"_(total|bucket|sum|count)$", "", name)
        for name in await exported_names(database_url)
        if name.startswith("symbol_onboarding_")
    }
    shown_families = {re.sub(r"_(total|bucket|sum|count)$", "", name) for name in shown}
    assert families - shown_families == set()
    assert PAUSE_GAUGES <= shown


def test_the_dashboard_imports_with_a_datasource_of_the_users_choice() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]


# --- Kubernetes ----------------------------------------------------------------------------------


def manifests() -> dict[str, dict[str, Any]]:
    """Every document under deploy/kubernetes, by kind (one of each)."""
    by_kind: dict[str, dict[str, Any]] = {}
    for path in sorted(KUBERNETES.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            assert document["kind"] not in by_kind, f"two {document['kind']}s"
            by_kind[document["kind"]] = document
    return by_kind


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container["env"]}


def test_the_manifests_are_the_ones_documented() -> None:
    found = manifests()
    assert set(found) == {
        "Deployment",
        "PodDisruptionBudget",
        "ScaledObject",
        "Job",
        "Kustomization",
    }
    listed = set(found["Kustomization"]["resources"])
    assert listed == {"deployment.yaml", "pdb.yaml", "scaledobject.yaml"}
    assert all((KUBERNETES / name).is_file() for name in listed)


def test_the_deployment_probes_the_worker_and_outlasts_its_shutdown_grace() -> None:
    deployment = manifests()["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "replicas" not in deployment["spec"], "the HPA owns the count"
    (container,) = pod["containers"]
    env = env_of(container)
    assert container["command"] == ["python", "-m", "worker", "run"]
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_URL"
    assert "value" not in env["DATABASE_URL"], "the URL comes from the Secret only"
    assert env["WORKER_HTTP_HOST"]["value"] == "0.0.0.0"
    port = int(env["WORKER_HTTP_PORT"]["value"])
    (named,) = [p for p in container["ports"] if p["name"] == "http"]
    assert named["containerPort"] == port
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(port)
    # Settings reads the manifest's values as the worker would: a typo here fails here.
    settings = Settings.from_env({name: e["value"] for name, e in env.items() if "value" in e})
    assert settings.http_port == port
    # The grace to finish jobs, then the hand-back of the rest, within the kill deadline.
    assert pod["terminationGracePeriodSeconds"] >= settings.shutdown_grace_s + 15
    resources = container["resources"]
    assert resources["requests"]["cpu"] and resources["requests"]["memory"]
    assert resources["limits"]["memory"]


def test_the_disruption_budget_and_the_scaler_target_the_deployment() -> None:
    found = manifests()
    deployment, budget, scaler = (
        found["Deployment"],
        found["PodDisruptionBudget"],
        found["ScaledObject"],
    )
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    # At the floor of one replica a minAvailable of 1 would block every node drain.
    assert budget["spec"]["maxUnavailable"] == 1 and "minAvailable" not in budget["spec"]
    spec = scaler["spec"]
    assert spec["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert spec["minReplicaCount"] >= 1, "the daily schedule runs inside a running worker"
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]
    (trigger,) = spec["triggers"]
    assert trigger["type"] == "postgresql"
    metadata = trigger["metadata"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert metadata["connectionFromEnv"] in env_of(container)
    assert float(metadata["targetQueryValue"]) > 0
    assert " ".join(metadata["query"].split()) == " ".join(sql.PENDING_FOR_SCALING.split())


def test_the_migration_job_migrates_with_the_same_secret() -> None:
    job = manifests()["Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["python", "-m", "worker", "migrate"]
    assert env_of(container)["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "symbol-onboarding-database",
        "key": "DATABASE_URL",
    }
    (worker,) = manifests()["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert env_of(worker)["DATABASE_URL"] == env_of(container)["DATABASE_URL"]
    assert container["image"] == worker["image"]


async def scaling_query(conn: asyncpg.Connection) -> int:
    """The ScaledObject's query as KEDA runs it: the manifest's text, one integer back."""
    query = manifests()["ScaledObject"]["spec"]["triggers"][0]["metadata"]["query"]
    rows = await conn.fetch(query)
    assert len(rows) == 1 and len(rows[0]) == 1
    value = rows[0][0]
    assert isinstance(value, int)
    return value


async def test_the_scaling_query_counts_runnable_pending_jobs_only(conn) -> None:
    assert await scaling_query(conn) == 0
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority, kind, status, run_after,
                                             started_at, locked_by, attempts, completed_at)
        VALUES ('RUN1', 'high', 'onboarding', 'pending', now() - interval '1 minute',
                NULL, NULL, 0, NULL),
               ('RUN2', 'low', 'onboarding', 'pending', now(), NULL, NULL, 0, NULL),
               ('RUN3', 'normal', 'refresh', 'pending', now() - interval '1 hour',
                NULL, NULL, 2, NULL),
               -- retry backoff, and a job deferred behind a paused source
               ('LATER1', 'normal', 'onboarding', 'pending', now() + interval '10 minutes',
                NULL, NULL, 1, NULL),
               ('LATER2', 'high', 'refresh', 'pending', now() + interval '30 seconds',
                NULL, NULL, 0, NULL),
               ('BUSY', 'normal', 'onboarding', 'processing', now() - interval '1 minute',
                now(), 'w-1', 1, NULL),
               ('DONE', 'normal', 'onboarding', 'completed', now() - interval '1 hour',
                now(), 'w-1', 1, now()),
               ('GONE', 'normal', 'onboarding', 'failed', now() - interval '1 hour',
                now(), 'w-1', 5, now())
        """
    )
    assert await scaling_query(conn) == 3
    # The worker's claim agrees: it takes exactly the jobs counted, and nothing else.
    claimed = await conn.fetch(sql.CLAIM, "w-2", 100)
    assert sorted(r["symbol"] for r in claimed) == ["RUN1", "RUN2", "RUN3"]
    assert await scaling_query(conn) == 0
    # A delayed job counts once its time comes.
    await conn.execute(
        "UPDATE symbol_onboarding_queue SET run_after = now() WHERE symbol = 'LATER2'"
    )
    assert await scaling_query(conn) == 1
    # A paused queue: nothing is runnable, so a paused backlog does not scale workers up.
    await conn.execute(
        "INSERT INTO symbol_onboarding_queue_pauses (queue, paused_until, paused_by)"
        " VALUES ('default', now() + interval '1 hour', 'test')"
    )
    assert await scaling_query(conn) == 0


async def test_the_scaling_query_reads_no_finished_rows(conn) -> None:
    """KEDA polls every 15 s: an index on the pending rows, not a scan of the whole table."""
    await conn.execute("ALTER TABLE symbol_onboarding_queue DISABLE TRIGGER USER")
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority, status, completed_at)
        SELECT 'F' || i, 'normal', 'completed', now() FROM generate_series(1, 100000) i
        """
    )
    await conn.execute(
        """
        INSERT INTO symbol_onboarding_queue (symbol, priority, run_after)
        SELECT 'P' || i, 'normal', now() + (i % 2) * interval '1 hour'
        FROM generate_series(1, 2000) i
        """
    )
    await conn.execute("ALTER TABLE symbol_onboarding_queue ENABLE TRIGGER USER")
    await conn.execute("ANALYZE symbol_onboarding_queue")
    plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql.PENDING_FOR_SCALING))
    # The queue's own rows through an index; the pause table (a row per paused queue) may be
    # scanned, as in the claim.
    assert "Seq Scan on symbol_onboarding_queue " not in plan + " ", plan
    assert "Seq Scan on symbol_onboarding_queue\n" not in plan + "\n", plan
    assert "Index Scan" in plan, plan
    assert await scaling_query(conn) == 1000
