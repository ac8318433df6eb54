#!/usr/bin/env bash
# Create .venv with the locked dependencies (uv.lock), installing uv itself first if it is missing.
# Works on a fresh Debian/Ubuntu machine that has python3 (3.11 or 3.12) and pip.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bootstrap] %s\n' "$*"; }

if command -v uv >/dev/null 2>&1; then
  UV=(uv)
elif python3 -m uv --version >/dev/null 2>&1; then
  UV=(python3 -m uv)
else
  say "installing uv (the package manager that resolves uv.lock) with pip"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-pip python3-venv
    else
      say "python3 has no pip: install it (Debian/Ubuntu: sudo apt-get install python3-pip python3-venv) and re-run"
      exit 1
    fi
  fi
  python3 -m pip install --quiet --user uv 2>/dev/null \
    || python3 -m pip install --quiet --user --break-system-packages uv 2>/dev/null \
    || python3 -m pip install --quiet uv
  UV=(python3 -m uv)
fi

# Trust the machine's certificate store (corporate proxies add their own CA there); older uv
# releases call the same switch UV_NATIVE_TLS.
export UV_SYSTEM_CERTS=1 UV_NATIVE_TLS=1
# The optional engines (the `spark` extra: dbt-spark and PySpark; `celery`: dagster-celery; `k8s`: dagster-k8s) are
# installed by default because the test suite and `make bench` exercise them; ANALYTICSPRO_EXTRAS="" leaves them out (a
# PostgreSQL-only deployment), ANALYTICSPRO_EXTRAS="celery" picks some.
extras=()
for extra in ${ANALYTICSPRO_EXTRAS-spark celery k8s}; do extras+=(--extra "$extra"); done
say "installing locked dependencies into .venv ($("${UV[@]}" --version); extras: ${ANALYTICSPRO_EXTRAS-spark celery k8s})"
# --frozen: install exactly uv.lock; bytecode compiled now so Dagster and dbt start fast.
UV_COMPILE_BYTECODE=1 "${UV[@]}" sync --frozen --python "$(command -v python3)" --quiet "${extras[@]}"

# Debian/Ubuntu packages, installed when missing and we may (root with apt-get); otherwise say what to run.
apt_install() {
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1 \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null; }
  else
    say "missing: $* — install them (sudo apt-get install $*) and re-run"
    return 1
  fi
}

# The web dashboard serves its browser libraries itself (ECharts, GraphiQL and React: no CDN at run time), from
# the npm packages locked in dashboards/web/package-lock.json.
if ! command -v npm >/dev/null 2>&1; then
  say "installing Node.js and npm (the dashboard's browser libraries come from the npm registry)"
  apt_install nodejs npm
fi
web=dashboards/web
if [ ! -f "$web/node_modules/.package-lock.json" ] || [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
  say "installing the dashboard's browser libraries (npm ci in $web)"
  (cd "$web" && npm ci --omit=dev --no-audit --no-fund --ignore-scripts --loglevel=error)
fi

# Spark (the `spark` extra, `analyticspro materialize --engine spark`) runs on a Java 17+ runtime.
if [[ " ${ANALYTICSPRO_EXTRAS-spark celery k8s} " == *" spark "* ]] && ! java -version 2>&1 | grep -Eq 'version "(1[7-9]|2[0-9])'; then
  say "installing a Java runtime (Debian's headless OpenJDK) for Spark"
  apt_install default-jre-headless || say "Spark needs Java 17 or newer: install it and set JAVA_HOME"
fi

# The browser test drives Debian's Chromium with Playwright (Playwright's own browser download is not used).
if ! command -v chromium >/dev/null 2>&1 && [ "${ANALYTICSPRO_SKIP_CHROMIUM:-0}" != 1 ]; then
  say "installing Chromium (Debian's package) for the dashboard's browser test"
  apt_install chromium || say "the browser test will fail until Chromium is installed"
fi
say "ok: $(.venv/bin/python --version), analyticspro at .venv/bin/analyticspro"
