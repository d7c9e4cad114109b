// The Compare servers page: posts the form to ./compare/start and renders ./compare/status
// (polled once a second while a comparison runs). Text goes in with textContent only.
(function () {
  "use strict";
  var base = "./compare";
  var timer = null;
  var $ = function (id) { return document.getElementById(id); };
  var SVG = "http://www.w3.org/2000/svg";

  function fmt(value, digits) {
    if (value === null || value === undefined) return "—";
    return Number(value).toLocaleString("en-US", { maximumFractionDigits: digits || 0 });
  }

  function share(value) {
    return value === null || value === undefined ? "—" : Math.round(value * 100) + "%";
  }

  function cell(tr, text, className, title) {
    var td = document.createElement("td");
    td.textContent = text;
    if (className) td.className = className;
    if (title) td.title = title;
    tr.appendChild(td);
  }

  function svg(tag, attrs, text) {
    var el = document.createElementNS(SVG, tag);
    Object.keys(attrs).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) el.textContent = text;
    return el;
  }

  function drawChart(rows) {
    var chart = $("chart");
    chart.replaceChildren();
    var done = rows.filter(function (r) { return r.status === "ok"; });
    if (!done.length) return;
    done.sort(function (a, b) { return b.rps - a.rps; });
    var max = Math.max.apply(null, done.map(function (r) { return r.rps; })) || 1;
    var rowH = 26, left = 160, width = 720, right = 90, top = 24;
    var root = svg("svg", { width: left + width + right, height: top + done.length * rowH + 10, role: "img",
                            "aria-label": "RPS per server" });
    root.appendChild(svg("text", { x: 0, y: 14, "font-size": 13, "font-weight": 600 }, "RPS per server (higher is better)"));
    done.forEach(function (r, i) {
      var y = top + i * rowH, w = Math.max(1, r.rps / max * width);
      root.appendChild(svg("text", { x: left - 8, y: y + 17, "font-size": 12, "text-anchor": "end" }, r.server));
      root.appendChild(svg("rect", { x: left, y: y + 4, width: w.toFixed(1), height: rowH - 8, fill: i === 0 ? "#1f77b4" : "#8fb7dc" }));
      root.appendChild(svg("text", { x: left + w + 6, y: y + 17, "font-size": 12 }, fmt(r.rps, 0)));
    });
    chart.appendChild(root);
  }

  function showError(message) {
    var status = $("status");
    status.className = "error";
    status.textContent = message;
  }

  function render(data) {
    var running = data.state === "running";
    $("start").disabled = running;
    $("stop").disabled = !running;
    var status = $("status");
    if (data.state !== "idle") {
      status.className = "muted";
      status.textContent = (running ? "Running: " + (data.current || "…") : data.state + (data.message ? ": " + data.message : "")) +
        " — workload " + data.workload + ", " + data.users + " users, " + data.seconds + " s per server after " + data.warmup_s +
        " s warm-up, order seed " + data.seed + ".";
    }
    var body = document.querySelector("#results tbody");
    body.replaceChildren();
    data.rows.forEach(function (r) {
      var ok = r.status === "ok";
      var tr = document.createElement("tr");
      tr.dataset.server = r.server;
      if (r.status === "running") tr.className = "running";
      cell(tr, String(r.position + 1));
      cell(tr, r.server);
      cell(tr, r.status, r.status === "failed" ? "error status" : "status", r.error || "");
      cell(tr, ok ? fmt(r.rps, 0) : "—", "num rps");
      cell(tr, ok ? fmt(r.p50_us) : "—", "num p50");
      cell(tr, ok ? fmt(r.p99_us) : "—", "num p99");
      cell(tr, ok ? fmt(r["p99.9_us"]) : "—", "num p999");
      cell(tr, ok ? fmt(r.requests) : "—", "num");
      cell(tr, ok ? fmt(r.failures) : "—", "num");
      cell(tr, ok && r.cpu_ms_per_request !== null ? fmt(r.cpu_ms_per_request, 3) : "—", "num cpu");
      cell(tr, ok ? share(r.server_utilization) : "—", "num busy");
      cell(tr, ok ? (r.bottleneck || "—") : "—", "bottleneck", r.bottleneck_reason || "");
      cell(tr, ok ? share(r.other_share) + (r.interference_flagged ? " (interference)" : "") : "—",
           "num other" + (r.interference_flagged ? " error" : ""));
      body.appendChild(tr);
    });
    drawChart(data.rows);
    var measured = data.rows.filter(function (r) { return r.status === "ok" || r.status === "failed"; });
    $("downloads").hidden = running || !measured.length;
    if (data.compare_id) {
      $("run-id").textContent = data.compare_id;
      $("report-link").href = "./reports/" + encodeURIComponent(data.compare_id) + "/index.html";
      $("report-link").hidden = !data.has_report;
    }
    $("note").textContent = data.rows.length ? "Measured by serverlab's own runner, as make report measures: latency " +
      "percentiles from the HDR histograms of every Locust process merged; the server's CPU from its own cgroup " +
      "(GET /lab/cpu, read at the end of the warm-up and of the window); the bottleneck by the report's rules " +
      "(server-bound at 90% of its CPU budget, generator-bound when a Locust process is at 90% of a core, " +
      "interference when other programs use 5% of the lab's CPUs). Hover a bottleneck for its reason." : "";
    if (running && !timer) timer = setInterval(refresh, 1000);
    if (!running && timer) { clearInterval(timer); timer = null; }
  }

  function answer(r) {
    return r.json().catch(function () { return { success: false, message: "HTTP " + r.status }; });
  }

  function refresh() {
    return fetch(base + "/status", { cache: "no-store" }).then(answer).then(render);
  }

  $("toggle-all").addEventListener("click", function (event) {
    event.preventDefault();
    var boxes = document.querySelectorAll("#servers input");
    var any = Array.prototype.some.call(boxes, function (b) { return !b.checked; });
    boxes.forEach(function (b) { b.checked = any; });
  });

  $("compare-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var servers = Array.prototype.filter.call(document.querySelectorAll("#servers input"), function (b) { return b.checked; })
      .map(function (b) { return b.value; });
    // numbers go as typed (text): the server refuses 8.9 users, 1e400 or an empty field, naming the limit
    var number = function (id) { var v = $(id).value.trim(); return v === "" ? null : v; };
    var payload = { servers: servers, workload: $("workload").value, users: number("users"),
                    seconds: number("seconds"), warmup_s: number("warmup") };
    fetch(base + "/start", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(payload) })
      .then(answer)
      .then(function (data) {
        if (!data.success) { showError(data.message); return; }
        render(data);
      });
  });

  $("stop").addEventListener("click", function () {
    fetch(base + "/stop", { method: "POST" }).then(answer).then(function (data) {
      if (!data.success) { showError(data.message); return; }
      render(data);
    });
  });

  refresh();
})();
