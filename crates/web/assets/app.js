// The bell on every page: the user's notifications, new ones live over the one stream, the
// unread count kept in this browser (what was seen is the newest number opened).
(function () {
  "use strict";
  var bell = document.getElementById("bell");
  if (!bell) { return; }
  var zh = (document.body.dataset.lang || "zh") === "zh";
  var panel = document.getElementById("notices");
  var count = document.getElementById("bell-count");
  var KEY = "yunnao_seen_notice";
  var seen = Number(localStorage.getItem(KEY)) || 0;
  var items = [];
  function render() {
    var unread = items.filter(function (n) { return n.seq > seen; }).length;
    count.textContent = unread > 99 ? "99+" : String(unread);
    count.hidden = unread === 0;
    bell.setAttribute("aria-label", (zh ? "通知，未读 " : "Notifications, unread ") + unread);
    var list = panel.querySelector("ul");
    list.innerHTML = "";
    if (items.length === 0) {
      var none = document.createElement("li");
      none.className = "muted";
      none.textContent = zh ? "暂无通知" : "No notifications";
      list.appendChild(none);
    }
    items.forEach(function (n) {
      var li = document.createElement("li");
      li.className = n.kind + (n.seq > seen ? " unread" : "");
      var time = document.createElement("time");
      time.textContent = n.at.slice(5);
      var link = document.createElement("a");
      link.href = n.href;
      link.textContent = zh ? n.zh : n.en;
      li.appendChild(time);
      li.appendChild(link);
      list.appendChild(li);
    });
  }
  fetch("/ui/notices", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : []; })
    .then(function (found) {
      // A restarted server counts from 1 again.
      if (found.length && found[0].seq < seen) { seen = 0; }
      items = found.concat(items.filter(function (n) { return !found.some(function (f) { return f.seq === n.seq; }); }));
      items.sort(function (a, b) { return b.seq - a.seq; });
      render();
    })
    .catch(function () { render(); });
  window.yunnaoStream = new EventSource(document.getElementById("map") ? "/ui/stream" : "/ui/stream?only=notices");
  window.yunnaoStream.addEventListener("notice", function (e) {
    items.unshift(JSON.parse(e.data));
    items = items.slice(0, 50);
    render();
  });
  // A page left for the next keeps no stream open (a browser allows six connections to one
  // server; pages kept for "back" would hold them); coming back reloads it.
  window.addEventListener("pagehide", function () { window.yunnaoStream.close(); });
  window.addEventListener("pageshow", function (e) { if (e.persisted) { location.reload(); } });
  bell.addEventListener("click", function () {
    panel.hidden = !panel.hidden;
    bell.setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden && items.length) {
      seen = Math.max(seen, items[0].seq);
      localStorage.setItem(KEY, String(seen));
      render();
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !panel.hidden) { panel.hidden = true; bell.setAttribute("aria-expanded", "false"); bell.focus(); }
  });
})();
// The overview's live part: one EventSource, counters, district colours, ticker, sparkline.
(function () {
  "use strict";
  var map = document.getElementById("map");
  if (!map) { return; }
  var lang = document.body.dataset.lang || "zh";
  var SVG = "http://www.w3.org/2000/svg";
  var COLOURS = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac", "#555"];
  function el(name, attrs, text) {
    var node = document.createElementNS(SVG, name);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) { node.textContent = text; }
    return node;
  }
  // Incidents per day, stacked by district, with the districts as a legend.
  function daily(snapshot) {
    var svg = document.getElementById("daily");
    var rows = snapshot.incidents_daily || [];
    if (!svg || rows.length === 0) { return; }
    var names = {};
    (snapshot.districts || []).forEach(function (d) { names[d.code] = d.name; });
    var days = [], districts = [];
    rows.forEach(function (r) {
      if (days.indexOf(r.day) < 0) { days.push(r.day); }
      if (districts.indexOf(r.district) < 0) { districts.push(r.district); }
    });
    var totals = days.map(function (day) {
      return rows.filter(function (r) { return r.day === day; }).reduce(function (a, r) { return a + r.reported; }, 0);
    });
    var max = Math.max.apply(null, totals.concat([1]));
    while (svg.firstChild) { svg.removeChild(svg.firstChild); }
    var width = 170 / days.length;
    days.forEach(function (day, i) {
      var y = 92;
      districts.forEach(function (code, j) {
        var r = rows.filter(function (x) { return x.day === day && x.district === code; })[0];
        if (!r || r.reported === 0) { return; }
        var h = (r.reported / max) * 80;
        y -= h;
        var bar = el("rect", { x: (i * width + 2).toFixed(1), y: y.toFixed(1), width: (width - 4).toFixed(1), height: h.toFixed(1), fill: COLOURS[j % COLOURS.length] });
        bar.appendChild(el("title", {}, day + " " + (names[code] || (lang === "zh" ? "未定位" : "unlocated")) + ": " + r.reported));
        svg.appendChild(bar);
      });
      svg.appendChild(el("text", { x: (i * width + width / 2).toFixed(1), y: 104, "text-anchor": "middle", "class": "axis" }, day.slice(5)));
      svg.appendChild(el("text", { x: (i * width + width / 2).toFixed(1), y: (88 - (totals[i] / max) * 80).toFixed(1), "text-anchor": "middle", "class": "axis" }, totals[i]));
    });
    districts.forEach(function (code, j) {
      var y = 8 + j * 9;
      svg.appendChild(el("rect", { x: 178, y: y - 6, width: 7, height: 7, fill: COLOURS[j % COLOURS.length] }));
      svg.appendChild(el("text", { x: 188, y: y, "class": "axis" }, names[code] || (lang === "zh" ? "未定位" : "unlocated")));
    });
  }
  // 城运 rates and rankings of the chosen period (kept in this browser).
  var chosenDays = Number(localStorage.getItem("yunnao_period")) || 7;
  var lastSnapshot = null;
  function pct(v) { return v == null ? "—" : v.toFixed(1) + "%"; }
  function periods(snapshot) {
    lastSnapshot = snapshot;
    var period = (snapshot.periods || []).filter(function (p) { return p.days === chosenDays; })[0];
    document.querySelectorAll(".periods button").forEach(function (b) {
      b.setAttribute("aria-pressed", String(Number(b.dataset.days) === chosenDays));
    });
    if (!period) { return; }
    document.getElementById("kpi-on-time").textContent = pct(period.on_time_pct);
    document.getElementById("kpi-rework").textContent = pct(period.rework_pct);
    document.getElementById("kpi-closed").textContent = period.closed.toLocaleString(lang === "zh" ? "zh-CN" : "en");
    document.getElementById("kpi-satisfaction").textContent = period.satisfaction == null ? "—" : period.satisfaction.toFixed(2);
    [["rank-districts", period.districts, 10], ["rank-departments", period.departments, 6]].forEach(function (t) {
      var body = document.querySelector("#" + t[0] + " tbody");
      body.innerHTML = "";
      t[1].slice(0, t[2]).forEach(function (r, i) {
        var tr = document.createElement("tr");
        [String(i + 1), r.name, String(r.open), String(r.overdue), pct(r.on_time_pct), pct(r.rework_pct)].forEach(function (v, j) {
          var td = document.createElement("td");
          td.textContent = v;
          if (j === 3 && r.overdue > 0) { td.className = "bad"; }
          tr.appendChild(td);
        });
        body.appendChild(tr);
      });
    });
  }
  document.querySelectorAll(".periods button").forEach(function (b) {
    b.addEventListener("click", function () {
      chosenDays = Number(b.dataset.days);
      localStorage.setItem("yunnao_period", String(chosenDays));
      if (lastSnapshot) { periods(lastSnapshot); }
    });
  });
  // While the simulated city registers its devices, say so instead of showing bare zeros.
  function starting(snapshot) {
    var note = document.getElementById("starting");
    if (!note) { return; }
    var planned = snapshot.planned_devices || 0;
    var joined = snapshot.simulated || 0;
    var busy = planned > 0 && joined < planned;
    note.hidden = !busy;
    if (busy) {
      var fmt = function (v) { return v.toLocaleString(lang === "zh" ? "zh-CN" : "en"); };
      note.textContent = note.dataset.template.replace("{n}", fmt(joined)).replace("{total}", fmt(planned));
    }
  }
  function get(obj, path) {
    return path.split(".").reduce(function (o, k) { return o == null ? undefined : o[k]; }, obj);
  }
  function show(snapshot) {
    document.querySelectorAll("[data-k]").forEach(function (el) {
      var v = get(snapshot, el.dataset.k);
      if (v === undefined) { v = 0; }
      el.textContent = typeof v === "number" ? v.toLocaleString(lang === "zh" ? "zh-CN" : "en") : v;
    });
    (snapshot.districts || []).forEach(function (d) {
      var path = map.querySelector('.district[data-code="' + d.code + '"]');
      if (!path) { return; }
      var level = d.open === 0 ? 0 : d.open < 5 ? 1 : d.open < 20 ? 2 : d.open < 50 ? 3 : 4;
      path.setAttribute("class", "district" + (level ? " l" + level : ""));
      var title = path.querySelector("title");
      if (title) { title.textContent = d.name + (lang === "zh" ? " 未结 " : " open ") + d.open + (lang === "zh" ? " 超期 " : " overdue ") + d.overdue; }
    });
    var list = document.getElementById("ticker");
    if (list) {
      list.innerHTML = "";
      (snapshot.ticker || []).forEach(function (item) {
        var li = document.createElement("li");
        li.className = item.kind;
        var time = document.createElement("time");
        time.textContent = item.at;
        li.appendChild(time);
        var what = document.createElement(item.href ? "a" : "span");
        if (item.href) { what.href = item.href; }
        what.textContent = lang === "zh" ? item.zh : item.en;
        li.appendChild(what);
        list.appendChild(li);
      });
    }
    // Readings per second: the server's 10-second averages over the last hour, then now.
    var series = (snapshot.readings_history || []).concat([snapshot.readings_per_s || 0]);
    var max = Math.max.apply(null, series.concat([1]));
    var points = series.map(function (v, i) {
      var x = series.length < 2 ? 0 : (i * 300) / (series.length - 1);
      return x.toFixed(1) + "," + (58 - (v / max) * 56).toFixed(1);
    });
    var line = document.querySelector("#spark polyline");
    if (line) { line.setAttribute("points", points.join(" ")); }
    daily(snapshot);
    periods(snapshot);
    starting(snapshot);
    document.body.dataset.updated = snapshot.at || "";
  }
  // A district opened: its unit grids on a canvas, open cases in red, a grid named on hover.
  function openDistrict(code, fromKeyboard) {
    fetch("/ui/map/districts/" + code, { credentials: "same-origin" })
      .then(function (r) { if (!r.ok) { throw new Error("HTTP " + r.status); } return r.json(); })
      .then(function (d) { drawDistrict(d, fromKeyboard); })
      .catch(function (e) { console.warn("district grids unavailable", e); });
  }
  function drawDistrict(d, fromKeyboard) {
    var panel = map.parentNode;
    var view = document.getElementById("district-view");
    if (!view) {
      view = document.createElement("div");
      view.id = "district-view";
      view.innerHTML = '<p class="district-bar"><button type="button" id="back-to-city"></button><button type="button" id="zoom-out"></button> <b></b> <span class="muted"></span></p><canvas></canvas><p class="grid-tip muted">&nbsp;</p>';
      panel.insertBefore(view, map);
      view.querySelector("#back-to-city").addEventListener("click", function () {
        view.style.display = "none";
        map.style.display = "";
        var opened = map.querySelector('.district[data-code="' + view.dataset.code + '"]');
        if (opened && view.dataset.keyboard) { opened.focus(); }
      });
    }
    var zh = lang === "zh";
    view.querySelector("#back-to-city").textContent = "← " + (zh ? "返回全市" : "Back to the city");
    view.querySelector("#zoom-out").textContent = zh ? "缩小" : "Zoom out";
    view.querySelector(".district-bar b").textContent = d.name;
    view.querySelector(".district-bar span").textContent = (zh ? "单元网格 " : "unit grids ") + d.grids.toLocaleString() +
      (zh ? " · 有未结案件的网格 " : " · grids with open cases ") + d.open.length + (zh ? " · 点击放大" : " · click to zoom in");
    view.querySelector(".grid-tip").innerHTML = "&nbsp;";
    var mapHeight = map.style.display === "none" ? Number(view.dataset.mapHeight) : map.getBoundingClientRect().height;
    view.dataset.mapHeight = String(mapHeight);
    map.style.display = "none";
    view.style.display = "";
    var canvas = view.querySelector("canvas");
    var ratio = window.devicePixelRatio || 1;
    // The drawing takes the map's place in the panel: as wide as the panel, no taller than the
    // map was, so a tall district does not spill out below.
    var cssWidth = view.clientWidth || 800;
    var cssHeight = Math.max(240, mapHeight || window.innerHeight * 0.6);
    var fit = Math.min(cssWidth / d.width, cssHeight / d.height);
    canvas.style.width = Math.round(d.width * fit) + "px";
    canvas.style.height = Math.round(d.height * fit) + "px";
    canvas.width = Math.round(d.width * fit * ratio);
    canvas.height = Math.round(d.height * fit * ratio);
    var ctx = canvas.getContext("2d");
    var outline = new Path2D(d.outline);
    var bytes = atob(d.centres);
    var n = bytes.length / 4, xs = new Uint16Array(n), ys = new Uint16Array(n);
    for (var i = 0; i < n; i++) {
      xs[i] = bytes.charCodeAt(4 * i) | (bytes.charCodeAt(4 * i + 1) << 8);
      ys[i] = bytes.charCodeAt(4 * i + 2) | (bytes.charCodeAt(4 * i + 3) << 8);
    }
    var hex = d.hexagon;
    var reach = Math.max.apply(null, hex.map(function (p) { return Math.max(Math.abs(p[0]), Math.abs(p[1])); }));
    var open = {};
    d.open.forEach(function (o) { open[o[0]] = o[1]; });
    // The view: zoom factor and the frame point at the canvas's top left.
    var zoom = 1, left = 0, top = 0;
    // Back to the first corner with lineTo, not closePath: Chromium closes subpaths of one
    // path in quadratic time (40,000 cells took 6.6 s with closePath, 15 ms without).
    function cell(k) {
      ctx.moveTo(xs[k] + hex[0][0], ys[k] + hex[0][1]);
      for (var j = 1; j < hex.length; j++) { ctx.lineTo(xs[k] + hex[j][0], ys[k] + hex[j][1]); }
      ctx.lineTo(xs[k] + hex[0][0], ys[k] + hex[0][1]);
    }
    function render() {
      var s = fit * zoom;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.clearRect(0, 0, canvas.width, canvas.height);
      ctx.setTransform(s * ratio, 0, 0, s * ratio, -left * s * ratio, -top * s * ratio);
      var right = left + d.width / zoom, bottom = top + d.height / zoom;
      var visible = function (k) {
        return xs[k] + reach >= left && xs[k] - reach <= right && ys[k] + reach >= top && ys[k] - reach <= bottom;
      };
      if (2 * reach * s * ratio < 5) {
        // Cells of a few pixels would stroke into a blur at great cost (2 million segments for
        // 平度市): one square of pixels per cell instead, written straight into the image, the
        // gaps between them drawing the grid.
        var image = ctx.createImageData(canvas.width, canvas.height);
        var pixels = new Uint32Array(image.data.buffer), w = canvas.width, h = canvas.height;
        var scale = s * ratio, side = Math.max(1, Math.round(reach * 1.1 * scale));
        var colour = 0xff77522f; // #2f5277, opaque, as little-endian RGBA bytes
        for (var k = 0; k < n; k++) {
          var px = Math.round((xs[k] - left) * scale - side / 2), py = Math.round((ys[k] - top) * scale - side / 2);
          for (var yy = Math.max(0, py); yy < Math.min(h, py + side); yy++) {
            for (var xx = Math.max(0, px); xx < Math.min(w, px + side); xx++) { pixels[yy * w + xx] = colour; }
          }
        }
        ctx.putImageData(image, 0, 0);
      } else {
        ctx.lineWidth = 0.6 / s;
        ctx.strokeStyle = "#2f5277";
        // Stroked in batches so that no one path holds hundreds of thousands of cells.
        var batch = 0;
        ctx.beginPath();
        for (var k2 = 0; k2 < n; k2++) {
          if (!visible(k2)) { continue; }
          cell(k2);
          if (++batch === 8192) { ctx.stroke(); ctx.beginPath(); batch = 0; }
        }
        ctx.stroke();
      }
      d.open.forEach(function (o) {
        ctx.beginPath();
        cell(o[0]);
        ctx.fillStyle = o[1] > 2 ? "#e5484d" : "#f5a623";
        ctx.fill();
        // Small cells would vanish at this zoom: a dot marks them.
        ctx.beginPath();
        ctx.arc(xs[o[0]], ys[o[0]], Math.max(reach, 3 / s), 0, 2 * Math.PI);
        ctx.fill();
      });
      // Cut to the outline, then the land behind: two whole-canvas steps, where a clip to the
      // detailed coastline would be paid again by each of hundreds of thousands of cells.
      ctx.globalCompositeOperation = "destination-in";
      ctx.fillStyle = "#000";
      ctx.fill(outline);
      ctx.globalCompositeOperation = "destination-over";
      ctx.fillStyle = "#12263d";
      ctx.fill(outline);
      ctx.globalCompositeOperation = "source-over";
      ctx.lineWidth = 1.5 / s;
      ctx.strokeStyle = "#3fa9f5";
      ctx.stroke(outline);
      view.dataset.zoom = String(zoom);
    }
    function framePoint(e) {
      var rect = canvas.getBoundingClientRect();
      return [left + (e.clientX - rect.left) / (fit * zoom), top + (e.clientY - rect.top) / (fit * zoom)];
    }
    canvas.onclick = function (e) {
      if (zoom >= 64) { return; }
      var p = framePoint(e);
      zoom *= 4;
      left = Math.max(0, Math.min(d.width - d.width / zoom, p[0] - d.width / zoom / 2));
      top = Math.max(0, Math.min(d.height - d.height / zoom, p[1] - d.height / zoom / 2));
      render();
    };
    view.querySelector("#zoom-out").onclick = function () {
      if (zoom <= 1) { return; }
      var cx = left + d.width / zoom / 2, cy = top + d.height / zoom / 2;
      zoom /= 4;
      left = Math.max(0, Math.min(d.width - d.width / zoom, cx - d.width / zoom / 2));
      top = Math.max(0, Math.min(d.height - d.height / zoom, cy - d.height / zoom / 2));
      render();
    };
    render();
    view.dataset.grids = String(n);
    view.dataset.code = d.code;
    // Opened from the keyboard: focus goes to "back", and comes back to the district after.
    view.dataset.keyboard = fromKeyboard ? "1" : "";
    if (fromKeyboard) { view.querySelector("#back-to-city").focus(); }
    // Nearest centre on hover, through a bucket grid of the centres: a counting sort into typed
    // arrays (string-keyed buckets cost a third of a second for 平度市's 300,000 cells).
    var size = Math.max(8, reach * 4);
    var cols = Math.floor(d.width / size) + 2, rows = Math.floor(d.height / size) + 2;
    var starts = new Int32Array(cols * rows + 1), members = new Int32Array(n), bucketOf = new Int32Array(n);
    for (var b = 0; b < n; b++) {
      bucketOf[b] = Math.min(rows - 1, Math.floor(ys[b] / size)) * cols + Math.min(cols - 1, Math.floor(xs[b] / size));
      starts[bucketOf[b] + 1]++;
    }
    for (var q = 0; q < cols * rows; q++) { starts[q + 1] += starts[q]; }
    var filled = starts.slice(0, cols * rows);
    for (var m = 0; m < n; m++) { members[filled[bucketOf[m]]++] = m; }
    canvas.onmousemove = function (e) {
      var p = framePoint(e), x = p[0], y = p[1];
      var bx = Math.floor(x / size), by = Math.floor(y / size), best = -1, bestD = Infinity;
      for (var dx = -1; dx <= 1; dx++) {
        for (var dy = -1; dy <= 1; dy++) {
          var cx = bx + dx, cy = by + dy;
          if (cx < 0 || cy < 0 || cx >= cols || cy >= rows) { continue; }
          for (var i = starts[cy * cols + cx]; i < starts[cy * cols + cx + 1]; i++) {
            var c = members[i];
            var dist = (xs[c] - x) * (xs[c] - x) + (ys[c] - y) * (ys[c] - y);
            if (dist < bestD) { bestD = dist; best = c; }
          }
        }
      }
      if (best < 0 || bestD > 4 * reach * reach) { return; }
      var community = d.communities.filter(function (c) { return best >= c[2] && best < c[2] + c[3]; })[0];
      if (!community) { return; }
      var serial = String(best - community[2] + 1);
      while (serial.length < 4) { serial = "0" + serial; }
      view.querySelector(".grid-tip").textContent = (zh ? "网格 " : "grid ") + community[0] + serial + " · " + community[1] +
        (open[best] ? (zh ? " · 未结案件 " : " · open cases ") + open[best] : "");
    };
  }
  // Districts are buttons for the keyboard too: Tab to one, Enter or Space opens it.
  map.querySelectorAll(".district").forEach(function (path) {
    path.addEventListener("click", function () { openDistrict(path.dataset.code); });
    path.addEventListener("keydown", function (e) {
      if (e.key === "Enter" || e.key === " ") { e.preventDefault(); openDistrict(path.dataset.code, true); }
    });
  });
  map.querySelectorAll(".label").forEach(function (label) {
    label.addEventListener("click", function () { openDistrict(label.dataset.code); });
  });
  var source = window.yunnaoStream || new EventSource("/ui/stream");
  source.addEventListener("snapshot", function (e) { show(JSON.parse(e.data)); });
})();
// The report form: the phone's position fills longitude and latitude (or they are typed in).
(function () {
  "use strict";
  var button = document.getElementById("locate");
  if (!button) { return; }
  var zh = (document.body.dataset.lang || "zh") === "zh";
  var status = document.getElementById("located");
  function locate() {
    if (!navigator.geolocation) { status.textContent = zh ? "无法定位，请填写经纬度" : "No location: type longitude and latitude"; return; }
    status.textContent = zh ? "正在定位…" : "Locating…";
    navigator.geolocation.getCurrentPosition(function (p) {
      document.getElementById("lon").value = p.coords.longitude.toFixed(6);
      document.getElementById("lat").value = p.coords.latitude.toFixed(6);
      status.textContent = (zh ? "已定位，精度约 " : "Located, within about ") + Math.round(p.coords.accuracy) + " m";
    }, function () {
      status.textContent = zh ? "无法定位，请填写经纬度" : "No location: type longitude and latitude";
    }, { enableHighAccuracy: true, timeout: 10000, maximumAge: 60000 });
  }
  button.addEventListener("click", locate);
  locate();
})();

// 我的码: a fresh code before this one expires (5 s ahead), with the seconds left shown.
(function () {
  "use strict";
  var box = document.getElementById("my-code");
  if (!box) { return; }
  var zh = (document.body.dataset.lang || "zh") === "zh";
  var qr = document.getElementById("my-code-qr");
  var expiry = document.getElementById("my-code-expiry");
  var left = document.getElementById("my-code-left");
  var text = document.getElementById("my-code-text");
  var fetching = false;
  function expiresAt() { return Date.parse(expiry.getAttribute("datetime")); }
  function refresh() {
    if (fetching) { return; }
    fetching = true;
    fetch(box.dataset.refresh, { credentials: "same-origin", cache: "no-store" })
      .then(function (r) { if (!r.ok) { throw new Error(String(r.status)); } return r.json(); })
      .then(function (fresh) {
        qr.innerHTML = fresh.svg;
        expiry.setAttribute("datetime", fresh.expires_at);
        expiry.textContent = fresh.expires_local;
        if (text) { text.value = fresh.code; }
        box.dataset.refreshed = String(Number(box.dataset.refreshed || 0) + 1);
      })
      .catch(function () { left.textContent = zh ? "刷新失败，稍后重试" : "refresh failed, retrying"; })
      .then(function () { fetching = false; });
  }
  function tick() {
    var seconds = Math.max(0, Math.round((expiresAt() - Date.now()) / 1000));
    left.textContent = zh ? ("剩余 " + seconds + " 秒") : (seconds + " s left");
    if (seconds <= 5) { refresh(); }
  }
  tick();
  setInterval(tick, 1000);
})();

// The scanner: the camera where the browser can read QR codes (BarcodeDetector), else paste.
(function () {
  "use strict";
  var button = document.getElementById("scan-camera");
  if (!button || !("BarcodeDetector" in window) || !navigator.mediaDevices) { return; }
  var video = document.getElementById("scan-video");
  var field = document.getElementById("scan-code");
  var form = document.getElementById("scanner");
  button.hidden = false;
  button.addEventListener("click", function () {
    var detector = new window.BarcodeDetector({ formats: ["qr_code"] });
    navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" } }).then(function (stream) {
      video.srcObject = stream;
      video.hidden = false;
      video.play();
      var look = function () {
        detector.detect(video).then(function (codes) {
          if (codes.length > 0) {
            stream.getTracks().forEach(function (t) { t.stop(); });
            field.value = codes[0].rawValue;
            form.submit();
          } else {
            requestAnimationFrame(look);
          }
        }).catch(function () { requestAnimationFrame(look); });
      };
      look();
    });
  });
})();
