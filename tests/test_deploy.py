"""The Kubernetes files in deploy/ agree with the code: no cluster here, so what can drift is checked instead.

The code location the Helm values, the Dockerfile and workspace.yaml name is one importable module; every
setting the ConfigMap and Secret set is one the code reads; the run queue rules and retries are the single-machine
instance's (deploy/dagster.yaml); the image installs extras that exist.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import yaml

import cli

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"


def _values() -> dict:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text())


def _manifests(name: str) -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / name).read_text()) if doc]


def test_one_code_location_module_everywhere():
    deployment = _values()["dagster-user-deployments"]["deployments"][0]
    args = deployment["dagsterApiGrpcArgs"]
    module = args[args.index("--module-name") + 1]
    workspace = yaml.safe_load((ROOT / "workspace.yaml").read_text())
    assert workspace["load_from"][0]["python_module"]["module_name"] == module
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert f'"--module-name", "{module}"' in dockerfile
    assert str(deployment["port"]) in dockerfile  # EXPOSE and --port
    assert hasattr(importlib.import_module(module), "defs")


def test_every_configured_setting_is_read_by_the_code():
    source = "\n".join(
        path.read_text()
        for folder in ("orchestration", "ingestion", "dbt_project")
        for path in (ROOT / folder).rglob("*")
        if path.suffix in {".py", ".yml", ".sql"} and "target" not in path.parts
    )
    configured = {}
    for doc in _manifests("config.yaml"):
        configured.update(doc.get("data") or doc.get("stringData") or {})
    third_party = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "postgresql-password"}  # boto3 / the chart
    unread = [key for key in configured if key not in third_party and f'"{key}"' not in source and key not in source]
    assert not unread, f"deploy/k8s/config.yaml sets settings no code reads: {unread}"
    # what the chart's pods and the workers are told to load exists
    values = _values()
    names = {doc["metadata"]["name"] for doc in _manifests("config.yaml")}
    deployment = values["dagster-user-deployments"]["deployments"][0]
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    for sources in (deployment, launcher):
        assert {s["name"] for s in sources["envConfigMaps"] + sources["envSecrets"]} <= names
    assert values["global"]["postgresqlSecretName"] in names
    for manifest, command in (("celery-workers.yaml", "worker"), ("realtime.yaml", "realtime")):
        container = _manifests(manifest)[0]["spec"]["template"]["spec"]["containers"][0]
        assert {next(iter(s.values()))["name"] for s in container["envFrom"]} <= names
        assert container["args"][:2] == ["analyticspro", command]
        assert cli.build_parser().parse_args(container["args"][1:]).func  # a command the CLI knows


def test_run_queue_and_retries_match_the_single_machine_instance():
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    daemon = _values()["dagsterDaemon"]
    queued = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queued["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert queued["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    assert daemon["runRetries"]["maxRetries"] == instance["run_retries"]["max_retries"]
    assert daemon["runRetries"]["retryOnAssetOrOpFailure"] == instance["run_retries"]["retry_on_asset_or_op_failure"]


def test_the_image_installs_extras_that_exist_with_the_locked_dagster():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extras = set(project["project"]["optional-dependencies"])
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    used = set(re.findall(r"--extra (\w+)", dockerfile))
    assert used == {"k8s", "celery", "spark"} and used <= extras
    dagster = next(d for d in project["project"]["dependencies"] if d.startswith("dagster=="))
    assert f"--version {dagster.split('==')[1]}" in (DEPLOY / "helm" / "values.yaml").read_text()


def test_the_image_copies_every_package_of_the_wheel():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    copied = re.findall(r"^COPY (\w+)/ \1/$", (DEPLOY / "Dockerfile").read_text(), flags=re.MULTILINE)
    assert set(packages) == {"common", "ingestion", "warehouse", "insights", "dashboards", "orchestration", "cli"}
    assert set(packages) <= set(copied)
    # and the command's entry point lives in one of them
    assert project["project"]["scripts"]["analyticspro"] == "cli:main"
