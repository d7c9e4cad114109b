// serverlab additions to Locust's web UI (loaded by labui.py into Locust's index page).
// 1. the start form ticks only the default workload's class (HelloUser) the first time it is shown
//    (Locust ticks every class);
// 2. the header's stat area shows the target server (Locust's Host field stays empty: the
//    Server dropdown chooses the target);
// 3. the "Compare servers" and "Reports" tabs (Locust extended tabs) show the lab's pages.
(function () {
  "use strict";
  // the user class of serverlab.terms.DEFAULT_WORKLOAD, set by labui.py on this script's tag
  var script = document.currentScript;
  var DEFAULT_CLASS = script && script.dataset ? script.dataset.defaultClass : null;
  // keys differ from Locust's own ("reports" is its Download Data tab)
  var PAGES = { "lab-compare": "./serverlab/compare", "lab-reports": "./serverlab/reports/" };
  var state = null;
  var defaultApplied = false;

  function applyDefaultSelection() {
    if (defaultApplied) return;
    var rows = Array.prototype.slice.call(document.querySelectorAll("tbody tr"));
    var classRows = rows.filter(function (tr) {
      var cells = tr.querySelectorAll("td");
      return cells.length >= 2 && tr.querySelector('input[type="checkbox"]') && /User$/.test(cells[1].textContent.trim());
    });
    if (!classRows.length) return;
    if (!classRows.some(function (tr) { return tr.querySelectorAll("td")[1].textContent.trim() === DEFAULT_CLASS; })) return;
    // React batches state: one click per tick, until only the default class is ticked
    var wrong = classRows.filter(function (tr) {
      var name = tr.querySelectorAll("td")[1].textContent.trim();
      return (name === DEFAULT_CLASS) !== tr.querySelector('input[type="checkbox"]').checked;
    });
    if (!wrong.length) { defaultApplied = true; return; }
    wrong[0].querySelector("td").click();
  }

  function headerStatArea() {
    // Locust's header shows bold labels (Host, Status, Users, ...) above their values
    var labels = document.querySelectorAll("header p, header h6, header span");
    for (var i = 0; i < labels.length; i++) {
      if (labels[i].textContent.trim() === "Host" && !labels[i].closest("#serverlab-server")) {
        return labels[i].parentElement; // the Host block
      }
    }
    return null;
  }

  function renderServer() {
    var hostBlock = headerStatArea();
    if (!hostBlock || !state) return;
    var box = document.getElementById("serverlab-server");
    if (!box) {
      box = document.createElement("div");
      box.id = "serverlab-server";
      box.style.cssText = "display:flex;flex-direction:column;margin-right:16px;min-width:0";
      box.innerHTML = '<p style="margin:0;font-weight:bold">Server <span class="serverlab-links" style="font-weight:normal;font-size:12px"></span></p>' +
        '<p class="serverlab-server-name" style="margin:0;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:260px"></p>';
      hostBlock.parentElement.insertBefore(box, hostBlock);
    }
    var running = state.state === "running" || state.state === "spawning";
    var text = state.server || "?";
    if (state.comparing) text += " (comparing)";
    else if (!running) text += " (next test)";
    var name = box.querySelector(".serverlab-server-name");
    if (name.textContent !== text) name.textContent = text;
    box.title = state.url ? "target: " + state.url : "";
    // before a first test Locust shows its start form, not its tabs: link the lab's pages
    var links = box.querySelector(".serverlab-links");
    var wanted = document.querySelector('[role="tablist"]') ? "" :
      '· <a style="color:inherit" href="./serverlab/compare">compare servers</a> · <a style="color:inherit" href="./serverlab/reports/">reports</a>';
    if (links.innerHTML !== wanted) links.innerHTML = wanted;
  }

  function currentTab() {
    var match = /[?&]tab=([^&]+)/.exec(window.location.search);
    return match ? decodeURIComponent(match[1]) : null;
  }

  function renderTab() {
    var tab = currentTab();
    var frame = document.getElementById("serverlab-frame");
    var tablist = document.querySelector('[role="tablist"]');
    if (!PAGES[tab] || !tablist) {
      if (frame) frame.remove();
      return;
    }
    if (frame && frame.dataset.tab === tab) return;
    if (frame) frame.remove();
    // the tab bar sits in Locust's main container; the page goes right after that bar
    var bar = tablist.closest(".MuiTabs-root") || tablist;
    var host = bar.parentElement;
    frame = document.createElement("iframe");
    frame.id = "serverlab-frame";
    frame.dataset.tab = tab;
    frame.title = tab === "lab-compare" ? "Compare servers" : "Reports";
    frame.src = PAGES[tab];
    frame.style.cssText = "display:block;width:100%;height:calc(100vh - 170px);min-height:560px;border:0;margin-top:8px;background:#fff";
    host.parentElement.insertBefore(frame, host.nextSibling);
  }

  function poll() {
    fetch("./serverlab/state", { cache: "no-store" })
      .then(function (r) { return r.json(); })
      .then(function (data) { state = data; renderServer(); })
      .catch(function () {});
  }

  function tick() {
    applyDefaultSelection();
    renderServer();
    renderTab();
  }

  poll();
  setInterval(poll, 1000);
  setInterval(tick, 150);
})();
