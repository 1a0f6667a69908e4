// The demo console: the help article's "Manage AI Credits" (portal) and "Manage Plan" (plugin)
// screens, calling the local gateway's real API. Credentials come from GET /local/demo (local only).
"use strict";

(() => {
  const numbers = new Intl.NumberFormat("en-US");
  const state = {
    demo: null, // {license_id, account_id, portal_token, sites: [{site, environment, activation_token}]}
    credits: null, // the last GET .../credits (or Apply) answer
    balances: new Map(), // site -> {etag, body} of its last GET /v1/balance
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

  async function call(method, path, { token, body, headers = {} } = {}) {
    const init = { method, cache: "no-store", headers: { Accept: "application/json", ...headers } };
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
    if (response.ok || response.status === 304) return { status: response.status, data, headers: response.headers };
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

  const portal = (method, path, body) =>
    withFreshCredentials(() => call(method, path, { token: state.demo.portal_token, body }));

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
    $("needs-allocation").hidden = !view.needs_allocation;

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
      const { data } = await portal("GET", `/v1/licenses/${encodeURIComponent(state.demo.license_id)}/credits`);
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
      const path = `/v1/licenses/${encodeURIComponent(state.demo.license_id)}/allocations`;
      const { data } = await portal("PUT", path, { allocations });
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
    $("site-needs-allocation").hidden = !(body && body.needs_allocation);
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
      const body = { amount, request_id: requestId(), feature: "demo-console" };
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

  async function start() {
    $("allocation-form").addEventListener("submit", apply);
    $("consume-form").addEventListener("submit", spend);
    $("portal-reload").addEventListener("click", () => {
      hide($("portal-status"), $("portal-error"));
      guarded($("portal-error"), loadCredits);
    });
    $("refresh").addEventListener("click", () => {
      hide($("plugin-status"), $("plugin-error"));
      guarded($("plugin-error"), refreshBalance);
    });
    $("site-picker").addEventListener("change", () => {
      hide($("plugin-status"), $("plugin-error"));
      const known = state.balances.get($("site-picker").value);
      renderBalance($("site-picker").value, known ? known.body : null);
      guarded($("plugin-error"), refreshBalance);
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
    await Promise.all([guarded($("portal-error"), loadCredits), guarded($("plugin-error"), refreshBalance)]);
    document.body.dataset.ready = "true";
  }

  start();
})();
