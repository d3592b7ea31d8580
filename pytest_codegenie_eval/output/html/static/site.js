// The task class pages drawn from the recorded data: a run's cases (run.html#run=SEQ), a
// case's history (case.html#case=ID), one attempt (attempt.html#run=SEQ&case=ID&attempt=R)
// and any two runs compared (compare.html#a=SEQ&b=SEQ).
//
// The data are script files the site ships (data/index.js, data/run-SEQ.js, diffs/*.js,
// transcripts/*.js): a page opened from disk may not fetch, and the Content-Security-Policy
// runs scripts of the site's own origin only. Every string from a report is set as text
// (textContent), never as markup; the only markup inserted is the diff and transcript
// fragments the build rendered with escaping (Pygments, autoescaping Jinja2).
(function () {
  "use strict";
  var CG = {};
  window.CG = CG;
  var HEX64 = /^[0-9a-f]{64}$/;
  var index = null;
  var runs = {};  // seq -> report (null: unreadable)
  var waiting = {};  // "run:SEQ" / "diff:DIGEST" -> callbacks
  var fragments = {};

  // ---- small helpers -------------------------------------------------------------------
  function h(tag, attrs) {
    var node = document.createElement(tag);
    var key;
    for (key in (attrs || {})) {
      if (!Object.prototype.hasOwnProperty.call(attrs, key) || attrs[key] === null) { continue; }
      if (key === "text") { node.textContent = String(attrs[key]); }
      else if (key === "cls") { node.className = attrs[key]; }
      else { node.setAttribute(key, String(attrs[key])); }
    }
    for (var i = 2; i < arguments.length; i++) { add(node, arguments[i]); }
    return node;
  }
  function add(node, child) {
    if (child === null || child === undefined) { return; }
    if (Array.isArray(child)) { child.forEach(function (c) { add(node, c); }); return; }
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  function params() { return new URLSearchParams(window.location.hash.replace(/^#/, "")); }
  function hash(values) {
    var out = new URLSearchParams();
    Object.keys(values).forEach(function (k) { out.set(k, values[k]); });
    return "#" + out.toString();
  }
  function int(n) { return Number(n).toLocaleString("en-US"); }
  function dec(x, digits) { return x === null || x === undefined || isNaN(x) ? "n/a" : Number(x).toFixed(digits); }
  function signed(x) { return x === null || x === undefined || isNaN(x) ? "n/a" : (x >= 0 ? "+" : "") + x.toFixed(3); }
  function usd(x) {
    return x === null || x === undefined ? "n/a" : Number(x).toLocaleString("en-US", { minimumFractionDigits: 4, maximumFractionDigits: 4 }) + " USD";
  }
  function secs(x) { return Number(x).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }) + " s"; }
  function ms(x) { return x === null || x === undefined ? "n/a" : x < 1 ? Math.round(x * 1000).toLocaleString("en-US") + " ms" : secs(x); }
  function pct(x) { return (100 * x).toFixed(1) + "%"; }
  function num(cls, value, shown) { return h("td", { cls: cls + " num", "data-sort-value": value, text: shown }); }
  function shortId(id) { return String(id || "").slice(0, 12); }
  function runLink(run) {
    return h("a", { cls: "runid", href: "run.html" + hash({ run: run.seq }), title: run.run_id, text: shortId(run.run_id) });
  }
  function attemptHref(seq, caseId, attempt) {
    return "attempt.html" + hash({ run: seq, "case": caseId, attempt: attempt });
  }
  function badge(ok, text) { return h("span", { cls: "badge " + (ok ? "ok" : "bad"), text: text }); }
  function stateBadge(run) {
    var cls = run.complete ? "ok" : run.state.indexOf("shard") === 0 ? "warn" : "bad";
    var text = run.state.indexOf("partial") === 0 ? "PARTIAL" + run.state.slice(7) : run.state;
    return [h("span", { cls: "badge " + cls, text: text }),
      run.verified ? null : [" ", badge(false, "does not verify")]];
  }
  function kv(id, rows) {
    return h("table", { cls: "kv", id: id }, rows.filter(Boolean).map(function (r) {
      return h("tr", null, h("th", { text: r[0] }), h("td", { cls: r[2] || "" }, r[1]));
    }));
  }
  function table(id, names, headers, rows, search) {
    var head = h("tr", null, headers.map(function (label, i) {
      return h("th", null, names[i] ? h("button", { cls: "sort", "data-sort": names[i], type: "button", text: label }) : label);
    }));
    return h("div", { id: id, "data-list": names.filter(Boolean).join(",") },
      search ? h("input", { cls: "search", type: "search", placeholder: search, "aria-label": search }) : null,
      h("div", { cls: "scroll" }, h("table", { cls: "cases" }, h("thead", null, head), h("tbody", { cls: "list" }, rows))));
  }
  function listify(root) {
    if (typeof window.CGList === "function") { root.querySelectorAll("[data-list]").forEach(window.CGList); }
  }
  function newest() {
    // the newest whole run (a partial run is never chosen silently), else the newest readable
    var readable = index.runs.filter(function (r) { return r.cells !== undefined; });
    var whole = readable.filter(function (r) { return r.evidence && r.complete; });
    return whole.length ? whole[whole.length - 1] : readable.length ? readable[readable.length - 1] : null;
  }
  function runBySeq(seq) {
    var found = null;
    index.runs.forEach(function (r) { if (String(r.seq) === String(seq)) { found = r; } });
    return found;
  }
  function show(title, crumb, nodes) {
    var app = document.getElementById("app");
    app.textContent = "";
    document.title = title + ": codegenie eval";
    var c = document.getElementById("crumb");
    if (c) { c.textContent = crumb; }
    add(app, nodes);
    listify(app);
    app.setAttribute("data-pending", String(pending));
    app.setAttribute("data-ready", "yes");
  }
  function problem(text) { show("not found", "not found", h("p", { cls: "bad", id: "problem", text: text })); }
  function has(store, key) { return Object.prototype.hasOwnProperty.call(store, key); }
  function load(kind, key, src, done) {
    var id = kind + ":" + key;
    if (kind === "run" ? has(runs, key) : has(fragments, id)) {
      done(kind === "run" ? runs[key] : fragments[id]);
      return;
    }
    if (waiting[id]) { waiting[id].push(done); return; }
    waiting[id] = [done];
    var script = document.createElement("script");
    script.src = src;
    script.onerror = function () { settle(id, undefined); };
    document.body.appendChild(script);
  }
  function settle(id, value) {
    var callbacks = waiting[id] || [];
    delete waiting[id];
    callbacks.forEach(function (f) { f(value); });
  }

  // ---- the data files call these --------------------------------------------------------
  CG.index = function (data) {
    index = data;
    window.addEventListener("hashchange", render);
    render();
  };
  CG.run = function (seq, report) {
    runs[String(seq)] = report;
    settle("run:" + seq, report);
  };
  CG.fragment = function (kind, digest, value) {
    fragments[kind + ":" + digest] = value;
    settle(kind + ":" + digest, value);
  };
  function withRun(seq, done) {
    load("run", String(seq), "data/run-" + encodeURIComponent(String(seq)) + ".js", done);
  }

  function render() {
    var page = document.getElementById("app").getAttribute("data-page");
    if (page === "run") { renderRun(); }
    else if (page === "case") { renderCase(); }
    else if (page === "attempt") { renderAttempt(); }
    else if (page === "compare") { renderCompare(); }
  }

  // ---- per-case figures from the report's attempts ---------------------------------------
  function attemptsOf(report) {
    var by = {};
    (report.cases || []).forEach(function (c) {
      (by[c.case_id] = by[c.case_id] || []).push(c);
    });
    Object.keys(by).forEach(function (k) { by[k].sort(function (a, b) { return (a.repeat || 1) - (b.repeat || 1); }); });
    return by;
  }
  function flakiness(passes, attempts) {
    // 0: every attempt had the same outcome; 1: as many passed as failed
    return attempts ? 2 * Math.min(passes, attempts - passes) / attempts : 0;
  }

  // ---- a run's cases ---------------------------------------------------------------------
  function renderRun() {
    var asked = params().get("run");
    var run = asked && asked !== "latest" ? runBySeq(asked) : newest();
    if (!run) { problem("no run " + asked + " is recorded for this task class"); return; }
    if (run.cells === undefined) { problem("the report of this run (" + run.report_path + ") is missing or unreadable"); return; }
    withRun(run.seq, function (report) {
      if (!report) { problem("the report of this run (" + run.report_path + ") could not be loaded"); return; }
      var by = attemptsOf(report);
      var metered = !!run.gateway;
      var prev = null;
      index.runs.forEach(function (r) {
        if (r.i < run.i && r.agent === run.agent && r.cells !== undefined) { prev = r; }
      });
      var summary = kv("run-summary", [
        ["run id", h("code", { text: run.run_id })],
        ["recorded", run.recorded.replace("T", " ")],
        ["agent", h("code", { text: run.agent })],
        run.label ? ["SUT", h("code", { text: run.sut })] : null,
        ["kind", run.kind],
        ["state", stateBadge(run)],
        ["cases", int(run.n) + " (" + int(run.passed) + " passed" + (run.n ? ", " + pct(run.passed / run.n) : "") + ")", "num"],
        ["mean", dec(run.mean, 3), "num"],
        ["lower_bound_95", dec(run.lb, 3) + " (" + run.method + ")", "num"],
        ["cost", usd(run.cost), "num"],
        run.repeats > 1 ? ["attempts per case", int(run.repeats), "num"] : null,
        run.repeats > 1 && run.pass_at_k !== null ? ["pass@" + run.repeats, dec(run.pass_at_k, 3) + " (at least one of " + run.repeats + " attempts passes)", "num"] : null,
        run.repeats > 1 && run.pass_hat_k !== null ? ["pass^" + run.repeats, dec(run.pass_hat_k, 3) + " (all " + run.repeats + " attempts pass)", "num"] : null,
        metered ? ["model gateway", int(run.gateway.calls) + " calls, " + int(run.gateway.input) + " / " + int(run.gateway.output) + " tokens in / out, " + usd(run.gateway.cost) + " metered", "num"] : null
      ]);
      var links = h("p", { cls: "links" },
        prev ? h("a", { id: "compare-previous", href: "compare.html" + hash({ a: prev.seq, b: run.seq }), text: "compare with this agent's previous run" }) : null,
        prev ? " · " : null,
        h("a", { href: "compare.html" + hash({ b: run.seq }), text: "compare with another run" }));
      var names = ["r-case", "r-score", "r-passed", "r-rate"];
      var headers = ["case", "score", "passed", "attempts passed"];
      if (run.repeats > 1) { names.push("r-at-k", "r-hat-k"); headers.push("pass@" + run.repeats, "pass^" + run.repeats); }
      names.push("r-modes", "r-cost", "r-duration");
      headers.push("failure modes", "cost (USD)", "duration (s)");
      if (metered) { names.push("r-calls", "r-tokens", "r-metered"); headers.push("model calls", "tokens in / out", "metered cost"); }
      names.push(null);
      headers.push("attempts");
      var rows = [];
      index.cases.forEach(function (caseId, i) {
        var cell = run.cells[i];
        if (!cell) { return; }
        var attempts = by[caseId] || [];
        var codes = {};
        attempts.forEach(function (a) { (a.failure_modes || []).forEach(function (f) { codes[f.code + " " + f.severity] = f; }); });
        var row = h("tr", { cls: "case " + (cell[1] ? "pass" : "fail") },
          h("td", { cls: "r-case" }, h("a", { href: "case.html" + hash({ "case": caseId }), title: "every run of this case", text: caseId })),
          num("r-score", cell[0], dec(cell[0], 3)),
          h("td", { cls: "r-passed", text: cell[1] ? "yes" : "no" }),
          num("r-rate", cell[3] ? cell[2] / cell[3] : 0, cell[2] + " of " + cell[3]));
        if (run.repeats > 1) {
          add(row, num("r-at-k", cell[2] > 0 ? 1 : 0, cell[2] > 0 ? "yes" : "no"));
          add(row, num("r-hat-k", cell[2] === cell[3] ? 1 : 0, cell[2] === cell[3] ? "yes" : "no"));
        }
        add(row, h("td", { cls: "r-modes" }, Object.keys(codes).sort().map(function (k) {
          var f = codes[k];
          return [h("span", { cls: "fm " + f.severity, title: f.detail || "" }, f.code + " ", h("small", { text: f.severity })), " "];
        })));
        add(row, num("r-cost", cell[4], dec(cell[4], 4)));
        add(row, num("r-duration", cell[5], dec(cell[5], 2)));
        if (metered) {
          var calls = 0, tin = 0, tout = 0, cost = 0, any = false;
          attempts.forEach(function (a) {
            var u = a.model_usage;
            if (u) { any = true; calls += u.calls; tin += u.input_tokens; tout += u.output_tokens; cost += u.cost_usd; }
          });
          add(row, any ? [num("r-calls", calls, int(calls)), num("r-tokens", tin + tout, int(tin) + " / " + int(tout)), num("r-metered", cost, usd(cost))]
            : [h("td", { cls: "r-calls muted", "data-sort-value": -1, text: "not metered" }), h("td", { cls: "r-tokens", "data-sort-value": -1 }), h("td", { cls: "r-metered", "data-sort-value": -1 })]);
        }
        add(row, h("td", { cls: "r-attempts" }, attempts.map(function (a) {
          return [h("a", { cls: "attempt " + (a.passed ? "pass" : "fail"), href: attemptHref(run.seq, caseId, a.repeat || 1), title: "score " + dec(a.score, 3), text: "r" + (a.repeat || 1) }), " "];
        })));
        rows.push(row);
      });
      show("run " + shortId(run.run_id), "run " + shortId(run.run_id), [
        h("h1", { id: "run-title" }, "Run ", h("span", { cls: "runid", title: run.run_id, text: shortId(run.run_id) })),
        summary, links,
        h("h2", { text: "Cases" }),
        table("run-cases", names, headers, rows, "filter cases (id, failure code …)")
      ]);
    });
  }

  // ---- a case's history ------------------------------------------------------------------
  function renderCase() {
    var caseId = params().get("case");
    var position = index.cases.indexOf(caseId);
    if (position < 0) { problem("no recorded run has a case " + JSON.stringify(caseId)); return; }
    var withCase = index.runs.filter(function (r) { return r.cells !== undefined && r.cells[position]; });
    var current = withCase.length ? withCase[withCase.length - 1].cells[position][6] : null;
    var agents = {};
    var order = [];
    var rows = withCase.slice().reverse().map(function (run) {
      var cell = run.cells[position];
      var same = cell[6] === current;
      if (same) {
        if (!agents[run.agent]) { agents[run.agent] = { runs: 0, attempts: 0, passes: 0, flips: 0, last: null }; order.push(run.agent); }
        var a = agents[run.agent];
        a.runs += 1; a.attempts += cell[3]; a.passes += cell[2];
      }
      var links = [];
      for (var r = 1; r <= cell[3]; r++) { links.push(h("a", { href: attemptHref(run.seq, caseId, r), text: "r" + r }), " "); }
      return h("tr", { cls: "case " + (cell[1] ? "pass" : "fail") + (same ? "" : " earlier"), "data-seq": run.seq },
        num("h-run", run.i, "#" + run.i),
        h("td", { cls: "h-recorded nowrap", text: run.recorded.replace("T", " ") }),
        h("td", { cls: "h-id" }, runLink(run)),
        h("td", { cls: "h-agent" }, h("code", { text: run.agent })),
        h("td", { cls: "h-state" }, stateBadge(run)),
        h("td", { cls: "h-definition", text: same ? "current" : "earlier" }),
        num("h-score", cell[0], dec(cell[0], 3)),
        h("td", { cls: "h-passed", text: cell[1] ? "yes" : "no" }),
        num("h-rate", cell[3] ? cell[2] / cell[3] : 0, cell[2] + " of " + cell[3]),
        num("h-cost", cell[4], dec(cell[4], 4)),
        num("h-duration", cell[5], dec(cell[5], 2)),
        h("td", { cls: "h-attempts" }, links));
    });
    var agentRows = order.map(function (name) {
      var a = agents[name];
      var f = flakiness(a.passes, a.attempts);
      return h("tr", { cls: "agent-row" },
        h("td", { cls: "a-agent" }, h("code", { text: name })),
        num("a-runs", a.runs, int(a.runs)),
        num("a-attempts", a.attempts, int(a.attempts)),
        num("a-rate", a.attempts ? a.passes / a.attempts : 0, a.attempts ? pct(a.passes / a.attempts) : "n/a"),
        num("a-flaky", f, dec(f, 2)));
    });
    var earlier = withCase.length - withCase.filter(function (r) { return r.cells[position][6] === current; }).length;
    show(caseId, caseId, [
      h("h1", { id: "case-id", text: caseId }),
      h("p", { cls: "muted" }, "Every run of this task class that has the case, newest first: " + int(withCase.length) + " run" + (withCase.length === 1 ? "" : "s") +
        (earlier ? " (" + int(earlier) + " under an earlier definition of the case or rubric, left out of the figures below)" : "") + "."),
      h("h2", { text: "By agent" }),
      h("p", { cls: "muted", text: "Over every attempt of the current definition, repeats and runs alike. Flakiness is 0 when every attempt had the same outcome and 1 when as many passed as failed (twice the share of the less common outcome)." }),
      h("div", { cls: "scroll" }, h("table", { cls: "cases", id: "case-agents" },
        h("thead", null, h("tr", null, ["agent", "runs", "attempts", "passed", "flakiness"].map(function (t) { return h("th", { text: t }); }))),
        h("tbody", null, agentRows))),
      h("h2", { text: "History" }),
      table("case-history",
        ["h-run", "h-recorded", "h-id", "h-agent", "h-state", "h-definition", "h-score", "h-passed", "h-rate", "h-cost", "h-duration", null],
        ["#", "recorded", "run", "agent", "state", "definition", "score", "passed", "attempts passed", "cost (USD)", "duration (s)", "attempts"],
        rows, "filter runs (agent, run id …)")
    ]);
  }

  // ---- one attempt -----------------------------------------------------------------------
  function renderAttempt() {
    var p = params();
    var run = p.get("run") && p.get("run") !== "latest" ? runBySeq(p.get("run")) : newest();
    var caseId = p.get("case");
    var wanted = parseInt(p.get("attempt") || "1", 10);
    if (!run || run.cells === undefined) { problem("no readable run " + p.get("run") + " is recorded for this task class"); return; }
    withRun(run.seq, function (report) {
      if (!report) { problem("the report of this run (" + run.report_path + ") could not be loaded"); return; }
      var attempts = (report.cases || []).filter(function (c) { return c.case_id === caseId; });
      var c = null;
      attempts.forEach(function (a) { if ((a.repeat || 1) === wanted) { c = a; } });
      if (!c) { problem("run " + shortId(run.run_id) + " has no attempt " + wanted + " of case " + JSON.stringify(caseId)); return; }
      var repeats = report.repeats || 1;
      var cached = c.cached && c.cached_from ? " (cached: measured " + String(c.cached_from.measured_at).slice(0, 19) + " for " + usd(c.cached_from.cost_usd) + ")" : "";
      var source = c.cost_source === "gateway" ? "metered by the model gateway" + (c.sut_reported_cost_usd !== null && c.sut_reported_cost_usd !== undefined ? "; the SUT reported " + usd(c.sut_reported_cost_usd) : "")
        : c.cost_source === "sut-reported" ? "as the SUT reported it" : "no cost recorded";
      var nav = h("p", { cls: "links" }, h("a", { href: "case.html" + hash({ "case": caseId }), text: "history of this case" }), " · ",
        h("a", { href: "run.html" + hash({ run: run.seq }), text: "the run's cases" }),
        attempts.length > 1 ? [" · attempts: ", attempts.map(function (a) {
          var r = a.repeat || 1;
          return [r === wanted ? h("strong", { text: "r" + r }) : h("a", { href: attemptHref(run.seq, caseId, r), text: "r" + r }), " "];
        })] : null);
      var breakdown = Object.keys(c.breakdown || {}).sort();
      var u = c.model_usage;
      var diff = h("div", { id: "diff" });
      var calls = h("div", { id: "model-calls" });
      show(caseId, caseId + (repeats > 1 ? " attempt " + wanted : ""), [
        h("h1", { id: "case-id" }, caseId, repeats > 1 ? [" ", h("small", { text: "attempt " + wanted + " of " + repeats })] : null),
        nav,
        kv("attempt", [
          ["score", dec(c.score, 3) + " (threshold " + dec(c.pass_threshold, 3) + ")", "num"],
          ["passed", c.passed ? badge(true, "passed") : badge(false, "failed")],
          ["status", c.status],
          ["cost", [h("span", { id: "case-cost", cls: "num", text: usd(c.cost_usd) + cached }), ", ", h("span", { cls: "cost-source", text: source })]],
          ["duration", secs(c.duration_s), "num"],
          ["SUT", [h("code", { text: c.sut }), ", exit code " + (c.sut_exit_code === null || c.sut_exit_code === undefined ? "none" : c.sut_exit_code) +
            ", isolation " + (c.sut_isolation || "unknown") + " (network " + (c.sut_network || "unknown") + ")"]],
          ["rubric", "isolation " + (c.rubric_isolation || "unknown")],
          ["case digest", h("code", { text: c.case_digest })],
          ["run", [runLink(run), " ", h("span", { cls: "muted", text: "(" + run.agent + ", " + run.recorded.replace("T", " ") + ")" })]],
          run.verified ? null : ["report", badge(false, "does not verify: the report's bytes are not the ones the audit chain recorded")]
        ]),
        h("h2", { text: "Breakdown" }),
        breakdown.length ? h("table", { cls: "breakdown" }, breakdown.map(function (k) {
          var v = c.breakdown[k];
          return h("tr", null, h("th", { text: k }), h("td", { cls: "num", text: dec(v, 3) }), h("td", null, h("meter", { min: 0, max: 1, value: v })));
        })) : h("p", { cls: "muted", text: "no breakdown" }),
        h("h2", { text: "Failure modes" }),
        (c.failure_modes || []).length ? h("table", { cls: "modes" },
          h("thead", null, h("tr", null, h("th", { text: "code" }), h("th", { text: "severity" }), h("th", { text: "detail" }))),
          h("tbody", null, c.failure_modes.map(function (f) {
            return h("tr", { cls: "fm-row " + f.severity }, h("td", null, h("code", { text: f.code })), h("td", { text: f.severity }), h("td", null, h("pre", { cls: "detail", text: f.detail || "" })));
          }))) : h("p", { cls: "muted", text: "none" }),
        h("h2", { text: "Diff the SUT made" }), diff,
        h("h2", { text: "Model calls" }), calls,
        h("h2", { text: "SUT output" }),
        h("h3", { text: "stdout (tail)" }), h("pre", { cls: "output", id: "stdout", text: c.stdout_tail || "" }),
        h("h3", { text: "stderr (tail)" }), h("pre", { cls: "output", id: "stderr", text: c.stderr_tail || "" })
      ]);
      fillDiff(diff, c);
      fillCalls(calls, c, u);
    });
  }
  var pending = 0;  // fragments still loading; the app says "0" when the page is whole
  function settled(change) {
    pending += change;
    document.getElementById("app").setAttribute("data-pending", String(pending));
  }
  function fragment(kind, digest, into, raw, done) {
    if (!HEX64.test(digest || "")) {
      add(into, h("p", { cls: "bad", text: kind + " " + String(digest).slice(0, 16) + " is not a digest the state directory could hold" }));
      return;
    }
    settled(1);
    load(kind, digest, "../../" + kind + "s/" + digest + ".js", function (value) {
      settled(-1);
      if (value === undefined) {
        add(into, h("p", { cls: "bad", id: kind + "-note", text: kind + " " + digest.slice(0, 16) + "… is not in this site (built without it?)" }));
      } else if (value.missing) {
        add(into, h("p", { cls: "bad", id: kind + "-note", text: value.missing }));
      } else {
        if (value.note) { add(into, h("p", { cls: "muted", text: value.note })); }
        var box = h("div", { cls: kind === "diff" ? "scroll" : "calls" });
        box.innerHTML = value.html;  // rendered with escaping by the build (see the header)
        add(into, box);
        if (value.raw) { add(into, h("p", null, h("a", { href: "../../" + kind + "s/" + value.raw, text: raw }))); }
      }
      if (done) { done(value); }
    });
  }
  function fillDiff(into, c) {
    if (!c.diff_digest) {
      add(into, h("p", { cls: "muted", text: c.status === "scored" ? "the SUT changed nothing in the workspace" : "no diff: the case did not run" }));
      return;
    }
    fragment("diff", c.diff_digest, into, "raw diff");
  }
  function fillCalls(into, c, u) {
    if (!u) {
      add(into, h("p", { cls: "muted" }, "the model gateway did not meter this attempt (run with ", h("code", { text: "--codegenie-model-gateway" }), ")"));
      return;
    }
    var transcriptCell = h("td");
    add(into, h("table", { cls: "kv", id: "model-usage" },
      h("tr", null, h("th", { text: "calls" }), h("td", { cls: "num", text: int(u.calls) + (u.replayed ? " (replayed from cassettes: no upstream contacted)" : "") })),
      h("tr", null, h("th", { text: "tokens" }), h("td", { cls: "num", text: int(u.input_tokens) + " in (+ " + int(u.cached_input_tokens) + " cached) / " + int(u.output_tokens) + " out" })),
      h("tr", null, h("th", { text: "metered cost" }), h("td", { cls: "num", text: usd(u.cost_usd) + (c.cached ? " (when the cached result was measured)" : "") +
        (u.unpriced_calls ? " (" + int(u.unpriced_calls) + " call" + (u.unpriced_calls === 1 ? "" : "s") + " of models the price table does not price, counted as 0)" : "") })),
      h("tr", null, h("th", { text: "latency" }), h("td", { cls: "num", text: "p50 " + ms(u.latency_p50_s) + ", p95 " + ms(u.latency_p95_s) })),
      h("tr", null, h("th", { text: "upstream errors" }), h("td", { cls: "num", text: int(u.upstream_errors) + (u.upstream_errors ? " (gateway.upstream_error: the harness's failure, not the agent's)" : "") })),
      h("tr", null, h("th", { text: "transcript" }), transcriptCell)));
    var box = h("div", { id: "transcript" });
    add(into, [h("h3", { text: "Transcript" }), box]);
    if (!u.transcript_digest) {
      add(transcriptCell, "none");
      add(box, h("p", { cls: "muted", id: "transcript-note", text: u.calls === 0 ? "the agent made no model call" : "no transcript was kept of this attempt's calls" }));
      return;
    }
    add(transcriptCell, h("code", { text: u.transcript_digest }));
    fragment("transcript", u.transcript_digest, box, "raw transcript", function (value) {
      if (value && value.raw) {
        add(transcriptCell, [" (", h("a", { href: "../../transcripts/" + value.raw, text: "raw transcript" }), ")"]);
      }
    });
  }

  // ---- any two runs compared (the figures `codegenie-eval compare` prints) ---------------
  function cpLow(k, n, a) { return k <= 0 ? 0 : window.jStat.ibetainv(a, k, n - k + 1); }
  function cpHigh(k, n, a) { return k >= n ? 1 : window.jStat.ibetainv(1 - a, k + 1, n - k); }
  function rawDiscordant(b, d, n) {
    var share = d > 0 ? 2 * cpLow(b, Math.max(d, 1), index.exact.share) - 1 : -1;
    var rate = share >= 0 ? cpLow(d, n, index.exact.rate) : cpHigh(d, n, index.exact.rate);
    return Math.max(-1, rate * share);
  }
  function discordantLowerBound(b, c, n) {
    // the lowest raw bound over every outcome at least as good for B (monotone)
    var best = Infinity;
    for (var wins = b; wins <= n; wins++) {
      for (var losses = 0; losses <= c && wins + losses <= n; losses++) {
        best = Math.min(best, rawDiscordant(wins, Math.min(wins + losses, n), n));
      }
    }
    return best;
  }
  function bettingLowerBound(xs) {
    var B = index.betting;
    var n = xs.length;
    if (!n) { return 0; }
    var target = 1 / (1 - B.confidence);
    var threshold = Math.log(target);
    var unit = B.scales.map(function (s) { return s * Math.sqrt(2 * threshold / n); });
    function refuted(m) {
      var sums = new Float64Array(n);
      for (var k = 0; k < unit.length; k++) {
        var bet = unit[k] / Math.sqrt(Math.max(m * (1 - m), B.floor));
        if (m > 0) { bet = Math.min(bet, B.cap / m); }
        var running = 0;
        for (var t = 0; t < n; t++) {
          running += Math.log1p(bet * (xs[t] - m));
          var log = running + B.log_weights[k];
          if (log >= threshold) { return true; }
          sums[t] += Math.exp(log);
        }
      }
      for (var i = 0; i < n; i++) { if (sums[i] >= target) { return true; } }
      return false;
    }
    if (!refuted(0)) { return 0; }
    var low = 0, high = 1;
    for (var step = 0; step < B.bisections; step++) {
      var middle = (low + high) / 2;
      if (refuted(middle)) { low = middle; } else { high = middle; }
    }
    return low;
  }
  function binomPmf(k, n) { return Math.exp(window.jStat.combinationln(n, k) - n * Math.LN2); }
  function binomCdf(k, n) { var s = 0; for (var i = 0; i <= k; i++) { s += binomPmf(i, n); } return Math.min(1, s); }
  function comparison(A, B) {
    var paired = [], onlyA = [], onlyB = [];
    index.cases.forEach(function (caseId, i) {
      var a = A.cells[i], b = B.cells[i];
      if (a && b) { paired.push({ id: caseId, a: a[0], b: b[0], ap: !!a[1], bp: !!b[1], d: b[0] - a[0] }); }
      else if (a) { onlyA.push(caseId); }
      else if (b) { onlyB.push(caseId); }
    });
    var n = paired.length;
    var bBetter = 0, aBetter = 0, better = 0, worse = 0, same = 0, sum = 0;
    paired.forEach(function (p) {
      if (p.bp && !p.ap) { bBetter++; }
      if (p.ap && !p.bp) { aBetter++; }
      p.verdict = p.d > 1e-12 ? "better" : p.d < -1e-12 ? "worse" : "same";
      if (p.verdict === "better") { better++; } else if (p.verdict === "worse") { worse++; } else { same++; }
      sum += p.d;
    });
    var out = { paired: paired, onlyA: onlyA, onlyB: onlyB, better: better, worse: worse, same: same, bBetter: bBetter, aBetter: aBetter,
      mean: n ? sum / n : null, lower: null, method: "none", low: null, high: null, correlation: null, pTwo: null, pB: null };
    if (n && A.scores === "pass_fail" && B.scores === "pass_fail" && A.repeats === 1 && B.repeats === 1) {
      out.lower = discordantLowerBound(bBetter, aBetter, n);
      out.method = "exact-discordant";
    } else if (n) {
      var shifted = paired.map(function (p) { return Math.min(1, Math.max(0, (p.d + 1) / 2)); });
      out.lower = Math.max(-1, 2 * bettingLowerBound(shifted) - 1);
      out.method = "betting";
    }
    if (n >= 2) {
      var sd = Math.sqrt(paired.reduce(function (s, p) { return s + (p.d - out.mean) * (p.d - out.mean); }, 0) / (n - 1));
      var half = window.jStat.studentt.inv(0.975, n - 1) * sd / Math.sqrt(n);
      out.low = Math.max(-1, out.mean - half);
      out.high = Math.min(1, out.mean + half);
      var ma = paired.reduce(function (s, p) { return s + p.a; }, 0) / n;
      var mb = paired.reduce(function (s, p) { return s + p.b; }, 0) / n;
      var sab = 0, saa = 0, sbb = 0;
      paired.forEach(function (p) { sab += (p.a - ma) * (p.b - mb); saa += (p.a - ma) * (p.a - ma); sbb += (p.b - mb) * (p.b - mb); });
      if (saa > 0 && sbb > 0) { out.correlation = sab / Math.sqrt(saa * sbb); }
    }
    var discordant = bBetter + aBetter;
    if (discordant) {
      // exact binomial tests at 1/2 (McNemar): two-sided sums both tails, as scipy does
      var lowTail = Math.min(bBetter, discordant - bBetter);
      out.pTwo = 2 * bBetter === discordant ? 1 : Math.min(1, 2 * binomCdf(lowTail, discordant));
      out.pB = Math.min(1, binomCdf(discordant - bBetter, discordant));  // P(X >= wins), by symmetry
    }
    return out;
  }
  function label(run) {
    return "#" + run.i + " · " + run.recorded.replace("T", " ").slice(0, 16) + " · " + run.agent + " · " + shortId(run.run_id) + (run.complete ? "" : " · " + run.state);
  }
  function renderCompare() {
    var readable = index.runs.filter(function (r) { return r.cells !== undefined; });
    var p = params();
    var evidence = readable.filter(function (r) { return r.evidence; });
    var fallback = index.compare || (evidence.length >= 2 ? [evidence[evidence.length - 2].seq, evidence[evidence.length - 1].seq]
      : readable.length >= 2 ? [readable[readable.length - 2].seq, readable[readable.length - 1].seq]
      : readable.length ? [readable[0].seq, readable[0].seq] : null);
    if (!fallback) { show("compare", "compare", h("p", { text: "No readable run is recorded yet." })); return; }
    var A = runBySeq(p.get("a") || fallback[0]) || runBySeq(fallback[0]);
    var B = runBySeq(p.get("b") || fallback[1]) || runBySeq(fallback[1]);
    if (A.cells === undefined) { A = runBySeq(fallback[0]); }
    if (B.cells === undefined) { B = runBySeq(fallback[1]); }
    ["a", "b"].forEach(function (side) {
      var select = document.getElementById("pick-" + side);
      var chosen = side === "a" ? A : B;
      if (!select.options.length) {
        readable.slice().reverse().forEach(function (r) { add(select, h("option", { value: r.seq, text: label(r) })); });
        select.addEventListener("change", function () {
          window.location.hash = hash({ a: document.getElementById("pick-a").value, b: document.getElementById("pick-b").value });
        });
      }
      select.value = String(chosen.seq);
    });
    var cmp = comparison(A, B);
    var sides = h("div", { cls: "sides" }, [["A", A], ["B", B]].map(function (pair) {
      var r = pair[1];
      return h("section", { cls: "card", id: "side-" + pair[0].toLowerCase() }, h("h2", { text: pair[0] }),
        h("p", null, runLink(r), " · " + r.recorded.replace("T", " ") + " · ", h("code", { text: r.agent }), " · ", stateBadge(r)),
        h("p", { cls: "num", text: int(r.n) + (r.n === 1 ? " case, " : " cases, ") + int(r.passed) + " passed, mean " + dec(r.mean, 3) + ", lower_bound_95 " + dec(r.lb, 3) + " (" + r.method + ")" }));
    }));
    var rows = [
      ["paired cases", int(cmp.paired.length), "num"],
      ["better / worse / same", cmp.better + " / " + cmp.worse + " / " + cmp.same, "num"],
      ["mean difference", signed(cmp.mean), "num"],
      ["95% lower bound on the difference", signed(cmp.lower) + " (" + cmp.method + ")", "num"],
      cmp.low !== null ? ["estimate, not gating: 95% t interval of the mean difference", signed(cmp.low) + " to " + signed(cmp.high), "num"] : null,
      ["correlation of paired scores", dec(cmp.correlation, 3), "num"],
      ["McNemar (discordant: B better / A better)", cmp.bBetter + " / " + cmp.aBetter + (cmp.pTwo === null ? "; no discordant cases" : "; p two-sided " + dec(cmp.pTwo, 4) + ", p (B better) " + dec(cmp.pB, 4)), "num"],
      cmp.onlyA.length ? ["only in A", cmp.onlyA.join(", ")] : null,
      cmp.onlyB.length ? ["only in B", cmp.onlyB.join(", ")] : null
    ];
    var deltaRows = cmp.paired.map(function (d) {
      return h("tr", { cls: "delta " + d.verdict },
        h("td", { cls: "d-case" }, h("a", { href: "case.html" + hash({ "case": d.id }), text: d.id })),
        h("td", { cls: "d-a num", "data-sort-value": d.a }, h("a", { href: attemptHref(A.seq, d.id, 1), text: dec(d.a, 3) })),
        h("td", { cls: "d-b num", "data-sort-value": d.b }, h("a", { href: attemptHref(B.seq, d.id, 1), text: dec(d.b, 3) })),
        num("d-delta", d.d, signed(d.d)),
        h("td", { cls: "d-verdict", text: d.verdict }));
    });
    var app = document.getElementById("app");
    app.setAttribute("data-a", A.seq);
    app.setAttribute("data-b", B.seq);
    // the figures unrounded, for whoever checks them against `codegenie-eval compare --json`
    app.setAttribute("data-figures", JSON.stringify({ paired: cmp.paired.length, mean_delta: cmp.mean, lower_bound_delta_95: cmp.lower,
      bound_method: cmp.method, low: cmp.low, high: cmp.high, correlation: cmp.correlation, b_better: cmp.bBetter, a_better: cmp.aBetter,
      p_two_sided: cmp.pTwo, p_b_better: cmp.pB }));
    show("compare " + index.task_class, "compare", [
      sides,
      h("h2", { text: "Paired comparison (B \u2212 A)" }),
      kv("paired", rows),
      h("p", { cls: "muted" }, "The same figures as ", h("code", { text: "codegenie-eval compare A B" }),
        ", computed in this page from the recorded scores. Each case counts once (the mean of its attempts); a case only one run holds is listed, not paired."),
      table("deltas", ["d-case", "d-a", "d-b", "d-delta", "d-verdict"], ["case", "A", "B", "B \u2212 A", "verdict"], deltaRows, "filter cases")
    ]);
  }
})();
