// An experiment's page: the paged, sortable, filterable work unit table with live statuses,
// the timeline, the status-by-hyperparameter chart, annotations and cancellation.
"use strict";
(function () {
  var E = XM.boot.experiment;
  var base = "/api/experiments/" + E;
  var FINAL = { SUCCEEDED: 1, FAILED: 1, CANCELLED: 1, LOST: 1 };
  var view = { sort: "id", desc: false, filters: {}, state: "", offset: 0, limit: 100 };
  var columns = null;   // the sweep's hyperparameters, as last listed
  var shown = {};       // work unit id -> row element, for live updates
  var latest = {};      // work unit id -> its newest live status (the table's list may be older)
  var loading = 0;
  var version = 0;      // the live watch's version the first table page came with

  function query() {
    var p = new URLSearchParams({ sort: view.sort, desc: view.desc ? "1" : "", offset: view.offset, limit: view.limit });
    if (view.state) p.set("state", view.state);
    Object.keys(view.filters).forEach(function (k) { if (view.filters[k]) p.set("f." + k, view.filters[k]); });
    return p.toString();
  }

  async function load() {
    var ticket = ++loading;
    var data;
    try { data = await XM.call("GET", base + "/units?" + query()); } catch (e) { return; }
    if (ticket !== loading) return;  // a newer request superseded this one
    if (!version) version = data.version;
    if (!columns || columns.join("\u0000") !== data.columns.join("\u0000")) {
      columns = data.columns;
      header();
      chartParams();
    }
    body(data.rows);
    var last = Math.min(data.offset + data.rows.length, data.matched);
    document.getElementById("page-info").textContent = data.matched ? (data.offset + 1) + "–" + last + " of " + data.matched : "none";
    document.getElementById("matched").textContent = data.matched + " of " + data.total + " work units match";
    document.getElementById("prev").disabled = data.offset === 0;
    document.getElementById("next").disabled = last >= data.matched;
  }

  // Column key, label, whether it can be sorted and filtered.
  function allColumns() {
    var fixed = [["id", "Id"], ["state", "Status"]];
    var params = columns.map(function (c) { return [c, c]; });
    return fixed.concat(params, [["exit_code", "Exit"], ["start", "Started"], ["end", "Ended"]]);
  }

  function header() {
    var head = document.getElementById("head");
    var filters = document.getElementById("filters");
    head.innerHTML = "";
    filters.innerHTML = "";
    allColumns().forEach(function (col) {
      var th = document.createElement("th");
      th.scope = "col";
      th.dataset.col = col[0];
      var button = document.createElement("button");
      button.type = "button";
      button.className = "sort";
      button.textContent = col[1];
      button.title = "Sort by " + col[1];
      button.addEventListener("click", function () {
        view.desc = view.sort === col[0] ? !view.desc : false;
        view.sort = col[0];
        view.offset = 0;
        sortMarks();
        load();
      });
      th.appendChild(button);
      head.appendChild(th);
      var fth = document.createElement("th");
      if (col[0] !== "state") {
        var input = document.createElement("input");
        input.type = "search";
        input.setAttribute("aria-label", "Filter " + col[1]);
        input.dataset.col = col[0];
        input.value = view.filters[col[0]] || "";
        input.addEventListener("input", debounce(function () {
          view.filters[col[0]] = input.value;
          view.offset = 0;
          load();
        }, 300));
        fth.appendChild(input);
      }
      filters.appendChild(fth);
    });
    ["Reason", "Backend", "Native state", "Artifact", "Links", ""].forEach(function (label) {
      var th = document.createElement("th");
      th.scope = "col";
      th.textContent = label;
      head.appendChild(th);
      filters.appendChild(document.createElement("th"));
    });
    sortMarks();
  }

  function sortMarks() {
    document.querySelectorAll("#head th[data-col]").forEach(function (th) {
      var on = th.dataset.col === view.sort;
      th.setAttribute("aria-sort", on ? (view.desc ? "descending" : "ascending") : "none");
      var b = th.querySelector("button");
      b.textContent = b.textContent.replace(/ [▲▼]$/, "") + (on ? (view.desc ? " ▼" : " ▲") : "");
    });
  }

  function cell(text, cls) {
    return "<td" + (cls ? ' class="' + cls + '"' : "") + ">" + XM.esc(text) + "</td>";
  }

  function rowHtml(r) {
    var job = r.jobs[0] || {};
    var html = cell(r.id, "num") +
      '<td class="state"><span class="badge st-' + r.state + '">' + r.state + "</span></td>";
    columns.forEach(function (c) {
      var v = r.params[c];
      html += cell(v === undefined ? "" : typeof v === "boolean" ? String(v) : v, typeof v === "number" ? "num" : "");
    });
    html += cell(r.exit_code === null ? "" : r.exit_code, "num exit") + cell(XM.when(r.start), "start") + cell(XM.when(r.end), "end");
    html += cell(r.reason, "reason") + cell(r.jobs.map(function (j) { return j.backend; }).join(", "));
    html += cell(r.native_state, "native") + cell(r.jobs.map(function (j) { return j.artifact; }).join(", "));
    var links = r.jobs.map(function (j) {
      var url = "/experiments/" + E + "/units/" + r.id + "/logs?job=" + encodeURIComponent(j.name);
      var out = '<a class="logs" href="' + url + '">logs' + (r.jobs.length > 1 ? " " + XM.esc(j.name) : "") + "</a>";
      if (j.link && j.link.href) out += ' · <a href="' + XM.esc(j.link.href) + '" rel="noreferrer" target="_blank">' + XM.esc(j.link.label) + "</a>";
      if (j.link && j.link.command) out += ' · <code title="' + XM.esc(j.link.label) + '">' + XM.esc(j.link.command) + "</code>";
      return out;
    }).join("<br>");
    html += "<td>" + links + "</td>";
    html += '<td><button type="button" class="cancel" data-id="' + r.id + '"' + (r.final ? " disabled" : "") +
      ' aria-label="Cancel work unit ' + r.id + '">Cancel</button></td>';
    return html;
  }

  function body(rows) {
    var tbody = document.getElementById("rows");
    shown = {};
    if (!rows.length) {
      tbody.innerHTML = '<tr><td class="empty" colspan="99">No work unit matches.</td></tr>';
      return;
    }
    tbody.innerHTML = rows.map(function (r) {
      return '<tr id="wu-' + r.id + '" data-id="' + r.id + '" data-state="' + r.state + '">' + rowHtml(r) + "</tr>";
    }).join("");
    rows.forEach(function (r) {
      shown[r.id] = document.getElementById("wu-" + r.id);
      if (latest[r.id] && (latest[r.id].updated || 0) >= (r.updated || 0)) applyUpdate(latest[r.id]);
    });
  }

  // Whether a status is at least as new as the newest seen (a cancel's answer can arrive after
  // the watch already told the unit's end).
  function remember(u) {
    var known = latest[u.id];
    if (known && (known.updated || 0) > (u.updated || 0)) return false;
    latest[u.id] = u;
    return true;
  }

  function applyUpdate(u) {
    var tr = shown[u.id];
    if (!tr) return;
    tr.dataset.state = u.state;
    tr.querySelector(".state").innerHTML = '<span class="badge st-' + u.state + '">' + u.state + "</span>";
    tr.querySelector(".exit").textContent = u.exit_code === null ? "" : u.exit_code;
    tr.querySelector(".reason").textContent = u.reason;
    tr.querySelector(".native").textContent = u.native_state;
    tr.querySelector(".start").textContent = XM.when(u.start);
    tr.querySelector(".end").textContent = XM.when(u.end);
    tr.querySelector("button.cancel").disabled = !!FINAL[u.state];
  }

  function summary(counts) {
    var order = ["PENDING", "STARTING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED", "LOST"];
    var total = 0, segs = "", badges = "";
    order.forEach(function (s) {
      var n = counts[s] || 0;
      if (!n) return;
      total += n;
      segs += '<span class="seg st-' + s + '" style="flex-grow:' + n + '" title="' + n + " " + s + '"></span>';
      badges += '<span class="badge st-' + s + '">' + n + " " + s.toLowerCase() + "</span>";
    });
    document.getElementById("summary").innerHTML = total + ' work units <span class="bar" role="img" aria-label="status counts">' +
      segs + '</span> <span class="counts">' + badges + "</span>";
  }

  function live() {
    var source = new EventSource(base + "/events?since=" + version);
    var redraw = throttle(function () { timeline(); chart(); }, 3000);
    source.addEventListener("update", function (event) {
      var data = JSON.parse(event.data);
      data.units.forEach(function (u) { if (remember(u)) applyUpdate(u); });
      // Until the watch's first snapshot is complete its counts cover only part of the sweep.
      var counted = Object.keys(data.counts).reduce(function (n, k) { return n + data.counts[k]; }, 0);
      if (counted >= XM.boot.count) summary(data.counts);
      redraw();
    });
    source.addEventListener("failure", function (event) { XM.toast(JSON.parse(event.data).error); });
  }

  // -- timeline ------------------------------------------------------------------------------
  var COLORS = {};
  function colors() {
    var style = getComputedStyle(document.documentElement);
    ["pending", "starting", "running", "succeeded", "failed", "cancelling", "cancelled", "lost"].forEach(function (s) {
      COLORS[s.toUpperCase()] = style.getPropertyValue("--" + s).trim();
    });
    COLORS.fg = style.getPropertyValue("--muted").trim();
  }

  async function timeline() {
    var data;
    try { data = await XM.call("GET", base + "/timeline"); } catch (e) { return; }
    colors();
    var canvas = document.getElementById("timeline");
    var bars = data.bars;
    var now = Date.now() / 1000 - data.t0;
    var end = 0;
    bars.forEach(function (b) { end = Math.max(end, b[4] === null ? (b[3] === null ? b[2] : now) : b[4]); });
    end = Math.max(end, 1);
    var rowH = Math.max(1, Math.min(10, 560 / Math.max(bars.length, 1)));
    var width = canvas.clientWidth || 800;
    var height = Math.max(80, Math.ceil(bars.length * rowH) + 24);
    var ratio = window.devicePixelRatio || 1;
    canvas.width = width * ratio;
    canvas.height = height * ratio;
    canvas.style.height = height + "px";
    var g = canvas.getContext("2d");
    g.scale(ratio, ratio);
    var left = 4, span = width - 8;
    var x = function (t) { return left + (t / end) * span; };
    bars.forEach(function (b, i) {
      var y = i * rowH;
      var color = COLORS[b[5]] || COLORS.PENDING;
      var queued = b[2] || 0;
      var start = b[3], stop = b[4] === null ? now : b[4];
      g.globalAlpha = 0.35;
      g.fillStyle = color;
      g.fillRect(x(queued), y, Math.max(1, x(start === null ? stop : start) - x(queued)), Math.max(1, rowH - (rowH > 3 ? 1 : 0)));
      if (start !== null) {
        g.globalAlpha = 1;
        g.fillRect(x(start), y, Math.max(1, x(stop) - x(start)), Math.max(1, rowH - (rowH > 3 ? 1 : 0)));
      }
    });
    g.globalAlpha = 1;
    g.fillStyle = COLORS.fg;
    g.font = "11px system-ui";
    g.fillText("0 s", left, height - 6);
    var label = end.toFixed(1) + " s";
    g.fillText(label, width - g.measureText(label).width - 4, height - 6);
    canvas.onmousemove = function (event) {
      var i = Math.floor((event.offsetY) / rowH);
      var b = bars[i];
      document.getElementById("timeline-info").textContent = b ?
        "work unit " + b[0] + " / " + b[1] + ": " + b[5] + ", queued " + (b[2] || 0).toFixed(1) + " s" +
        (b[3] !== null ? ", started " + b[3].toFixed(1) + " s" : "") + (b[4] !== null ? ", ended " + b[4].toFixed(1) + " s" : "") : "";
    };
    canvas.setAttribute("aria-label", "Timeline of " + bars.length + " jobs over " + end.toFixed(1) + " seconds");
  }

  // -- chart ---------------------------------------------------------------------------------
  function chartParams() {
    var select = document.getElementById("chart-param");
    var current = select.value;
    select.innerHTML = columns.map(function (c) { return "<option>" + XM.esc(c) + "</option>"; }).join("");
    if (columns.indexOf(current) >= 0) select.value = current;
    chart();
  }

  async function chart() {
    var param = document.getElementById("chart-param").value;
    var box = document.getElementById("chart");
    if (!param) { box.innerHTML = '<p class="meta">This sweep has no hyperparameters.</p>'; return; }
    var data;
    try { data = await XM.call("GET", base + "/chart?param=" + encodeURIComponent(param)); } catch (e) { return; }
    var order = ["PENDING", "STARTING", "RUNNING", "SUCCEEDED", "FAILED", "CANCELLING", "CANCELLED", "LOST"];
    box.innerHTML = data.buckets.map(function (b) {
      var total = 0, segs = "", label = [];
      order.forEach(function (s) {
        var n = b.counts[s] || 0;
        if (!n) return;
        total += n;
        label.push(n + " " + s.toLowerCase());
        segs += '<span class="seg st-' + s + '" style="flex-grow:' + n + '" title="' + n + " " + s + '"></span>';
      });
      return "<span>" + XM.esc(param) + " = " + XM.esc(b.value) + '</span><span class="bar" role="img" aria-label="' +
        label.join(", ") + '">' + segs + '</span><span class="meta">' + label.join(", ") + "</span>";
    }).join("");
  }

  // -- actions -------------------------------------------------------------------------------
  document.getElementById("rows").addEventListener("click", async function (event) {
    var button = event.target.closest("button.cancel");
    if (!button) return;
    var id = button.dataset.id;
    if (!confirm("Cancel work unit " + id + " of experiment " + E + "?")) return;
    button.disabled = true;
    try {
      var u = await XM.call("POST", base + "/units/" + id + "/cancel");
      if (remember(u)) applyUpdate(u);
      XM.toast("Work unit " + id + ": " + u.state.toLowerCase());
    } catch (e) { button.disabled = false; }
  });

  document.getElementById("cancel-all").addEventListener("click", async function () {
    if (!confirm("Cancel every unfinished work unit of experiment " + E + "?")) return;
    try {
      var r = await XM.call("POST", base + "/cancel");
      XM.toast("Cancelling " + r.cancelled_work_units + " work unit(s)");
    } catch (e) { /* shown by XM.call */ }
  });

  document.getElementById("annotate").addEventListener("submit", async function (event) {
    event.preventDefault();
    var form = event.target;
    try {
      var r = await XM.call("POST", base + "/annotations", {
        title: form.title.value, tags: form.tags.value, notes: form.notes.value
      });
      document.getElementById("title").textContent = r.title || "(untitled)";
      document.getElementById("tags-view").innerHTML = r.tags.map(function (t) { return '<span class="tag">' + XM.esc(t) + "</span>"; }).join(" ");
      XM.toast("Annotations saved");
    } catch (e) { /* shown by XM.call */ }
  });

  document.getElementById("state-filter").addEventListener("change", function (event) {
    view.state = event.target.value;
    view.offset = 0;
    load();
  });
  document.getElementById("prev").addEventListener("click", function () { view.offset = Math.max(0, view.offset - view.limit); load(); });
  document.getElementById("next").addEventListener("click", function () { view.offset += view.limit; load(); });
  document.getElementById("page-size").addEventListener("change", function (event) { view.limit = +event.target.value; view.offset = 0; load(); });
  document.getElementById("chart-param").addEventListener("change", chart);
  document.getElementById("theme").addEventListener("click", function () { setTimeout(timeline, 0); });

  function debounce(fn, ms) { var t; return function () { clearTimeout(t); t = setTimeout(fn, ms); }; }
  function throttle(fn, ms) {
    var waiting = false;
    return function () { if (waiting) return; waiting = true; setTimeout(function () { waiting = false; fn(); }, ms); };
  }

  load().then(function () { live(); timeline(); });
})();
