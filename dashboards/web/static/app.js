// The AnalyticsPro web dashboard: plain JavaScript and ECharts (served by the dashboards service itself).
// Every number comes from the GraphQL API at /graphql with the bearer token kept in this browser.
"use strict";

const TOKEN_KEY = "analyticspro-token";
const charts = {};
let catalogue = null;

function token() {
  return localStorage.getItem(TOKEN_KEY);
}

function showError(message) {
  const banner = document.getElementById("banner");
  banner.textContent = message;
  banner.hidden = false;
}

async function gql(query, variables) {
  const response = await fetch("/graphql", {
    method: "POST",
    headers: { "Content-Type": "application/json", Authorization: "Bearer " + token() },
    body: JSON.stringify({ query, variables: variables || {} }),
  });
  if (response.status === 401) {
    localStorage.removeItem(TOKEN_KEY);
    document.getElementById("main").hidden = true;
    document.getElementById("login").hidden = false;
    throw new Error("The API refused the token: enter a valid one.");
  }
  const payload = await response.json();
  if (payload.errors && payload.errors.length) {
    throw new Error(payload.errors.map((e) => e.message).join("\n"));
  }
  return payload.data;
}

function chart(id) {
  if (!charts[id]) {
    charts[id] = echarts.init(document.getElementById(id), null, { renderer: "canvas" });
    window.addEventListener("resize", () => charts[id].resize());
  }
  return charts[id];
}

function markRendered(id, points) {
  const element = document.getElementById(id);
  element.dataset.rendered = points > 0 ? "true" : "empty";
  element.dataset.points = String(points);
}

const fmt = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });
const pct = (value) => (value === null || value === undefined ? "–" : (100 * value).toFixed(1) + "%");

// -- hot metrics tiles, refreshed every 5 s -----------------------------------------------------------------
async function refreshHot() {
  try {
    const data = await gql(
      "query Hot { hotMetrics { date signups dau events revenue activeLast5m updatedAt source } }"
    );
    const hot = data.hotMetrics;
    document.getElementById("hot-signups").textContent = fmt.format(hot.signups);
    document.getElementById("hot-dau").textContent = fmt.format(hot.dau);
    document.getElementById("hot-events").textContent = fmt.format(hot.events);
    document.getElementById("hot-revenue").textContent = fmt.format(hot.revenue);
    document.getElementById("hot-active").textContent = hot.activeLast5m === null ? "–" : fmt.format(hot.activeLast5m);
    document.getElementById("hot-source").textContent = hot.source;
    document.getElementById("hot-updated").textContent = hot.updatedAt || "–";
    const tiles = document.getElementById("hot");
    tiles.dataset.rendered = "true";
    tiles.dataset.refreshes = String(Number(tiles.dataset.refreshes || 0) + 1);
  } catch (error) {
    showError("Hot metrics: " + error.message);
  }
}

// -- the overview charts ----------------------------------------------------------------------------------
const OVERVIEW = `
query Overview($range: DateRangePreset!) {
  dailyMetrics(metrics: ["dau", "wau", "mau"], dateRange: {preset: $range}) { date metric value }
  funnel(name: "default", dateRange: {preset: $range}) {
    steps { index name persons conversionFromPrevious conversionFromStart dropOff dropOffRate }
  }
  retention(grain: "week", dateRange: {preset: LAST_90_DAYS}) { cohorts { cohortStart size rates } }
  revenue(dateRange: {preset: LAST_12_MONTHS}) {
    month mrr newMrr expansionMrr contractionMrr churnedMrr reactivationMrr
  }
}`;

function drawActive(points) {
  const days = [...new Set(points.map((p) => p.date))];
  const series = ["dau", "wau", "mau"].map((metric) => ({
    name: metric.toUpperCase(),
    type: "line",
    showSymbol: false,
    data: days.map((day) => {
      const found = points.find((p) => p.date === day && p.metric === metric);
      return found ? found.value : null;
    }),
  }));
  chart("chart-active").setOption(
    {
      tooltip: { trigger: "axis" },
      legend: { top: 0, left: "center" },
      grid: { left: 50, right: 20, top: 40, bottom: 30 },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value" },
      series,
    },
    true
  );
  markRendered("chart-active", points.length);
}

function drawFunnel(funnel) {
  const steps = funnel.steps;
  chart("chart-funnel").setOption(
    {
      tooltip: {
        trigger: "axis",
        formatter: (items) => {
          const step = steps[items[0].dataIndex];
          // drop-off (docs/metrics.md): persons who reached the previous step but not this one
          const dropOff = items[0].dataIndex === 0 ? "" :
            `<br>drop-off from previous: ${fmt.format(step.dropOff)} (${pct(step.dropOffRate)})`;
          return `${step.name}<br>${fmt.format(step.persons)} persons<br>from previous: ${pct(step.conversionFromPrevious)}` +
            dropOff;
        },
      },
      grid: { left: 60, right: 20, top: 30, bottom: 30 },
      xAxis: { type: "category", data: steps.map((s) => s.name) },
      yAxis: { type: "value" },
      series: [
        {
          type: "bar",
          data: steps.map((s) => s.persons),
          label: {
            show: true,
            position: "top",
            formatter: (item) => {
              const step = steps[item.dataIndex];
              return item.dataIndex === 0 ? fmt.format(step.persons) : `${fmt.format(step.persons)} (${pct(step.conversionFromPrevious)})`;
            },
          },
        },
      ],
    },
    true
  );
  const last = steps[steps.length - 1];
  document.getElementById("funnel-note").textContent = steps.length
    ? `overall conversion ${pct(last.conversionFromStart)}`
    : "no entries in this range";
  markRendered("chart-funnel", steps.length);
}

function drawRetention(cohorts) {
  const periods = Math.max(0, ...cohorts.map((c) => c.rates.length));
  const data = [];
  cohorts.forEach((cohort, row) => {
    cohort.rates.forEach((rate, period) => data.push([period, row, Math.round(rate * 1000) / 10]));
  });
  chart("chart-retention").setOption(
    {
      tooltip: {
        formatter: (item) => `${cohorts[item.value[1]].cohortStart} (size ${cohorts[item.value[1]].size}), week ${item.value[0]}: ${item.value[2]}%`,
      },
      grid: { left: 90, right: 20, top: 10, bottom: 80 },
      xAxis: { type: "category", data: [...Array(periods).keys()].map((p) => "W" + p), splitArea: { show: true } },
      yAxis: { type: "category", data: cohorts.map((c) => c.cohortStart), inverse: true, splitArea: { show: true } },
      visualMap: { min: 0, max: 100, calculable: true, orient: "horizontal", left: "center", bottom: 0, itemHeight: 120 },
      series: [{ type: "heatmap", data, label: { show: cohorts.length <= 14, fontSize: 10 } }],
    },
    true
  );
  markRendered("chart-retention", data.length);
}

function drawRevenue(months) {
  const names = months.map((m) => m.month.slice(0, 7));
  const stack = (name, key, sign) => ({
    name,
    type: "bar",
    stack: "movements",
    data: months.map((m) => sign * m[key]),
  });
  chart("chart-revenue").setOption(
    {
      tooltip: { trigger: "axis" },
      legend: { top: 0, left: "center" },
      grid: { left: 60, right: 60, top: 60, bottom: 30 },
      xAxis: { type: "category", data: names },
      yAxis: [{ type: "value", name: "movement" }, { type: "value", name: "MRR" }],
      series: [
        stack("New", "newMrr", 1),
        stack("Expansion", "expansionMrr", 1),
        stack("Reactivation", "reactivationMrr", 1),
        stack("Contraction", "contractionMrr", -1),
        stack("Churned", "churnedMrr", -1),
        { name: "MRR", type: "line", yAxisIndex: 1, data: months.map((m) => m.mrr) },
      ],
    },
    true
  );
  markRendered("chart-revenue", months.length);
}

async function refreshOverview() {
  const range = document.getElementById("range").value;
  try {
    const data = await gql(OVERVIEW, { range });
    drawActive(data.dailyMetrics);
    drawFunnel(data.funnel);
    drawRetention(data.retention.cohorts);
    drawRevenue(data.revenue);
  } catch (error) {
    showError("Dashboard: " + error.message);
  }
}

// -- the query builder ------------------------------------------------------------------------------------
const OPERATORS = ["=", "!=", ">", "<", "contains", "is set", "is not set"];

function option(select, value, text) {
  const element = document.createElement("option");
  element.value = value;
  element.textContent = text || value;
  select.appendChild(element);
}

function fieldChoices() {
  const event = document.getElementById("q-event").value;
  const found = catalogue.events.find((e) => e.name === event);
  const properties = found ? found.properties.map((p) => "event." + p) : [];
  return properties.concat(catalogue.personFields.map((f) => "user." + f));
}

function refreshGroupChoices() {
  const group = document.getElementById("q-group");
  const previous = group.value;
  group.innerHTML = "";
  ["day", "week", "month"].forEach((grain) => option(group, grain));
  fieldChoices().forEach((field) => option(group, field));
  if ([...group.options].some((o) => o.value === previous)) group.value = previous;
  document.querySelectorAll("#q-filters .filter select.field").forEach((select) => {
    const kept = select.value;
    select.innerHTML = "";
    fieldChoices().forEach((field) => option(select, field));
    if ([...select.options].some((o) => o.value === kept)) select.value = kept;
  });
}

function addFilter(field, op, value) {
  const row = document.createElement("div");
  row.className = "filter";
  const fieldSelect = document.createElement("select");
  fieldSelect.className = "field";
  fieldChoices().forEach((choice) => option(fieldSelect, choice));
  if (field) fieldSelect.value = field;
  const opSelect = document.createElement("select");
  opSelect.className = "op";
  OPERATORS.forEach((choice) => option(opSelect, choice));
  if (op) opSelect.value = op;
  const input = document.createElement("input");
  input.className = "value";
  input.placeholder = "value";
  input.value = value || "";
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "×";
  remove.onclick = () => row.remove();
  row.append("where", fieldSelect, opSelect, input, remove);
  document.getElementById("q-filters").appendChild(row);
}

function question() {
  const filters = [...document.querySelectorAll("#q-filters .filter")].map((row) => {
    const op = row.querySelector(".op").value;
    return { field: row.querySelector(".field").value, op, value: op.startsWith("is ") ? null : row.querySelector(".value").value };
  });
  return {
    event: document.getElementById("q-event").value,
    groupBy: document.getElementById("q-group").value,
    filters,
    range: document.getElementById("range").value,
  };
}

const INSIGHT = `
query Insight($event: String!, $filters: [FilterInput!], $groupBy: String!, $range: DateRangePreset!) {
  insight(event: $event, filters: $filters, groupBy: $groupBy, dateRange: {preset: $range}) {
    rows { bucket group events persons } truncated
  }
}`;

async function runInsight(event) {
  if (event) event.preventDefault();
  const q = question();
  const status = document.getElementById("q-status");
  status.textContent = "running…";
  const started = performance.now();
  try {
    const data = await gql(INSIGHT, { event: q.event, filters: q.filters, groupBy: q.groupBy, range: q.range });
    const answer = data.insight;
    const byDate = ["day", "week", "month"].includes(q.groupBy);
    const labels = answer.rows.map((r) => (byDate ? r.bucket : r.group));
    chart("chart-insight").setOption(
      {
        tooltip: { trigger: "axis" },
        grid: { left: 60, right: 20, top: 30, bottom: 60 },
        xAxis: { type: "category", data: labels, axisLabel: { rotate: byDate ? 0 : 30 } },
        yAxis: { type: "value" },
        series: [{ name: q.event, type: byDate ? "line" : "bar", data: answer.rows.map((r) => r.events) }],
      },
      true
    );
    markRendered("chart-insight", answer.rows.length);
    const table = document.getElementById("insight-table");
    table.innerHTML = "<tr><th>" + (byDate ? q.groupBy : q.groupBy) + "</th><th>events</th><th>persons</th></tr>" +
      answer.rows.map((r, i) => `<tr><td></td><td>${fmt.format(r.events)}</td><td>${r.persons === null ? "–" : fmt.format(r.persons)}</td></tr>`).join("");
    [...table.querySelectorAll("tr td:first-child")].forEach((cell, i) => (cell.textContent = labels[i]));
    const took = Math.round(performance.now() - started);
    status.textContent = `exact, ${answer.rows.length} rows` +
      (answer.truncated ? " (the 25 largest groups; the rest are one group, other)" : "") + `, ${took} ms`;
  } catch (error) {
    status.textContent = "";
    showError("Query builder: " + error.message);
  }
}

async function exportInsight() {
  const q = question();
  const status = document.getElementById("q-status");
  try {
    const data = await gql(
      `mutation Export($event: String!, $filters: [FilterInput!], $groupBy: String!, $range: DateRangePreset!) {
        exportInsight(event: $event, filters: $filters, groupBy: $groupBy, dateRange: {preset: $range}) { id status }
      }`,
      { event: q.event, filters: q.filters, groupBy: q.groupBy, range: q.range }
    );
    const id = data.exportInsight.id;
    status.textContent = `export ${id}: queued`;
    const poll = async () => {
      const state = (await gql("query S($id: ID!) { exportStatus(id: $id) { status location rows message } }", { id })).exportStatus;
      status.textContent = `export ${id}: ${state.status}` + (state.message ? ` (${state.message})` : "") +
        (state.location ? ` → ${state.location} (${state.rows} rows)` : "");
      if (state.status !== "SUCCESS" && state.status !== "FAILURE") setTimeout(poll, 1500);
    };
    setTimeout(poll, 1000);
  } catch (error) {
    showError("Export: " + error.message);
  }
}

async function loadCatalogue() {
  const data = await gql("query C { catalogue { events { name properties } personFields operators } }");
  catalogue = data.catalogue;
  const eventSelect = document.getElementById("q-event");
  eventSelect.innerHTML = "";
  catalogue.events.forEach((e) => option(eventSelect, e.name));
  const preferred = catalogue.events.find((e) => e.name === "purchase_completed");
  if (preferred) eventSelect.value = preferred.name;
  refreshGroupChoices();
}

// -- start ------------------------------------------------------------------------------------------------
async function start() {
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  try {
    await loadCatalogue();
    setUpInsights(); // insights.js: its step editor lists the catalogue's events
  } catch (error) {
    showError("Catalogue: " + error.message);
  }
  await Promise.all([refreshHot(), refreshOverview()]);
  setInterval(refreshHot, 5000);
}

document.getElementById("range").addEventListener("change", refreshOverview);
document.getElementById("q-event").addEventListener("change", refreshGroupChoices);
document.getElementById("q-add-filter").addEventListener("click", () => addFilter());
document.getElementById("q-export").addEventListener("click", exportInsight);
document.getElementById("insight-form").addEventListener("submit", runInsight);
document.getElementById("login").addEventListener("submit", (event) => {
  event.preventDefault();
  localStorage.setItem(TOKEN_KEY, document.getElementById("token").value.trim());
  start();
});

const fromFragment = new URLSearchParams(location.hash.slice(1)).get("token");
if (fromFragment) {
  localStorage.setItem(TOKEN_KEY, fromFragment);
  history.replaceState(null, "", location.pathname);
}
if (token()) {
  start();
} else {
  document.getElementById("login").hidden = false;
}
