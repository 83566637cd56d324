// The dashboard: only /api/reports, /api/caps, /api/postbacks and /api/endpoints, with the admin token kept in
// sessionStorage (gone when the tab closes). No build step, no other origin.
"use strict";
(function () {
  const KEY = "event-postback-admin-token";
  const REFRESH_MS = 30000;
  const $ = (id) => document.getElementById(id);
  const HEADLINE = [["clicks", "Clicks"], ["conversions", "Conversions"],
    ["net_revenue", "Revenue (net)"], ["net_payout", "Payout (net)"], ["profit", "Profit"],
    ["conversion_rate", "Conversion rate"]];
  const COLUMNS = ["clicks", "conversions", "net_revenue", "net_payout", "cost", "profit",
    "conversion_rate", "epc"];
  let timer = null;
  const charts = {};
  const sorted = {};  // table id -> [column, direction]

  class Unauthorized extends Error {}

  // The service answers at most max_concurrent_reports reports at once and tells the
  // others to come back (503 with Retry-After): wait as told, a few times, then give up.
  async function api(path, options, attempt = 0) {
    const response = await fetch(path, Object.assign({}, options, {
      headers: {Authorization: "Bearer " + sessionStorage.getItem(KEY)}}));
    if (response.status === 401 || response.status === 404) throw new Unauthorized();
    if (response.status === 503 && attempt < 8) {
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((resolve) => setTimeout(resolve, seconds * (500 + 500 * Math.random())));
      return api(path, options, attempt + 1);
    }
    const body = await response.json();
    if (!response.ok) throw new Error(body.message + " " + JSON.stringify(body.invalidFields || {}));
    return body.data;
  }

  function day(date) { return date.toISOString().slice(0, 10); }
  function shift(text, days) {
    const date = new Date(text + "T00:00:00Z");
    date.setUTCDate(date.getUTCDate() + days);
    return day(date);
  }
  function span(from, to) {
    return Math.round((new Date(to + "T00:00:00Z") - new Date(from + "T00:00:00Z")) / 864e5) + 1;
  }

  function query(extra) {
    const params = new URLSearchParams({from: $("from").value, to: $("to").value,
      tz: $("tz").value || "UTC"});
    for (const name of ["cid", "pid"]) {
      for (const value of $(name).value.split(",").map((v) => v.trim()).filter(Boolean)) {
        params.append(name, value);
      }
    }
    for (const [name, value] of Object.entries(extra)) params.set(name, value);
    return params;
  }

  function cell(row, text, className) {
    const td = document.createElement(row === "th" ? "th" : "td");
    td.textContent = text === null || text === undefined ? "–" : String(text);
    if (className) td.className = className;
    return td;
  }

  function headline(now, before) {
    const box = $("headline");
    box.replaceChildren();
    for (const [name, label] of HEADLINE) {
      const card = document.createElement("div");
      card.className = "card";
      card.dataset.figure = name;
      const title = document.createElement("div");
      title.className = "name"; title.textContent = label;
      const value = document.createElement("div");
      value.className = "value"; value.textContent = now[name] ?? "–";
      const prior = document.createElement("div");
      prior.className = "before"; prior.textContent = "previous: " + (before[name] ?? "–");
      card.append(title, value, prior);
      box.append(card);
    }
  }

  function chart(id, rows, series) {
    const xs = rows.map((row) => Date.parse(row.day + "T12:00:00Z") / 1000);
    const data = [xs, ...series.map(([name]) => rows.map((row) => Number(row[name] ?? 0)))];
    const element = $(id);
    const width = Math.max(260, element.clientWidth || 500);
    if (charts[id]) charts[id].destroy();
    // Half a day either side of the first and last day, so one day alone is not spread
    // over years: the x range is fixed, never guessed from the data.
    const lo = (xs.length ? xs[0] : Date.now() / 1000) - 43200;
    const hi = (xs.length ? xs[xs.length - 1] : Date.now() / 1000) + 43200;
    charts[id] = new uPlot({
      width, height: 220,
      scales: {x: {time: true, auto: false, range: () => [lo, hi]}},
      series: [{}, ...series.map(([name, label, stroke]) => ({label, stroke, width: 2,
        points: {show: true}}))],
      axes: [{}, {size: 60}],
    }, data, element);
  }

  function table(id, key, rows) {
    const element = $(id);
    const [column, direction] = sorted[id] || [key, 1];
    const numeric = column !== key;
    rows = rows.slice().sort((a, b) => {
      const x = numeric ? Number(a[column] ?? -Infinity) : a[column];
      const y = numeric ? Number(b[column] ?? -Infinity) : b[column];
      return (x < y ? -1 : x > y ? 1 : 0) * direction;
    });
    const head = document.createElement("tr");
    for (const name of [key, ...COLUMNS]) {
      const th = cell("th", name);
      if (name === column) th.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
      th.addEventListener("click", () => {
        sorted[id] = [name, name === column ? -direction : (name === key ? 1 : -1)];
        table(id, key, rows);
      });
      head.append(th);
    }
    const lines = rows.map((row) => {
      const tr = document.createElement("tr");
      tr.append(...[key, ...COLUMNS].map((name) => cell("td", row[name])));
      return tr;
    });
    element.replaceChildren(head, ...lines);
  }

  // Held and rejected conversions apart from the approved ones, with why.
  function statuses(rows) {
    const head = document.createElement("tr");
    head.append(...["status", "reason", "conversions", "pending", "revenue"].map((t) => cell("th", t)));
    const lines = rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.status = row.status;
      tr.append(cell("td", row.status), cell("td", row.reason), cell("td", row.conversions),
        cell("td", row.pending_conversions), cell("td", row.revenue ?? row.pending_revenue));
      return tr;
    });
    $("by-status").replaceChildren(head, ...lines);
  }

  async function caps() {
    const found = (await api("/api/caps")).caps;
    const head = document.createElement("tr");
    head.append(...["campaign", "source", "event", "metric", "period", "used", "limit", "use"]
      .map((t) => cell("th", t)));
    const lines = found.map((cap) => {
      const tr = document.createElement("tr");
      tr.dataset.cap = cap.key;
      const share = Number(cap.used) / Number(cap.limit);
      const use = cell("td", (share * 100).toFixed(0) + " %");
      if (share >= 0.9) use.className = "warn";
      tr.append(cell("td", cap.cid), cell("td", cap.pid ?? "any"), cell("td", cap.event_id ?? "any"),
        cell("td", cap.metric), cell("td", cap.current), cell("td", cap.used),
        cell("td", cap.limit), use);
      return tr;
    });
    $("caps").replaceChildren(head, ...lines);
  }

  async function postbacks() {
    const counts = $("postback-counts");
    counts.replaceChildren();
    const failed = await api("/api/postbacks?status=failed&limit=500");
    for (const status of ["pending", "delivered", "failed", "paused"]) {
      const found = status === "failed" ? failed
        : await api("/api/postbacks?status=" + status + "&limit=500");
      const card = document.createElement("div");
      card.className = "card";
      card.dataset.status = status;
      const title = document.createElement("div");
      title.className = "name"; title.textContent = status;
      const value = document.createElement("div");
      value.className = "value";
      value.textContent = found.length >= 500 ? "500+" : String(found.length);
      card.append(title, value);
      counts.append(card);
    }
    const head = document.createElement("tr");
    head.append(...["id", "campaign", "url", "attempts", "last error", ""].map((t) => cell("th", t)));
    const lines = failed.slice(0, 10).map((postback) => {
      const tr = document.createElement("tr");
      tr.dataset.postback = postback.id;
      const resend = document.createElement("button");
      resend.type = "button"; resend.textContent = "Resend";
      resend.addEventListener("click", async () => {
        resend.disabled = true;
        try {
          await api("/api/postbacks/" + postback.id + "/retry", {method: "POST"});
        } catch (error) { show(error); }
        setTimeout(refresh, 500);
      });
      const action = document.createElement("td");
      action.append(resend);
      tr.append(cell("td", postback.id), cell("td", postback.cid),
        cell("td", postback.url, "wrap"), cell("td", postback.attempts),
        cell("td", postback.last_error ?? ("HTTP " + postback.last_status_code), "wrap"), action);
      return tr;
    });
    $("failures").replaceChildren(head, ...lines);
    await paused();
  }

  // Endpoints paused after failures in a row (or a 410): their postbacks wait for Resume.
  async function paused() {
    const found = (await api("/api/endpoints")).filter((e) => e.state === "paused");
    const head = document.createElement("tr");
    head.append(...["endpoint", "since", "why", "waiting", "last error", ""].map((t) => cell("th", t)));
    const lines = found.map((endpoint) => {
      const tr = document.createElement("tr");
      tr.dataset.endpoint = endpoint.name;
      const resume = document.createElement("button");
      resume.type = "button"; resume.textContent = "Resume";
      resume.addEventListener("click", async () => {
        resume.disabled = true;
        try {
          await api("/api/endpoints/" + endpoint.name.split("/").map(encodeURIComponent).join("/")
            + "/resume", {method: "POST"});
        } catch (error) { show(error); }
        setTimeout(refresh, 500);
      });
      const action = document.createElement("td");
      action.append(resume);
      tr.append(cell("td", endpoint.name, "wrap"), cell("td", endpoint.paused_at),
        cell("td", endpoint.paused_reason), cell("td", endpoint.postbacks.paused ?? 0),
        cell("td", endpoint.last_error, "wrap"), action);
      return tr;
    });
    $("paused").replaceChildren(head, ...lines);
  }

  function show(error) {
    if (error instanceof Unauthorized) { logout("Unknown token"); return; }
    $("error").textContent = String(error.message || error);
  }

  async function refresh() {
    clearTimeout(timer);
    timer = setTimeout(refresh, REFRESH_MS);
    $("error").textContent = "";
    const from = $("from").value, to = $("to").value, days = span(from, to);
    try {
      const [now, before, cids, pids] = await Promise.all([
        api("/api/reports?" + query({group_by: "day"})),
        api("/api/reports?" + query({group_by: "day", from: shift(from, -days),
                                      to: shift(from, -1)})),
        api("/api/reports?" + query({group_by: "cid"})),
        api("/api/reports?" + query({group_by: "pid"})),
      ]);
      headline(now.totals, before.totals);
      chart("chart-counts", now.rows, [["clicks", "Clicks", "#2563eb"],
                                       ["conversions", "Conversions", "#15803d"]]);
      chart("chart-money", now.rows, [["net_revenue", "Revenue", "#7c3aed"],
                                      ["net_payout", "Payout", "#ea580c"]]);
      table("by-cid", "cid", cids.rows);
      table("by-pid", "pid", pids.rows);
      statuses((await api("/api/reports?" + query({group_by: "status,reason"}))).rows);
      await caps();
      await postbacks();
      $("updated").textContent = "updated at " + new Date().toLocaleTimeString();
    } catch (error) { show(error); }
  }

  async function download(group) {
    try {
      const response = await fetch("/api/reports?" + query({group_by: "day," + group,
        format: "csv"}), {headers: {Authorization: "Bearer " + sessionStorage.getItem(KEY)}});
      if (!response.ok) throw new Error("CSV: HTTP " + response.status);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "report-" + group + "-" + $("from").value + "-" + $("to").value + ".csv";
      link.click();
      URL.revokeObjectURL(link.href);
    } catch (error) { show(error); }
  }

  function logout(message) {
    clearTimeout(timer);
    sessionStorage.removeItem(KEY);
    $("board").hidden = true;
    $("login").hidden = false;
    $("login-error").textContent = message || "";
  }

  function start() {
    $("login").hidden = true;
    $("board").hidden = false;
    refresh();
  }

  const page = new URLSearchParams(location.search);
  const today = day(new Date());
  $("to").value = page.get("to") || today;
  $("from").value = page.get("from") || shift($("to").value, -6);
  $("tz").value = page.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  $("cid").value = page.get("cid") || "";
  $("pid").value = page.get("pid") || "";
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  $("logout").addEventListener("click", () => logout(""));
  for (const button of document.querySelectorAll("button.csv")) {
    button.addEventListener("click", () => download(button.dataset.group));
  }
  if (sessionStorage.getItem(KEY)) start(); else logout("");
})();
