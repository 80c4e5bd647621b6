// Shared by the pages' scripts: JSON calls carrying the CSRF token, messages, escaping.
"use strict";
var XM = (function () {
  var csrf = document.querySelector('meta[name="csrf-token"]').content;
  var boot = JSON.parse(document.getElementById("boot").textContent);

  function toast(message) {
    var box = document.getElementById("toast");
    box.textContent = message;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(function () { box.textContent = ""; }, 6000);
  }

  async function call(method, url, body) {
    var options = { method: method, headers: { "x-csrf-token": csrf } };
    if (body !== undefined) {
      options.headers["content-type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    var response = await fetch(url, options);
    var data = await response.json().catch(function () { return {}; });
    if (!response.ok) {
      var message = data.error || response.status + " " + response.statusText;
      toast(message);
      throw new Error(message);
    }
    return data;
  }

  function esc(text) {
    return String(text === null || text === undefined ? "" : text)
      .replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
  }

  function when(seconds) {
    if (seconds === null || seconds === undefined) return "";
    var d = new Date(seconds * 1000);
    var pad = function (n) { return String(n).padStart(2, "0"); };
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }

  return { boot: boot, call: call, toast: toast, esc: esc, when: when };
})();
