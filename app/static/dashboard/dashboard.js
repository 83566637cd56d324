// The dashboard: only /api/reports, /api/caps, /api/postbacks and /api/endpoints, with the
// admin token kept in sessionStorage (gone when the tab closes). No build step, no other
// origin.
"use strict";
(function () {
  const KEY = "event-postback-admin-token";
  const REFRESH_MS = 30000;
  const $ = (id) => document.getElementById(id);
  const HEADLINE = [["clicks", "Clicks"], ["conversions", "Conversions"],
    ["net_revenue", "Revenue (net)"], ["net_payout", "Payout (net)"], ["profit", "Profit"],
    ["conversion_rate", "Conversion rate"], ["roi", "ROI"]];
  // The breakdown's columns: [figure, heading]. How each figure is shown comes from KINDS.
  const COLUMNS = [["clicks", "clicks"], ["conversions", "conversions"],
    ["approved_conversions", "approved"], ["pending_conversions", "pending"],
    ["rejected_conversions", "rejected"], ["reversed_conversions", "reversed"],
    ["net_revenue", "revenue"], ["net_payout", "payout"], ["cost", "cost"],
    ["profit", "profit"], ["conversion_rate", "conv. rate"], ["epc", "EPC"], ["cpc", "CPC"],
    ["roi", "ROI"]];
  const KINDS = {net_revenue: "money", net_payout: "money", cost: "money", profit: "money",
    epc: "per-click", cpc: "per-click", conversion_rate: "percent", roi: "percent"};
  let timer = null;
  let currency = null;  // the report's currency code, when it carries one
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

  // A ratio with 4 decimals ("0.4720") as a percentage with 2 ("47.20 %"): the decimal
  // point moves two places in the text itself, so nothing is rounded through a float.
  function percent(text) {
    const found = /^(-?)(\d+)\.(\d{2})(\d{2})$/.exec(text ?? "");
    if (!found) return text;
    const [, sign, whole, cents, rest] = found;
    return sign + String(BigInt(whole + cents)) + "." + rest + " %";
  }

  // Money in the report's currency when it names one (Intl formats the exact decimal
  // text), else the API's own text: 2 decimals, 4 for the per-click figures.
  function money(text, perClick) {
    if (text === null || text === undefined || !currency) return text;
    return new Intl.NumberFormat(undefined, {style: "currency", currency,
      maximumFractionDigits: perClick ? 4 : 2}).format(text);
  }

  function shown(name, value) {
    const kind = KINDS[name];
    if (kind === "percent") return percent(value);
    if (kind === "money" || kind === "per-click") return money(value, kind === "per-click");
    return value;
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
      value.className = "value"; value.textContent = shown(name, now[name]) ?? "–";
      const prior = document.createElement("div");
      prior.className = "before";
      prior.textContent = "previous: " + (shown(name, before[name]) ?? "–");
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
    for (const [name, label] of [[key, key], ...COLUMNS]) {
      const th = cell("th", label);
      th.dataset.figure = name;
      if (name === column) th.setAttribute("aria-sort", direction > 0 ? "ascending" : "descending");
      th.addEventListener("click", () => {
        sorted[id] = [name, name === column ? -direction : (name === key ? 1 : -1)];
        table(id, key, rows);
      });
      head.append(th);
    }
    const lines = rows.map((row) => {
      const tr = document.createElement("tr");
      tr.append(cell("td", row[key]),
        ...COLUMNS.map(([name]) => cell("td", shown(name, row[name]))));
      return tr;
    });
    element.replaceChildren(head, ...lines);
  }

  // The chosen breakdown, with every conversion counted by status (read from the rows).
  async function breakdown() {
    const key = $("breakdown").value;
    const found = await api("/api/reports?" + query({group_by: key, status_counts: "true"}));
    $("breakdown-name").textContent = $("breakdown").selectedOptions[0].textContent;
    table("by-key", key, found.rows);
  }

  // 24 cells, one per local hour of the report's zone, shaded by its conversions.
  async function hours() {
    const byHourOfDay = [...$("breakdown").options].some((o) => o.value === "hour_of_day");
    const found = await api("/api/reports?" + query({group_by: byHourOfDay ? "hour_of_day" : "hour"}));
    const conversions = new Array(24).fill(0), clicks = new Array(24).fill(0);
    for (const row of found.rows) {
      // A local hour is "2026-11-28T07:00-05:00": its hour of day is the local one.
      const hour = byHourOfDay ? Number(row.hour_of_day) : Number(row.hour.slice(11, 13));
      conversions[hour] += row.conversions;
      clicks[hour] += row.clicks ?? 0;
    }
    const most = Math.max(1, ...conversions);
    const head = document.createElement("tr"), line = document.createElement("tr");
    for (let hour = 0; hour < 24; hour++) {
      head.append(cell("th", String(hour).padStart(2, "0")));
      const td = cell("td", conversions[hour]);
      td.dataset.hour = String(hour);
      td.title = clicks[hour] + " clicks, " + conversions[hour] + " conversions";
      td.style.background = "rgba(21, 128, 61, " + (conversions[hour] / most).toFixed(2) + ")";
      if (conversions[hour] / most > 0.5) td.className = "dark";
      line.append(td);
    }
    $("hours-zone").textContent = "(" + found.tz + ")";
    $("hours").replaceChildren(head, line);
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
      // Two at a time: the service answers max_concurrent_reports (2 by default) at once.
      const [now, before] = await Promise.all([
        api("/api/reports?" + query({group_by: "day"})),
        api("/api/reports?" + query({group_by: "day", from: shift(from, -days),
                                      to: shift(from, -1)})),
      ]);
      currency = now.currency || null;
      headline(now.totals, before.totals);
      chart("chart-counts", now.rows, [["clicks", "Clicks", "#2563eb"],
                                       ["conversions", "Conversions", "#15803d"]]);
      chart("chart-money", now.rows, [["net_revenue", "Revenue", "#7c3aed"],
                                      ["net_payout", "Payout", "#ea580c"]]);
      await Promise.all([breakdown(), hours()]);
      statuses((await api("/api/reports?" + query({group_by: "status,reason"}))).rows);
      await caps();
      await postbacks();
      $("updated").textContent = "updated at " + new Date().toLocaleTimeString();
    } catch (error) { show(error); }
  }

  // The breakdown on screen as the API's CSV: fetched with the token in a header (never in
  // a URL), then saved from a blob link.
  async function download() {
    const key = $("breakdown").value;
    try {
      const response = await fetch("/api/reports?" + query({group_by: key, status_counts: "true",
        format: "csv"}), {headers: {Authorization: "Bearer " + sessionStorage.getItem(KEY)}});
      if (!response.ok) throw new Error("CSV: HTTP " + response.status);
      const link = document.createElement("a");
      link.href = URL.createObjectURL(await response.blob());
      link.download = "report-" + key + "-" + $("from").value + "-" + $("to").value + ".csv";
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
  if (page.get("breakdown")) $("breakdown").value = page.get("breakdown");
  $("login").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(KEY, $("token").value.trim());
    $("token").value = "";
    start();
  });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); refresh(); });
  $("logout").addEventListener("click", () => logout(""));
  $("breakdown").addEventListener("change", () => {
    delete sorted["by-key"];
    $("error").textContent = "";
    breakdown().catch(show);
  });
  $("csv").addEventListener("click", download);
  if (sessionStorage.getItem(KEY)) start(); else logout("");
})();
