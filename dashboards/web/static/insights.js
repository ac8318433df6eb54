// The insights builder: funnels, trends, retention, paths, stickiness and lifecycle, asked through the GraphQL field
// `query(spec)` with the same JSON spec `analyticspro query` takes (shown under "Spec"). Uses app.js's gql, chart,
// option, fmt, pct, markRendered, showError and catalogue.
"use strict";

const KIND_ROWS = {
  funnel: { label: "Step", min: 2, max: 10, initial: 3 },
  trends: { label: "Series", min: 1, max: 10, initial: 1 },
  retention: { label: "", min: 2, max: 2, initial: 2, names: ["Start with", "Came back with"] },
  paths: { label: "", min: 1, max: 1, initial: 1, names: ["After"] },
  stickiness: { label: "", min: 1, max: 1, initial: 1, names: ["Did"] },
  lifecycle: { label: "", min: 1, max: 1, initial: 1, names: ["Did"] },
};
const MATHS = ["total", "persons", "sum", "avg", "min", "max"];
const PAGE = "page path…";

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function rowFields(eventName) {
  const found = catalogue.events.find((e) => e.name === eventName);
  const properties = found ? found.properties.map((p) => "event." + p) : [];
  return properties.concat(catalogue.personFields.map((f) => "user." + f));
}

function stepRow(index) {
  const kind = document.getElementById("i-kind").value;
  const layout = KIND_ROWS[kind];
  const row = document.createElement("div");
  row.className = "step";
  const title = document.createElement("strong");
  title.textContent = layout.names ? layout.names[index] : `${layout.label} ${index + 1}`;
  const event = document.createElement("select");
  event.className = "step-event";
  if (kind === "lifecycle" || (kind === "retention" && index === 1)) option(event, "any", "any event");
  catalogue.events.forEach((e) => option(event, e.name));
  option(event, PAGE);
  const path = document.createElement("input");
  path.className = "step-page";
  path.placeholder = "/path";
  path.hidden = true;
  event.onchange = () => {
    path.hidden = event.value !== PAGE;
    row.querySelectorAll(".filter select.field").forEach((select) => {
      const kept = select.value;
      select.innerHTML = "";
      rowFields(event.value === PAGE ? "page" : event.value).forEach((f) => option(select, f));
      if ([...select.options].some((o) => o.value === kept)) select.value = kept;
    });
  };
  const filters = document.createElement("div");
  filters.className = "step-filters";
  const where = document.createElement("button");
  where.type = "button";
  where.textContent = "+ where";
  where.className = "step-where";
  where.onclick = () => filters.appendChild(filterRow(event.value === PAGE ? "page" : event.value));
  row.append(title, event, path);
  if (kind === "trends") {
    const math = document.createElement("select");
    math.className = "step-math";
    MATHS.forEach((m) => option(math, m));
    const property = document.createElement("input");
    property.className = "step-property";
    property.placeholder = "numeric property";
    property.hidden = true;
    math.onchange = () => (property.hidden = ["total", "persons"].includes(math.value));
    row.append(math, property);
  }
  if (!layout.names) {
    row.append(removeButton("step-remove", () => {
      if (document.querySelectorAll("#i-steps .step").length > layout.min) row.remove();
      renumber();
    }));
  }
  row.append(where, filters);
  return row;
}

function removeButton(className, onclick) {
  const button = document.createElement("button");
  button.type = "button";
  button.textContent = "×";
  button.className = className;
  button.onclick = onclick;
  return button;
}

function filterRow(eventName) {
  const row = document.createElement("div");
  row.className = "filter";
  const field = document.createElement("select");
  field.className = "field";
  rowFields(eventName).forEach((f) => option(field, f));
  const op = document.createElement("select");
  op.className = "op";
  OPERATORS.forEach((o) => option(op, o));
  const value = document.createElement("input");
  value.className = "value";
  value.placeholder = "value";
  row.append("where", field, op, value, removeButton("filter-remove", () => row.remove()));
  return row;
}

function renumber() {
  const layout = KIND_ROWS[document.getElementById("i-kind").value];
  document.querySelectorAll("#i-steps .step").forEach((row, i) => {
    if (!layout.names) row.querySelector("strong").textContent = `${layout.label} ${i + 1}`;
  });
}

function resetSteps() {
  const kind = document.getElementById("i-kind").value;
  const steps = document.getElementById("i-steps");
  steps.innerHTML = "";
  for (let i = 0; i < KIND_ROWS[kind].initial; i++) steps.appendChild(stepRow(i));
  document.getElementById("i-add-step").hidden = !!KIND_ROWS[kind].names;
  document.querySelectorAll("[data-kinds]").forEach((element) => {
    element.hidden = !element.dataset.kinds.split(" ").includes(kind);
  });
}

function selector(row) {
  const event = row.querySelector(".step-event").value;
  const chosen = event === PAGE ? { page: row.querySelector(".step-page").value } : { event };
  const where = [...row.querySelectorAll(".filter")].map((f) => {
    const op = f.querySelector(".op").value;
    const item = { field: f.querySelector(".field").value, op };
    if (!op.startsWith("is ")) item.value = f.querySelector(".value").value;
    return item;
  });
  if (where.length) chosen.where = where;
  return chosen;
}

function value(id) {
  return document.getElementById(id).value;
}

function spec() {
  const kind = value("i-kind");
  const rows = [...document.querySelectorAll("#i-steps .step")];
  const base = { kind, from: value("i-from"), to: value("i-to") };
  const breakdown = value("i-breakdown").trim() || null;
  if (kind === "funnel") {
    return { ...base, steps: rows.map(selector), window_days: Number(value("i-window")), breakdown };
  }
  if (kind === "trends") {
    const series = rows.map((row) => {
      const item = { ...selector(row), math: row.querySelector(".step-math").value };
      if (!["total", "persons"].includes(item.math)) item.property = row.querySelector(".step-property").value;
      return item;
    });
    return { ...base, series, interval: value("i-interval"), breakdown, formula: value("i-formula").trim() || null };
  }
  if (kind === "retention") {
    return { ...base, start: selector(rows[0]), return: selector(rows[1]), period: value("i-period"),
      periods: Number(value("i-periods")), mode: value("i-mode") };
  }
  if (kind === "paths") return { ...base, start: selector(rows[0]), direction: value("i-direction"), steps: 5 };
  const interval = kind === "stickiness" && value("i-interval") === "month" ? "week" : value("i-interval");
  return { ...base, ...selector(rows[0]), interval };
}

function table(header, rows) {
  const element = document.getElementById("query-table");
  element.innerHTML = "";
  const head = element.insertRow();
  header.forEach((text) => {
    const cell = document.createElement("th");
    cell.textContent = text;
    head.appendChild(cell);
  });
  rows.forEach((values) => {
    const row = element.insertRow();
    values.forEach((text) => (row.insertCell().textContent = text));
  });
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 120) return `${Math.round(value)} s`;
  if (value < 7200) return `${Math.round(value / 60)} min`;
  return `${(value / 3600).toFixed(1)} h`;
}

function draw(chartOption) {
  // no animation: the chart is final when it is marked rendered (and in a screenshot)
  chart("chart-query").setOption({ animation: false, ...chartOption }, true);
}

const DRAW = {
  funnel(answer) {
    const steps = answer.steps;
    const series = [{ name: "persons", type: "bar", data: steps.map((s) => s.persons), label: { show: true, position: "top" } }];
    (answer.breakdown || []).slice(0, 5).forEach((g) =>
      series.push({ name: g.value, type: "bar", data: g.steps.map((s) => s.persons) }));
    draw({ tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 60, right: 20, top: 40, bottom: 40 },
      xAxis: { type: "category", data: steps.map((s) => s.name) }, yAxis: { type: "value" }, series });
    const rows = steps.map((s) => ["all", s.name, fmt.format(s.persons), pct(s.conversion), pct(s.conversion_from_previous),
      seconds(s.median_seconds_to_convert)]);
    (answer.breakdown || []).forEach((g) => g.steps.forEach((s) => rows.push([g.value, s.name, fmt.format(s.persons),
      pct(s.conversion), pct(s.conversion_from_previous), seconds(s.median_seconds_to_convert)])));
    table(["group", "step", "persons", "conversion", "from previous", "median time"], rows);
    return steps.length;
  },
  trends(answer) {
    const dates = answer.series.length ? answer.series[0].points.map((p) => p.date) : [];
    const name = (s) => s.label + (s.breakdown_value === null ? "" : ` · ${s.breakdown_value}`);
    draw({ tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
      grid: { left: 60, right: 20, top: 40, bottom: 40 }, xAxis: { type: "category", data: dates }, yAxis: { type: "value" },
      series: answer.series.map((s) => ({ name: name(s), type: "line", data: s.points.map((p) => p.value) })) });
    table(["date", ...answer.series.map(name)], dates.map((d, i) => [d, ...answer.series.map((s) =>
      (s.points[i].value === null ? "–" : fmt.format(s.points[i].value)))]));
    return answer.series.reduce((n, s) => n + s.points.length, 0);
  },
  retention(answer) {
    const cohorts = answer.cohorts;
    const startedPeriod = (start, k) => {
      const day = new Date(start + "T00:00:00Z");
      if (value("i-period") === "month") day.setUTCMonth(day.getUTCMonth() + k);
      else day.setUTCDate(day.getUTCDate() + k * (value("i-period") === "week" ? 7 : 1));
      return day <= new Date();
    };
    const periods = cohorts.length ? cohorts[0].returned.length : 0;
    draw({ tooltip: { trigger: "axis" }, legend: { type: "scroll", top: 0 },
      grid: { left: 60, right: 20, top: 40, bottom: 40 },
      xAxis: { type: "category", data: [...Array(periods).keys()].map((k) => `+${k}`) }, yAxis: { type: "value", max: 1 },
      series: cohorts.filter((c) => c.size).map((c) => ({ name: c.start, type: "line",
        data: c.returned.map((n, k) => (startedPeriod(c.start, k) ? n / c.size : null)) })) });
    // a period that has not started yet has no number (blank), not 0%
    table(["cohort", "size", ...[...Array(periods).keys()].map((k) => `+${k}`)],
      cohorts.map((c) => [c.start, fmt.format(c.size),
        ...c.returned.map((n, k) => (!startedPeriod(c.start, k) ? "" : c.size ? pct(n / c.size) : "–"))]));
    return cohorts.length;
  },
  paths(answer) {
    const node = (step, name) => `${step}. ${name}`;
    const nodes = new Set([node(0, answer.start)]);
    const links = answer.edges.map((e) => {
      const source = e.step === 1 ? node(0, answer.start) : node(e.step - 1, e.source);
      nodes.add(source).add(node(e.step, e.target));
      return { source, target: node(e.step, e.target), value: e.persons };
    });
    draw({ tooltip: {}, series: [{ type: "sankey", data: [...nodes].map((name) => ({ name })),
      links, emphasis: { focus: "adjacency" }, label: { fontSize: 11 } }] });
    table(["step", "from", "to", "persons"], answer.edges.map((e) => [e.step, e.source, e.target, fmt.format(e.persons)]));
    return answer.edges.length;
  },
  stickiness(answer) {
    const keys = Object.keys(answer.counts);
    draw({ tooltip: { trigger: "axis" }, grid: { left: 60, right: 20, top: 30, bottom: 40 },
      xAxis: { type: "category", data: keys, name: "intervals" }, yAxis: { type: "value", name: "persons" },
      series: [{ type: "bar", data: keys.map((k) => answer.counts[k]) }] });
    table(["intervals active", "persons"], keys.map((k) => [k, fmt.format(answer.counts[k])]));
    return keys.length;
  },
  lifecycle(answer) {
    const statuses = ["new", "returning", "resurrecting", "dormant"];
    draw({ tooltip: { trigger: "axis" }, legend: { top: 0 }, grid: { left: 60, right: 20, top: 40, bottom: 40 },
      xAxis: { type: "category", data: answer.intervals.map((i) => i.date) }, yAxis: { type: "value" },
      series: statuses.map((s) => ({ name: s, type: "bar", stack: "all",
        data: answer.intervals.map((i) => (s === "dormant" ? -i[s] : i[s])) })) });
    table(["date", ...statuses], answer.intervals.map((i) => [i.date, ...statuses.map((s) => fmt.format(i[s]))]));
    return answer.intervals.length;
  },
};

async function runQuery(event) {
  if (event) event.preventDefault();
  const question = spec();
  document.getElementById("i-spec").textContent = JSON.stringify(question, null, 2);
  const status = document.getElementById("i-status");
  status.textContent = "running…";
  const started = performance.now();
  try {
    const data = await gql("query Q($spec: JSON!) { query(spec: $spec) }", { spec: question });
    const points = DRAW[question.kind](data.query);
    markRendered("chart-query", points);
    status.textContent = `exact, ${Math.round(performance.now() - started)} ms`;
  } catch (error) {
    status.textContent = "";
    showError("Insights: " + error.message);
  }
}

function setUpInsights() {
  const today = new Date();
  document.getElementById("i-to").value = isoDay(today);
  document.getElementById("i-from").value = isoDay(new Date(today.getTime() - 29 * 86400000));
  resetSteps();
}

document.getElementById("i-kind").addEventListener("change", resetSteps);
document.getElementById("i-add-step").addEventListener("click", () => {
  const steps = document.getElementById("i-steps");
  const layout = KIND_ROWS[document.getElementById("i-kind").value];
  if (steps.children.length < layout.max) steps.appendChild(stepRow(steps.children.length));
});
document.getElementById("query-form").addEventListener("submit", runQuery);
