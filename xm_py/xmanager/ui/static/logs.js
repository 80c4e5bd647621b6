// A job's log: the tail first, older windows on demand, follow mode over server-sent events.
"use strict";
(function () {
  var b = XM.boot;
  var api = "/api/experiments/" + b.experiment + "/units/" + b.unit + "/logs";
  var job = "job=" + encodeURIComponent(b.job);
  var WINDOW = 65536;
  var pre = document.getElementById("log");
  var first = 0, last = 0, source = null;

  function info(text) { document.getElementById("log-info").textContent = text; }
  function older() { document.getElementById("older").disabled = first === 0; }

  async function tail() {
    var data = await XM.call("GET", api + "?" + job + "&offset=-" + WINDOW + "&limit=" + WINDOW);
    pre.innerHTML = data.html;
    first = data.start;
    last = data.end;
    older();
    info(first > 0 ? "showing bytes " + first + "–" + last + " (the tail)" : last + " bytes");
    if (data.truncated) info("the log was cut at its size cap");
    pre.scrollTop = pre.scrollHeight;
  }

  document.getElementById("older").addEventListener("click", async function () {
    var start = Math.max(0, first - WINDOW);
    var data = await XM.call("GET", api + "?" + job + "&offset=" + start + "&limit=" + (first - start));
    var height = pre.scrollHeight;
    pre.insertAdjacentHTML("afterbegin", data.html);
    pre.scrollTop += pre.scrollHeight - height;
    first = data.start;
    older();
    info("showing bytes " + first + "–" + last);
  });

  document.getElementById("follow").addEventListener("change", function (event) {
    if (!event.target.checked) {
      if (source) source.close();
      source = null;
      return;
    }
    source = new EventSource(api + "/follow?" + job + "&offset=" + last);
    info("following…");
    source.addEventListener("chunk", function (e) {
      var data = JSON.parse(e.data);
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
      pre.insertAdjacentHTML("beforeend", data.html);
      last = data.end;
      if (atEnd) pre.scrollTop = pre.scrollHeight;
    });
    source.addEventListener("end", function () {
      source.close();
      source = null;
      document.getElementById("follow").checked = false;
      info("the job has ended; " + last + " bytes");
    });
    source.addEventListener("failure", function (e) { XM.toast(JSON.parse(e.data).error); });
  });

  tail();
})();
