// The demo console: the help article's "Manage AI Credits" (portal) and "Manage Plan" (plugin)
// screens, calling the local gateway's real API. Credentials come from GET /local/demo (local only).
"use strict";

(() => {
  const numbers = new Intl.NumberFormat("en-US");
  const state = {
    demo: null, // {license_id, account_id, portal_token, sites: [{site, environment, activation_token}]}
    credits: null, // the last GET .../credits (or Apply) answer
    balances: new Map(), // site -> {etag, body} of its last GET /v1/balance
    statementCursor: null, // next_cursor of the statement's last page
  };

  const $ = (id) => document.getElementById(id);
  const format = (value) => (typeof value === "number" ? numbers.format(value) : "–");

  // -- calling the API ----------------------------------------------------------------------------

  /** A refusal of the API: `problem` is its problem+json document (RFC 9457). */
  class ProblemError extends Error {
    constructor(status, problem) {
      super(problem.detail || problem.title || `HTTP ${status}`);
      this.status = status;
      this.problem = problem;
    }
  }

  async function call(method, path, { token, body, headers = {}, accept = "application/json" } = {}) {
    const init = { method, cache: "no-store", headers: { Accept: accept, ...headers } };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(path, init);
    } catch {
      throw new ProblemError(0, {
        title: "The local gateway does not answer",
        detail: "Is make run still going? Start it again, then reload this page.",
        code: "network_error",
      });
    }
    const text = await response.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = null;
    }
    if (response.ok || response.status === 304) {
      return { status: response.status, data, text, headers: response.headers };
    }
    const problem = data && typeof data === "object" ? data : { title: response.statusText, detail: text.slice(0, 200) };
    if (response.status === 503 && response.headers.get("Retry-After")) {
      problem.retryAfter = response.headers.get("Retry-After");
    }
    throw new ProblemError(response.status, problem);
  }

  async function loadDemo() {
    const { data } = await call("GET", "/local/demo");
    state.demo = data;
    renderSitePicker();
  }

  // A 401 means stale credentials (the portal JWT lives an hour; make run rotates the activation
  // tokens when it starts again): fetch fresh ones and try once more. Nothing was written on a 401.
  async function withFreshCredentials(request) {
    try {
      return await request();
    } catch (error) {
      if (!(error instanceof ProblemError) || error.status !== 401) throw error;
      await loadDemo();
      return request();
    }
  }

  const portal = (method, path, options = {}) =>
    withFreshCredentials(() => call(method, path, { ...options, token: state.demo.portal_token }));

  const licensePath = (suffix) => `/v1/licenses/${encodeURIComponent(state.demo.license_id)}/${suffix}`;

  const plugin = (site, method, path, options = {}) =>
    withFreshCredentials(() => call(method, path, { ...options, token: tokenOf(site) }));

  function tokenOf(site) {
    const found = state.demo.sites.find((candidate) => candidate.site === site);
    if (!found) throw new ProblemError(404, { title: "Not a demo site", detail: `${site} is not a site of the demo.` });
    return found.activation_token;
  }

  // -- messages -----------------------------------------------------------------------------------

  function showStatus(element, text) {
    element.textContent = text;
    element.hidden = false;
  }

  function hide(...elements) {
    for (const element of elements) {
      element.hidden = true;
      element.replaceChildren();
    }
  }

  /** Fill an error region: a headline, the API's detail and its code. */
  function showProblem(element, headline, error) {
    // error: a ProblemError, another Error (a bug: its message), or null for the page's own checks.
    const problem = error instanceof ProblemError ? error.problem : error ? { detail: String(error) } : {};
    const title = document.createElement("p");
    title.className = "notice-title";
    title.textContent = headline;
    const parts = [title];
    if (problem.detail && problem.detail !== headline) {
      const detail = document.createElement("p");
      detail.textContent = problem.detail;
      parts.push(detail);
    }
    if (problem.code) {
      const code = document.createElement("p");
      code.className = "notice-code";
      const status = error.status ? `${error.status} ` : "";
      code.append(`${status}`, Object.assign(document.createElement("code"), { textContent: problem.code }));
      parts.push(code);
    }
    element.replaceChildren(...parts);
    element.hidden = false;
  }

  function headlineFor(error) {
    if (!(error instanceof ProblemError)) return "Something went wrong.";
    const problem = error.problem;
    switch (problem.code) {
      case "over_allocation":
        return (
          `The total exceeds the license's credits: ${format(problem.requested)} requested, ` +
          `${format(problem.available)} available for these sites. Nothing was applied.`
        );
      case "below_used":
        return (
          `${problem.site} has already used ${format(problem.used)} credits this term: ` +
          `its allocation cannot be lower. Nothing was applied.`
        );
      case "insufficient_credits":
        return (
          `Not enough AI Credits: ${format(problem.requested)} requested, ${format(problem.remaining)} remaining ` +
          `on this site. Allocate more in Manage AI Credits, then click the refresh icon.`
        );
      case "license_expired":
        return "The license has expired: its credits can be read but not used or allocated.";
      case "unauthorized":
        return "The demo's credentials were refused. Reload the page.";
      case "unavailable":
        return `The service is busy; nothing was charged. Try again in ${problem.retryAfter || "a"} second(s).`;
      default:
        return problem.title || "The request failed.";
    }
  }

  // -- alerts (rule 13): WordPress admin notices ---------------------------------------------------

  const ERROR_ALERTS = new Set(["credits_exhausted", "license_expired"]);

  /** An alert's sentence; `site` names the site a site-level alert is about (none: this site). */
  function alertText(alert, site, remaining) {
    const subject = site || "This site";
    switch (alert.code) {
      case "credits_exhausted":
        return `${subject} has used all its AI Credits. Allocate more in Manage AI Credits to use AI features again.`;
      case "credits_low":
        return (
          `${subject} is low on AI Credits: ${format(remaining)} left, ` +
          `${alert.threshold_percent}% or less of its allocation.`
        );
      case "allocation_needed":
        return (
          "The license's credits wait for an allocation in Manage AI Credits: " +
          "until Apply there, its sites cannot use AI features."
        );
      case "license_expired":
        return (
          "The license has expired: its credits can be read but not used or allocated. " +
          "Renew it to use AI features again."
        );
      case "license_expiring":
        return `The license expires on ${day(alert.expires_at)}: renew it to keep using AI Credits.`;
      default:
        return `${subject}: ${alert.code}`;
    }
  }

  /** Show `notices` ({alert, site?, remaining?}) as admin notices: errors red, the rest yellow. */
  function renderAlerts(container, notices) {
    container.replaceChildren(
      ...notices.map(({ alert, site, remaining }) => {
        const kind = ERROR_ALERTS.has(alert.code) ? "error" : "warning";
        const notice = Object.assign(document.createElement("p"), {
          className: `notice notice-${kind}`,
          textContent: alertText(alert, site, remaining),
        });
        notice.dataset.code = alert.code;
        if (site) notice.dataset.site = site;
        return notice;
      }),
    );
  }

  // -- Manage AI Credits (portal) -----------------------------------------------------------------

  const PLANS = { "single-site": "Single-site", "multi-site": "Multi-site" };

  function day(timestamp) {
    return typeof timestamp === "string" ? timestamp.slice(0, 10) : "–";
  }

  function badge(text, kind) {
    const element = document.createElement("span");
    element.className = `badge badge-${kind}`;
    element.textContent = text;
    return element;
  }

  /** Show a credits view; `keepInputs` keeps what the customer typed (after a refusal). */
  function renderCredits(view, { keepInputs = false } = {}) {
    const typed = new Map(keepInputs ? allocationInputs().map((input) => [input.dataset.site, input]) : []);
    state.credits = view;
    $("license-line").replaceChildren(
      Object.assign(document.createElement("strong"), { textContent: view.license_id }),
      ` · ${PLANS[view.plan] || view.plan} license · `,
      Object.assign(document.createElement("span"), {
        className: "nowrap",
        textContent: `term ${day(view.term_start)} to ${day(view.term_end)}`,
      }),
      " ",
      badge(view.status, view.status === "active" ? "live" : "expired"),
    );
    $("credits-total").textContent = format(view.credits_total);
    $("credits-allocated").textContent = format(view.allocated);
    $("credits-unallocated").textContent = format(view.unallocated);
    $("credits-carried").textContent = format(view.carried_over);
    $("grants").hidden = view.grants.length === 0;
    $("grants-body").replaceChildren(
      ...view.grants.map((grant) => {
        const row = document.createElement("tr");
        const name = document.createElement("th");
        name.scope = "row";
        name.textContent = grant.reason ? `${grant.grant_id} (${grant.reason})` : grant.grant_id;
        const cells = [grant.credits, grant.remaining].map((value) =>
          Object.assign(document.createElement("td"), { className: "num", textContent: format(value) }),
        );
        const until = Object.assign(document.createElement("td"), {
          textContent: grant.expires_at ? day(grant.expires_at) : "the end of this term",
        });
        row.append(name, ...cells, until);
        return row;
      }),
    );
    renderAlerts($("portal-alerts"), [
      ...view.alerts.map((alert) => ({ alert })),
      ...view.sites.flatMap((site) =>
        site.alerts.map((alert) => ({ alert, site: site.site, remaining: site.remaining })),
      ),
    ]);

    const rows = view.sites.map((site, index) => {
      const row = document.createElement("tr");
      row.dataset.site = site.site;
      const domain = document.createElement("th");
      domain.scope = "row";
      domain.append(
        Object.assign(document.createElement("span"), { className: "domain", textContent: site.site }),
        " ",
        badge(site.environment, site.environment),
      );
      if (site.network) domain.append(" ", badge("network", "network"));
      if (!site.active) domain.append(" ", badge("deactivated", "expired"));
      const cells = [site.allocated, site.used, site.held, site.remaining].map((value) => {
        const cell = document.createElement("td");
        cell.className = "num";
        cell.textContent = format(value);
        return cell;
      });
      const inputCell = document.createElement("td");
      inputCell.className = "num";
      if (site.active) {
        const id = `allocation-${index}`;
        const label = Object.assign(document.createElement("label"), {
          className: "visually-hidden",
          htmlFor: id,
          textContent: `New allocation for ${site.site}`,
        });
        const input = Object.assign(document.createElement("input"), {
          id,
          type: "number",
          inputMode: "numeric",
          min: "0",
          max: "1000000000",
          step: "1",
          value: typed.has(site.site) ? typed.get(site.site).value : String(site.allocated),
          className: "allocation-input",
        });
        const previous = typed.get(site.site);
        for (const name of ["aria-invalid", "aria-describedby"]) {
          if (previous && previous.hasAttribute(name)) input.setAttribute(name, previous.getAttribute(name));
        }
        input.dataset.site = site.site;
        input.addEventListener("input", () => {
          input.removeAttribute("aria-invalid");
          renderAllocationSum();
        });
        inputCell.append(label, input);
      } else {
        inputCell.append(Object.assign(document.createElement("span"), { className: "muted", textContent: "not active" }));
      }
      row.append(domain, ...cells, inputCell);
      return row;
    });
    $("sites-body").replaceChildren(...rows);
    renderAllocationSum();
  }

  function allocationInputs() {
    return [...document.querySelectorAll(".allocation-input")];
  }

  /** "New allocations: 1,100 of 1,000 credits": a hint while typing; the API has the last word. */
  function renderAllocationSum() {
    const view = state.credits;
    if (!view) return;
    const typed = new Map(allocationInputs().map((input) => [input.dataset.site, Number(input.value)]));
    const total = view.sites.reduce((sum, site) => {
      const value = typed.has(site.site) ? typed.get(site.site) : site.allocated;
      return sum + (Number.isFinite(value) ? value : 0);
    }, 0);
    const element = $("allocation-sum");
    const over = total - view.credits_total;
    element.textContent =
      `New allocations: ${format(total)} of ${format(view.credits_total)} credits` +
      (over > 0 ? ` (${format(over)} more than the license has)` : "");
    element.classList.toggle("hint-warning", over > 0);
  }

  async function loadCredits(options) {
    const section = $("portal");
    section.setAttribute("aria-busy", "true");
    try {
      const { data } = await portal("GET", licensePath("credits"));
      renderCredits(data, options);
    } finally {
      section.setAttribute("aria-busy", "false");
    }
  }

  async function apply(event) {
    event.preventDefault();
    const status = $("portal-status");
    const errors = $("portal-error");
    hide(status, errors);
    const allocations = {};
    for (const input of allocationInputs()) {
      input.removeAttribute("aria-invalid");
      const text = input.value.trim();
      if (!/^\d{1,10}$/.test(text)) {
        input.setAttribute("aria-invalid", "true");
        showProblem(errors, `Enter a whole number of credits (0 or more) for ${input.dataset.site}.`, null);
        input.focus();
        return;
      }
      allocations[input.dataset.site] = Number(text);
    }
    const button = $("apply");
    button.disabled = true;
    try {
      const { data } = await portal("PUT", licensePath("allocations"), { body: { allocations } });
      renderCredits(data);
      showStatus(
        status,
        "Applied. To verify it from a site, click the refresh icon in Manage Plan.",
      );
    } catch (error) {
      showProblem(errors, headlineFor(error), error);
      const site = error instanceof ProblemError ? error.problem.site : undefined;
      const input = allocationInputs().find((candidate) => candidate.dataset.site === site);
      if (input) {
        input.setAttribute("aria-invalid", "true");
        input.setAttribute("aria-describedby", "portal-error");
      }
      if (error instanceof ProblemError && error.status === 409) {
        // Refused on figures the sites may have changed since (they spend): show the current ones.
        await loadCredits({ keepInputs: true }).catch(() => {});
      }
    } finally {
      button.disabled = false;
    }
  }

  // -- Usage (portal): credits per day or month, stacked by site, drawn by hand as SVG ------------

  const SVG_NS = "http://www.w3.org/2000/svg";
  const SERIES_COLOURS = 6; // .series-0 to .series-5 in console.css
  const CHART = { width: 640, height: 220, top: 12, right: 8, bottom: 28, left: 52 };
  const MAX_AXIS_LABELS = 7;
  const MAX_BAR_WIDTH = 48;
  const dayLabel = new Intl.DateTimeFormat("en-US", { timeZone: "UTC", month: "short", day: "numeric" });
  const monthLabel = new Intl.DateTimeFormat("en-US", { timeZone: "UTC", month: "short", year: "numeric" });

  function svg(name, attributes = {}, text = undefined) {
    const element = document.createElementNS(SVG_NS, name);
    for (const [attribute, value] of Object.entries(attributes)) element.setAttribute(attribute, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  /** The key of a period: the day (2026-12-04) or month (2026-12) its UTC timestamp starts. */
  const periodOf = (timestamp, granularity) => timestamp.slice(0, granularity === "month" ? 7 : 10);

  /** Every period from `from` to `to` (an axis without gaps), and those of the buckets, in order. */
  function periodsOf(usage) {
    const periods = new Set();
    const start = new Date(Date.parse(usage.from));
    const cursor = new Date(
      Date.UTC(start.getUTCFullYear(), start.getUTCMonth(), usage.granularity === "month" ? 1 : start.getUTCDate()),
    );
    while (cursor.getTime() < Date.parse(usage.to)) {
      periods.add(periodOf(cursor.toISOString(), usage.granularity));
      if (usage.granularity === "month") cursor.setUTCMonth(cursor.getUTCMonth() + 1);
      else cursor.setUTCDate(cursor.getUTCDate() + 1);
    }
    for (const bucket of usage.buckets) periods.add(periodOf(bucket.start, usage.granularity));
    return [...periods].sort();
  }

  function periodLabel(period, granularity) {
    const date = new Date(`${granularity === "month" ? `${period}-01` : period}T00:00:00Z`);
    return (granularity === "month" ? monthLabel : dayLabel).format(date);
  }

  /** A round step between gridlines (1, 2 or 5 times a power of ten, at least 1): about four of them. */
  function gridStep(span) {
    const rough = Math.max(span / 4, 1);
    const power = 10 ** Math.floor(Math.log10(rough));
    return [1, 2, 5, 10].map((multiple) => multiple * power).find((step) => step >= rough);
  }

  /** A bucket's segments, one per site: credits above zero stack up, refunds (net negative) down. */
  function stack(bucket, sites) {
    let up = 0;
    let down = 0;
    return sites
      .filter((site) => bucket.sites[site])
      .map((site) => {
        const credits = bucket.sites[site];
        const low = credits > 0 ? up : down + credits;
        if (credits > 0) up += credits;
        else down += credits;
        return { site, low, high: low + Math.abs(credits) };
      });
  }

  /** "example.org 80, example.com 20": a bucket's credits by site, in the chart's order. */
  function bySite(bucket, sites) {
    return sites
      .filter((site) => bucket.sites[site])
      .map((site) => `${site} ${format(bucket.sites[site])}`)
      .join(", ");
  }

  /** The sites of the chart in the order of `usage.sites` (most credits first): their colours. */
  function chartSites(usage) {
    const sites = usage.sites.map((site) => site.site);
    for (const bucket of usage.buckets) {
      for (const site of Object.keys(bucket.sites)) if (!sites.includes(site)) sites.push(site);
    }
    return sites;
  }

  function usageChart(usage, sites) {
    const periods = periodsOf(usage);
    const stacks = usage.buckets.map((bucket) => ({ bucket, segments: stack(bucket, sites) }));
    const highest = Math.max(0, ...stacks.flatMap(({ segments }) => segments.map((segment) => segment.high)));
    const lowest = Math.min(0, ...stacks.flatMap(({ segments }) => segments.map((segment) => segment.low)));
    const step = gridStep(highest - lowest);
    const top = Math.max(Math.ceil(highest / step), lowest === 0 ? 1 : 0) * step;
    const bottom = Math.floor(lowest / step) * step;
    const plotHeight = CHART.height - CHART.top - CHART.bottom;
    const y = (credits) => CHART.top + ((top - credits) / (top - bottom)) * plotHeight;
    const slot = (CHART.width - CHART.left - CHART.right) / periods.length;
    const barWidth = Math.min(Math.max(1, slot * 0.7), MAX_BAR_WIDTH);
    const x = (period) => CHART.left + periods.indexOf(period) * slot + (slot - barWidth) / 2;

    const chart = svg("svg", {
      class: "chart",
      viewBox: `0 0 ${CHART.width} ${CHART.height}`,
      role: "img",
      "aria-labelledby": "usage-chart-title usage-chart-desc",
    });
    chart.append(
      svg(
        "title",
        { id: "usage-chart-title" },
        `Credits per ${usage.granularity}, ${day(usage.from)} to ${day(usage.to)}`,
      ),
      svg(
        "desc",
        { id: "usage-chart-desc" },
        `${format(usage.credits)} credits on ${usage.buckets.length} ${usage.granularity}(s) with activity, ` +
          "stacked by site. " +
          "The chart's figures below have them as a table.",
      ),
    );
    for (let credits = bottom; credits <= top; credits += step) {
      chart.append(
        svg("line", {
          class: credits === 0 ? "axis" : "gridline",
          x1: CHART.left,
          x2: CHART.width - CHART.right,
          y1: y(credits),
          y2: y(credits),
        }),
        svg(
          "text",
          { class: "tick", x: CHART.left - 6, y: y(credits), "text-anchor": "end", "dominant-baseline": "middle" },
          format(credits),
        ),
      );
    }
    const every = Math.ceil(periods.length / MAX_AXIS_LABELS);
    periods.forEach((period, index) => {
      if (index % every !== 0) return;
      const center = x(period) + barWidth / 2;
      const label = periodLabel(period, usage.granularity);
      chart.append(svg("text", { class: "tick", x: center, y: CHART.height - 8, "text-anchor": "middle" }, label));
    });
    for (const { bucket, segments } of stacks) {
      const period = periodOf(bucket.start, usage.granularity);
      const bar = svg("g", { class: "bar", "data-period": period });
      const summary = `${format(bucket.credits)} credits in ${format(bucket.requests)} requests`;
      bar.append(svg("title", {}, `${period}: ${summary} (${bySite(bucket, sites)})`));
      for (const segment of segments) {
        bar.append(
          svg("rect", {
            class: `segment series-${sites.indexOf(segment.site) % SERIES_COLOURS}`,
            "data-site": segment.site,
            x: x(period),
            y: y(segment.high),
            width: barWidth,
            height: Math.max(y(segment.low) - y(segment.high), 0.5),
          }),
        );
      }
      chart.append(bar);
    }
    return chart;
  }

  function cell(text, className = "") {
    return Object.assign(document.createElement("td"), { className, textContent: text });
  }

  function rowHeader(text) {
    return Object.assign(document.createElement("th"), { scope: "row", textContent: text });
  }

  /** The chart's figures as a table, behind a disclosure (what a screen reader reads instead). */
  function usageTable(usage, sites) {
    const details = document.createElement("details");
    details.append(Object.assign(document.createElement("summary"), { textContent: "The chart's figures" }));
    const table = Object.assign(document.createElement("table"), { className: "sites" });
    const head = document.createElement("tr");
    for (const [text, className] of [["Period", ""], ["Credits", "num"], ["Requests", "num"], ["By site", ""]]) {
      head.append(Object.assign(document.createElement("th"), { scope: "col", className, textContent: text }));
    }
    table.createTHead().append(head);
    table.createTBody().append(
      ...usage.buckets.map((bucket) => {
        const row = document.createElement("tr");
        row.append(
          rowHeader(periodOf(bucket.start, usage.granularity)),
          cell(format(bucket.credits), "num"),
          cell(format(bucket.requests), "num"),
          cell(bySite(bucket, sites)),
        );
        return row;
      }),
    );
    const wrap = Object.assign(document.createElement("div"), { className: "table-wrap" });
    wrap.append(table);
    details.append(wrap);
    return details;
  }

  /** [name, credits] pairs of `credits` ({name: credits}), most credits first, then by name. */
  function mostFirst(credits) {
    return Object.entries(credits).sort(([nameA, a], [nameB, b]) => b - a || nameA.localeCompare(nameB));
  }

  /** "rewrite 40 · summarize 5": the features by credits, most first. */
  function featureList(features) {
    return mostFirst(features)
      .map(([feature, credits]) => `${feature} ${format(credits)}`)
      .join(" · ");
  }

  function renderUsage(usage) {
    const sites = chartSites(usage);
    $("usage-summary").textContent =
      `${format(usage.credits)} credits in ${format(usage.requests)} requests from ${day(usage.from)} to ` +
      `${day(usage.to)}, per ${usage.granularity} and by site.`;
    const active = usage.buckets.length > 0;
    const none = Object.assign(document.createElement("p"), {
      className: "muted",
      textContent: "No AI Credits used in this period.",
    });
    $("usage-chart").replaceChildren(active ? usageChart(usage, sites) : none);
    $("usage-figures").replaceChildren(...(active ? [usageTable(usage, sites)] : []));
    $("usage-legend").replaceChildren(
      ...(active ? sites : []).map((site, index) => {
        const item = document.createElement("li");
        const swatch = Object.assign(document.createElement("span"), {
          className: `swatch series-${index % SERIES_COLOURS}`,
        });
        swatch.setAttribute("aria-hidden", "true");
        item.append(swatch, site);
        return item;
      }),
    );
    $("usage-sites").hidden = usage.sites.length === 0;
    $("usage-sites-body").replaceChildren(
      ...usage.sites.map((site) => {
        const row = document.createElement("tr");
        row.dataset.site = site.site;
        row.append(
          rowHeader(site.site),
          cell(format(site.credits), "num"),
          cell(format(site.requests), "num"),
          cell(featureList(site.features)),
        );
        return row;
      }),
    );
  }

  const chosenGranularity = () => document.querySelector('input[name="granularity"]:checked').value;

  async function loadUsage() {
    const granularity = chosenGranularity();
    const { data } = await portal("GET", licensePath(`usage?granularity=${granularity}`));
    if (granularity === chosenGranularity()) renderUsage(data); // not an answer overtaken by a later choice
  }

  // -- Statement (portal): the ledger, newest first, a page at a time; the whole of it as CSV --------

  const STATEMENT_PAGE = 10;
  const ENTRY_TYPES = {
    term: "Term credits",
    grant: "Grant",
    carry_over: "Carried over",
    consume: "Spent",
    refund: "Refund",
    expiry: "Expired",
  };
  const signed = new Intl.NumberFormat("en-US", { signDisplay: "exceptZero" });

  function entryDetails(entry) {
    const details = [
      entry.feature,
      entry.request_id && `request ${entry.request_id}`,
      entry.grant_id && `grant ${entry.grant_id}`,
    ];
    return details.filter(Boolean).join(" · ") || `term from ${day(entry.term_start)}`;
  }

  function statementRow(entry) {
    const row = document.createElement("tr");
    row.dataset.type = entry.type;
    const site = entry.subsite ? `${entry.site} › ${entry.subsite}` : entry.site || "–";
    row.append(
      rowHeader(entry.at.replace("T", " ").replace(/(\.\d+)?Z$/, "")),
      cell(ENTRY_TYPES[entry.type] || entry.type),
      cell(site),
      cell(entryDetails(entry)),
      cell(signed.format(entry.credits), entry.credits < 0 ? "num debit" : "num"),
    );
    return row;
  }

  /** The first page of the statement, or (`more`) the page after the rows shown. */
  async function loadStatement(more = false) {
    const query = new URLSearchParams({ limit: String(STATEMENT_PAGE) });
    if (more) query.set("cursor", state.statementCursor);
    const { data } = await portal("GET", licensePath(`ledger?${query}`));
    const rows = data.entries.map(statementRow);
    if (more) $("statement-body").append(...rows);
    else $("statement-body").replaceChildren(...rows);
    state.statementCursor = data.next_cursor;
    $("statement-more").hidden = !data.next_cursor;
    const shown = $("statement-body").rows.length;
    $("statement-count").textContent = shown
      ? `${format(shown)} entries, newest first${data.next_cursor ? "; older ones under Load more" : ""}.`
      : "No entries yet.";
  }

  async function loadMoreStatement() {
    const button = $("statement-more");
    button.disabled = true;
    try {
      await loadStatement(true);
    } finally {
      button.disabled = false;
    }
  }

  /** The whole statement as CSV (Accept: text/csv), offered as a download of the browser's. */
  async function downloadStatement() {
    const button = $("statement-csv");
    button.disabled = true;
    try {
      const { text } = await portal("GET", licensePath("ledger"), { accept: "text/csv" });
      const url = URL.createObjectURL(new Blob([text], { type: "text/csv;charset=utf-8" }));
      const link = Object.assign(document.createElement("a"), {
        href: url,
        download: `statement-${state.demo.license_id}.csv`,
        hidden: true,
      });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 1000); // after the browser has started the download
    } finally {
      button.disabled = false;
    }
  }

  // -- Manage Plan (the plugin, for one site) -----------------------------------------------------

  function renderSitePicker() {
    const picker = $("site-picker");
    const selected = picker.value;
    picker.replaceChildren(
      ...state.demo.sites.map((site) =>
        Object.assign(document.createElement("option"), {
          value: site.site,
          textContent: `${site.site} (${site.environment})`,
        }),
      ),
    );
    if (state.demo.sites.some((site) => site.site === selected)) picker.value = selected;
  }

  function renderBalance(site, body) {
    $("balance-site").textContent = site;
    $("site-remaining").textContent = format(body && body.site.remaining);
    $("site-allocated").textContent = format(body && body.site.allocated);
    $("site-used").textContent = format(body && body.site.used);
    $("site-held").textContent = format(body && body.site.held);
    const alerts = body ? body.alerts.map((alert) => ({ alert, remaining: body.site.remaining })) : [];
    renderAlerts($("plugin-alerts"), alerts);
  }

  /** The refresh icon: GET /v1/balance with the site's activation token (and its last ETag). */
  async function refreshBalance() {
    const site = $("site-picker").value;
    const section = $("plugin");
    const icon = $("refresh");
    section.setAttribute("aria-busy", "true");
    icon.classList.add("spinning");
    try {
      const known = state.balances.get(site);
      const headers = known && known.etag ? { "If-None-Match": known.etag } : {};
      const answer = await plugin(site, "GET", "/v1/balance", { headers });
      let note = "";
      if (answer.status === 304 && known) {
        note = " (unchanged)";
      } else {
        state.balances.set(site, { etag: answer.headers.get("ETag"), body: answer.data });
      }
      if (site === $("site-picker").value) {
        renderBalance(site, state.balances.get(site).body);
        $("balance-checked").textContent = `Checked at ${new Date().toLocaleTimeString("en-GB")}${note}.`;
      }
    } finally {
      icon.classList.remove("spinning");
      section.setAttribute("aria-busy", "false");
    }
  }

  function renderSiteUsage(usage) {
    const spent = `${format(usage.credits)} credits in ${format(usage.requests)} requests`;
    $("site-usage-summary").textContent = `${usage.site}: ${spent} since ${day(usage.term_start)}.`;
    const features = mostFirst(usage.features);
    $("site-features").hidden = features.length === 0;
    $("site-features-body").replaceChildren(
      ...features.map(([feature, credits]) => {
        const row = document.createElement("tr");
        row.dataset.feature = feature;
        row.append(rowHeader(feature), cell(format(credits), "num"));
        return row;
      }),
    );
    const subsites = mostFirst(usage.subsites || {});
    $("site-subsites").hidden = subsites.length === 0;
    $("site-subsites-body").replaceChildren(
      ...subsites.map(([subsite, credits]) => {
        const row = document.createElement("tr");
        row.append(rowHeader(subsite), cell(format(credits), "num"));
        return row;
      }),
    );
  }

  /** The site's usage this term (GET /v1/usage): derived from the table's stream, seconds behind. */
  async function loadSiteUsage() {
    const site = $("site-picker").value;
    const { data } = await plugin(site, "GET", "/v1/usage");
    if (site === $("site-picker").value) renderSiteUsage(data);
  }

  function requestId() {
    const bytes = crypto.getRandomValues(new Uint8Array(12));
    return `console-${[...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("")}`;
  }

  async function spend(event) {
    event.preventDefault();
    const status = $("plugin-status");
    const errors = $("plugin-error");
    hide(status, errors);
    const input = $("consume-amount");
    input.removeAttribute("aria-invalid");
    const text = input.value.trim();
    const amount = Number(text);
    if (!/^\d{1,7}$/.test(text) || amount < 1 || amount > 1000000) {
      input.setAttribute("aria-invalid", "true");
      showProblem(errors, "Enter a whole number of credits from 1 to 1,000,000.", null);
      input.focus();
      return;
    }
    const site = $("site-picker").value;
    const button = $("consume");
    button.disabled = true;
    try {
      // A fresh request_id per click: the API charges each id exactly once.
      const body = { amount, request_id: requestId() };
      if ($("consume-feature").value) body.feature = $("consume-feature").value;
      const { data } = await plugin(site, "POST", "/v1/consume", { body });
      showStatus(status, `Spent ${format(data.consumed)} credits on ${site}: ${format(data.remaining)} remaining.`);
      await refreshBalance();
    } catch (error) {
      if (error instanceof ProblemError && error.problem.code === "insufficient_credits") {
        error.problem.requested = amount;
      }
      showProblem(errors, headlineFor(error), error);
    } finally {
      button.disabled = false;
    }
  }

  // -- wiring -------------------------------------------------------------------------------------

  async function guarded(errorElement, task) {
    try {
      await task();
    } catch (error) {
      showProblem(errorElement, headlineFor(error), error);
    }
  }

  /** Manage AI Credits' three parts, each with its own error region. */
  function reloadPortal() {
    hide($("portal-status"), $("portal-error"), $("usage-error"), $("statement-error"));
    return Promise.all([
      guarded($("portal-error"), loadCredits),
      guarded($("usage-error"), loadUsage),
      guarded($("statement-error"), () => loadStatement()),
    ]);
  }

  /** The refresh icon of Manage Plan: the site's balance and its usage. */
  function refreshPlugin() {
    hide($("plugin-status"), $("plugin-error"), $("site-usage-error"));
    return Promise.all([guarded($("plugin-error"), refreshBalance), guarded($("site-usage-error"), loadSiteUsage)]);
  }

  async function start() {
    $("allocation-form").addEventListener("submit", apply);
    $("consume-form").addEventListener("submit", spend);
    $("portal-reload").addEventListener("click", reloadPortal);
    for (const choice of document.querySelectorAll('input[name="granularity"]')) {
      choice.addEventListener("change", () => {
        hide($("usage-error"));
        guarded($("usage-error"), loadUsage);
      });
    }
    $("statement-more").addEventListener("click", () => guarded($("statement-error"), loadMoreStatement));
    $("statement-csv").addEventListener("click", () => {
      hide($("statement-error"));
      guarded($("statement-error"), downloadStatement);
    });
    $("refresh").addEventListener("click", refreshPlugin);
    $("site-picker").addEventListener("change", () => {
      const known = state.balances.get($("site-picker").value);
      renderBalance($("site-picker").value, known ? known.body : null);
      refreshPlugin();
    });
    try {
      await loadDemo();
    } catch (error) {
      const headline =
        error instanceof ProblemError && error.status === 404
          ? "No demo license here: make run provisions one when it starts (unless LOCAL_DEMO=0)."
          : headlineFor(error);
      showProblem($("console-error"), headline, error);
      for (const section of [$("portal"), $("plugin")]) section.setAttribute("aria-busy", "false");
      return;
    }
    await Promise.all([reloadPortal(), refreshPlugin()]);
    document.body.dataset.ready = "true";
  }

  start();
})();
