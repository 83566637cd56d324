// The dashboard: only /api/catalog/names, /api/reports, /api/caps, /api/postbacks,
// /api/endpoints and, for an admin, /api/catalog, /api/sources and /api/campaigns, with the
// token kept in sessionStorage (gone when the tab closes, never in localStorage or a URL).
// No build step, no other origin.
"use strict";
(function () {
  const KEY = "event-postback-token";
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
  // What a partner's report leaves null (app/routes/partner.py): not shown to a partner.
  const BUYER_FIGURES = new Set(["revenue", "reversed_revenue", "net_revenue",
    "pending_revenue", "cost", "profit", "epc", "cpc", "roi"]);
  const RANK = {partner: 0, viewer: 1, operator: 2, admin: 3};
  let timer = null;
  let currency = null;  // [reports] currency, the one every amount is in
  // Who the token is, and the names of the catalog (GET /api/catalog/names).
  let who = {role: "viewer", pid: null, catalog: "file", campaigns: {}, sources: {}};
  let page = "figures";  // the page on screen: "figures" or "catalog"
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
    for (const name of who.role === "partner" ? ["cid"] : ["cid", "pid"]) {
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

  // Money with 2 decimals in [reports] currency (Intl formats the exact decimal text, never
  // a float); a per-click figure keeps up to 4, so a cost of 0.004 a click is not nothing.
  function money(text, perClick) {
    if (text === null || text === undefined) return text;
    return new Intl.NumberFormat(undefined, {style: currency ? "currency" : "decimal",
      currency: currency || undefined, minimumFractionDigits: 2,
      maximumFractionDigits: perClick ? 4 : 2}).format(text);
  }

  function reaches(role) { return RANK[who.role] >= RANK[role]; }
  function figures(list) {
    return list.filter(([name]) => reaches("viewer") || !BUYER_FIGURES.has(name));
  }

  // A campaign's or source's name where the catalog gives one, else its id.
  function named(key, id) {
    const names = key === "cid" ? who.campaigns : key === "pid" ? who.sources : null;
    return (names && names[id]) || id;
  }

  function idCell(key, id) {
    const td = cell("td", named(key, id), "named");
    if (td.textContent !== String(id ?? "–")) td.title = id;
    return td;
  }

  // The role picks the view: a partner sees its own numbers without the buyer's money, and
  // only an operator is offered Resend and Resume.
  async function identify() {
    const found = await api("/api/catalog/names");
    currency = found.currency;
    const names = (list, key) => Object.fromEntries(
      list.filter((entry) => entry.name).map((entry) => [entry[key], entry.name]));
    who = {role: found.role, pid: found.pid, catalog: found.catalog,
      campaigns: names(found.campaigns, "cid"), sources: names(found.sources, "pid")};
    for (const element of document.querySelectorAll("[data-least]")) {
      element.hidden = !reaches(element.dataset.least);
    }
    // Changes to the catalog are an admin's, and taken only when it is in the database.
    // One page needs no tabs.
    for (const tab of document.querySelectorAll("#tabs [data-page]")) {
      tab.hidden = !reaches("admin");
    }
    if (page === "catalog" && !reaches("admin")) choose("figures");
    for (const element of document.querySelectorAll("[data-edits]")) {
      element.hidden = who.catalog !== "database";
    }
    $("money-caption").textContent = reaches("viewer") ? "Revenue and payout" : "Payout";
    options("cids", found.campaigns.map((c) => [c.cid, c.name]));
    options("pids", found.sources.map((s) => [s.pid, s.name]));
  }

  function options(id, pairs) {
    $(id).replaceChildren(...pairs.map(([value, label]) => {
      const option = document.createElement("option");
      option.value = value;
      if (label) option.label = label;
      return option;
    }));
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
    for (const [name, label] of figures(HEADLINE)) {
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
    const columns = figures(COLUMNS);
    for (const [name, label] of [[key, key], ...columns]) {
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
      tr.append(idCell(key, row[key]),
        ...columns.map(([name]) => cell("td", shown(name, row[name]))));
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
    const buyer = reaches("viewer");
    head.append(...["status", "reason", "conversions", "pending", ...(buyer ? ["revenue"] : [])]
      .map((t) => cell("th", t)));
    const lines = rows.map((row) => {
      const tr = document.createElement("tr");
      tr.dataset.status = row.status;
      tr.append(cell("td", row.status), cell("td", row.reason), cell("td", row.conversions),
        cell("td", row.pending_conversions));
      if (buyer) tr.append(cell("td", money(row.revenue ?? row.pending_revenue)));
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
      tr.append(idCell("cid", cap.cid), cap.pid ? idCell("pid", cap.pid) : cell("td", "any"),
        cell("td", cap.event_id ?? "any"),
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
    const operator = reaches("operator");
    head.append(...["id", "campaign", "url", "attempts", "last error", ...(operator ? [""] : [])]
      .map((t) => cell("th", t)));
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
      tr.append(cell("td", postback.id), idCell("cid", postback.cid),
        cell("td", postback.url, "wrap"), cell("td", postback.attempts),
        cell("td", postback.last_error ?? ("HTTP " + postback.last_status_code), "wrap"));
      if (operator) tr.append(action);
      return tr;
    });
    $("failures").replaceChildren(head, ...lines);
    if (reaches("viewer")) await paused();
  }

  // Endpoints paused after failures in a row (or a 410): their postbacks wait for Resume.
  async function paused() {
    const found = (await api("/api/endpoints")).filter((e) => e.state === "paused");
    const operator = reaches("operator");
    const head = document.createElement("tr");
    head.append(...["endpoint", "since", "why", "waiting", "last error", ...(operator ? [""] : [])]
      .map((t) => cell("th", t)));
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
        cell("td", endpoint.last_error, "wrap"));
      if (operator) tr.append(action);
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
    try {
      await identify();
      await (page === "catalog" ? lists() : figuresNow());
      $("updated").textContent = "updated at " + new Date().toLocaleTimeString();
    } catch (error) { show(error); }
  }

  async function figuresNow() {
    const from = $("from").value, to = $("to").value, days = span(from, to);
    // Two at a time: the service answers max_concurrent_reports (2 by default) at once.
    const [now, before] = await Promise.all([
      api("/api/reports?" + query({group_by: "day"})),
      api("/api/reports?" + query({group_by: "day", from: shift(from, -days),
                                    to: shift(from, -1)})),
    ]);
    headline(now.totals, before.totals);
    chart("chart-counts", now.rows, [["clicks", "Clicks", "#2563eb"],
                                     ["conversions", "Conversions", "#15803d"]]);
    chart("chart-money", now.rows, figures([["net_revenue", "Revenue", "#7c3aed"],
                                            ["net_payout", "Payout", "#ea580c"]]));
    await Promise.all([breakdown(), hours()]);
    statuses((await api("/api/reports?" + query({group_by: "status,reason"}))).rows);
    if (reaches("viewer")) await caps();
    await postbacks();
  }

  function choose(name) {
    page = name;
    $("figures-page").hidden = name !== "figures";
    $("catalog-page").hidden = name !== "catalog";
    for (const button of document.querySelectorAll("#tabs [data-page]")) {
      button.setAttribute("aria-pressed", String(button.dataset.page === name));
    }
  }

  // The catalog page. Its lists are GET /api/catalog at the version its ETag names; a form
  // keeps the version it was filled at and sends it in If-Match, so a change someone else
  // made meanwhile is refused (412) instead of overwritten.
  const CATALOG = {sources: ["pid", "source", "Source"], campaigns: ["cid", "campaign",
    "Campaign"]};
  const catalog = {version: null, campaigns: [], sources: []};
  const editing = {sources: null, campaigns: null};  // the document each form was filled from

  // Unlike api(), the answer whatever its status (a refusal is shown beside its form), with
  // the version its ETag names; only an unknown token signs out.
  async function call(method, path, version, body) {
    const headers = {Authorization: "Bearer " + sessionStorage.getItem(KEY)};
    if (version !== undefined) headers["If-Match"] = '"' + version + '"';
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {method, headers, body});
    if (response.status === 401) throw new Unauthorized();
    let answer;
    try { answer = await response.json(); }
    catch (_) { answer = {message: "HTTP " + response.status}; }
    const etag = /^(?:W\/)?"(\d+)"$/.exec(response.headers.get("ETag") || "");
    return {ok: response.ok, status: response.status, message: answer.message,
      data: answer.data, version: etag ? Number(etag[1]) : null};
  }

  async function lists() {
    const answer = await call("GET", "/api/catalog");
    if (!answer.ok) throw new Error(answer.message);
    Object.assign(catalog, answer.data, {version: answer.version});
    $("catalog-note").textContent = who.catalog === "database"
      ? "Catalog version " + answer.version + ", kept in the database."
      : "The config file's catalog ([server] catalog = \"file\"): it is changed in the file.";
    entries("sources", ["pid", "name", "active", "payout", "postback URL"], (source) => [
      cell("td", source.pid), cell("td", source.name, "named"),
      cell("td", source.active === false ? "no" : "yes"),
      cell("td", !source.payout ? "–" : source.payout.type === "percent"
        ? source.payout.value + " %" : "fixed " + source.payout.value),
      cell("td", source.postback_url, "wrap")]);
    entries("campaigns", ["cid", "name", "events", "postbacks", "caps"], (campaign) => [
      cell("td", campaign.cid), cell("td", campaign.name, "named"),
      cell("td", (campaign.events || []).map((e) => e.event_id).join(", "), "wrap"),
      cell("td", (campaign.postbacks || []).length), cell("td", (campaign.caps || []).length)]);
  }

  function entries(kind, headings, cells) {
    const [key] = CATALOG[kind];
    const editable = who.catalog === "database";
    const head = document.createElement("tr");
    head.append(...headings.map((text) => cell("th", text)), ...(editable ? [cell("th", "")] : []));
    const lines = catalog[kind].map((found) => {
      const tr = document.createElement("tr");
      tr.dataset.id = found[key];
      tr.append(...cells(found));
      if (editable) {
        const edit = document.createElement("button");
        edit.type = "button"; edit.textContent = "Edit";
        edit.addEventListener("click", () => open(kind, found));
        const remove = document.createElement("button");
        remove.type = "button"; remove.textContent = "Delete";
        remove.addEventListener("click", () => drop(kind, found).catch(show));
        const td = cell("td", "", "actions");
        td.append(edit, remove);
        tr.append(td);
      }
      return tr;
    });
    $(kind).replaceChildren(head, ...lines);
    $(kind + "-error").textContent = "";
  }

  function field(form, name) { return form.elements.namedItem(name); }

  // A form filled from a document (null: a new one), at the version the lists are at.
  function open(kind, found) {
    const [key, noun] = CATALOG[kind];
    const form = $(noun + "-form");
    editing[kind] = found;
    form.dataset.version = String(catalog.version);
    $(noun + "-title").textContent = found ? "Edit " + noun + " " + found[key] : "New " + noun;
    field(form, key).value = found ? found[key] : "";
    field(form, key).readOnly = Boolean(found);  // another id is another entry
    field(form, "name").value = (found && found.name) || "";
    if (kind === "sources") {
      field(form, "active").checked = !found || found.active !== false;
      field(form, "payout_type").value = (found && found.payout && found.payout.type) || "";
      field(form, "payout_value").value = found && found.payout ? String(found.payout.value) : "";
      for (const url of ["postback_url", "retraction_url"]) {
        field(form, url).value = (found && found[url]) || "";
      }
    } else {
      field(form, "landing_url").value = (found && found.landing_url) || "";
      const rest = Object.assign({events: [], postbacks: [], payouts: [], caps: []}, found);
      for (const simple of ["cid", "name", "landing_url"]) delete rest[simple];
      field(form, "document").value = JSON.stringify(rest, null, 2);
    }
    refusal(form.querySelector("[data-problem]"), null);
    form.hidden = false;
    field(form, found ? "name" : key).focus();
  }

  // The source's document: the one it was filled from (so keys the form has no field for,
  // such as signing_secrets, are kept) with the form's fields over it.
  function sourceBody(form) {
    const body = Object.assign({}, editing.sources);
    body.pid = field(form, "pid").value.trim();
    body.name = field(form, "name").value.trim();
    body.active = field(form, "active").checked;
    const type = field(form, "payout_type").value;
    // The amount goes as the text typed: money is never rounded through a float.
    if (type) body.payout = {type, value: field(form, "payout_value").value.trim()};
    else delete body.payout;
    for (const url of ["postback_url", "retraction_url"]) {
      const value = field(form, url).value.trim();
      if (value) body[url] = value; else delete body[url];
    }
    return [body.pid, JSON.stringify(body)];
  }

  // The campaign's document: the textarea's object with cid, name and landing_url put in
  // front as text. Parsing and re-serializing it would pass its amounts through floats.
  function campaignBody(form) {
    const text = field(form, "document").value.trim();
    let rest;
    try { rest = JSON.parse(text); } catch (error) {
      throw new Refused("The document is not JSON: " + error.message);
    }
    if (rest === null || typeof rest !== "object" || Array.isArray(rest)) {
      throw new Refused("The document is not a JSON object");
    }
    const front = {cid: field(form, "cid").value.trim(), name: field(form, "name").value.trim()};
    const landing = field(form, "landing_url").value.trim();
    if (landing) front.landing_url = landing;
    for (const simple of ["cid", "name", "landing_url"]) {
      if (simple in rest) throw new Refused(simple + " is set in its field above, not here");
    }
    const members = Object.keys(rest).length ? "," + text.slice(1) : "}";
    return [front.cid, JSON.stringify(front).slice(0, -1) + members];
  }

  class Refused extends Error {}

  async function save(kind, event) {
    event.preventDefault();
    const [, noun] = CATALOG[kind];
    const form = $(noun + "-form"), problem = form.querySelector("[data-problem]");
    let id, body;
    try { [id, body] = (kind === "sources" ? sourceBody : campaignBody)(form); }
    catch (error) {
      if (!(error instanceof Refused)) throw error;
      refusal(problem, {message: error.message});
      return;
    }
    const answer = await call("PUT", "/api/" + kind + "/" + encodeURIComponent(id),
      Number(form.dataset.version), body);
    if (!answer.ok) {
      refusal(problem, answer, () => reopen(kind, id));
      return;
    }
    form.hidden = true;
    await changed(answer);
  }

  // After a 412: the lists as they are now, and the form filled again from the entry as it
  // is now (the typed values kept when it does not exist).
  async function reopen(kind, id) {
    await lists();
    const [key, noun] = CATALOG[kind];
    const found = catalog[kind].find((entry) => entry[key] === id);
    if (found) { open(kind, found); return; }
    const form = $(noun + "-form");
    form.dataset.version = String(catalog.version);
    refusal(form.querySelector("[data-problem]"), null);
  }

  async function drop(kind, found) {
    const [key, noun] = CATALOG[kind];
    const label = found.name ? found.name + " (" + found[key] + ")" : found[key];
    if (!confirm("Delete " + noun + " " + label + "? The next catalog version will not have it "
                 + "(an earlier one can be restored).")) return;
    const answer = await call("DELETE", "/api/" + kind + "/" + encodeURIComponent(found[key]),
      catalog.version);
    if (!answer.ok) {
      refusal($(kind + "-error"), answer, lists);
      return;
    }
    if (editing[kind] === found) $(noun + "-form").hidden = true;
    await changed(answer);
  }

  // The message last: once it shows, the lists show the new version.
  async function changed(answer) {
    $("catalog-done").textContent = "";
    await identify();  // the names and filters the figures show
    await lists();
    $("catalog-done").textContent = answer.message + ": version " + answer.version + ".";
  }

  // A refusal beside what was refused: the API's message (a 400 carries check-config's
  // diagnosis), and for a stale version a way to read the catalog again.
  function refusal(target, answer, reload) {
    target.replaceChildren();
    if (!answer) return;
    if (answer.status !== 412) {
      target.textContent = answer.message;
      return;
    }
    const again = document.createElement("button");
    again.type = "button"; again.textContent = "Reload";
    again.addEventListener("click", () => reload().catch(show));
    target.append("Changed by someone else since you opened it: reload, then make your "
                  + "change again. ", again);
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

  const given = new URLSearchParams(location.search);
  const today = day(new Date());
  $("to").value = given.get("to") || today;
  $("from").value = given.get("from") || shift($("to").value, -6);
  $("tz").value = given.get("tz") || Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";
  $("cid").value = given.get("cid") || "";
  $("pid").value = given.get("pid") || "";
  if (given.get("breakdown")) $("breakdown").value = given.get("breakdown");
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
  for (const button of document.querySelectorAll("#tabs [data-page]")) {
    button.addEventListener("click", () => { choose(button.dataset.page); refresh(); });
  }
  for (const kind of Object.keys(CATALOG)) {
    const [, noun] = CATALOG[kind];
    const form = $(noun + "-form");
    form.addEventListener("submit", (event) => save(kind, event).catch(show));
    form.querySelector("[data-cancel]").addEventListener("click", () => { form.hidden = true; });
    $(noun + "-new").addEventListener("click", () => open(kind, null));
  }
  if (sessionStorage.getItem(KEY)) start(); else logout("");
})();
