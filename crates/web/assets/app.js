// The overview's live part: one EventSource, counters, district colours, ticker, sparkline.
(function () {
  "use strict";
  var map = document.getElementById("map");
  if (!map) { return; }
  var lang = document.body.dataset.lang || "zh";
  var history = [];
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
        li.appendChild(document.createTextNode(lang === "zh" ? item.zh : item.en));
        list.appendChild(li);
      });
    }
    history.push(snapshot.readings_per_s || 0);
    if (history.length > 1800) { history.shift(); }
    var max = Math.max.apply(null, history.concat([1]));
    var points = history.map(function (v, i) {
      var x = history.length < 2 ? 0 : (i * 300) / (history.length - 1);
      return x.toFixed(1) + "," + (58 - (v / max) * 56).toFixed(1);
    });
    var line = document.querySelector("#spark polyline");
    if (line) { line.setAttribute("points", points.join(" ")); }
    document.body.dataset.updated = snapshot.at || "";
  }
  var source = new EventSource("/ui/stream");
  source.addEventListener("snapshot", function (e) { show(JSON.parse(e.data)); });
})();
