/* The viewer's only script (CSP: script-src 'self'). Progressive: every page works without it. */
(function () {
  "use strict";
  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function stamp() {
    var d = new Date();
    var text = d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes());
    var els = document.querySelectorAll("[data-print-time]");
    for (var i = 0; i < els.length; i++) { els[i].textContent = text; }
  }
  var audited = 0;
  function auditPrint() {
    // one audit row per print (at most one per 10 s), sent with the page's CSRF token
    var head = document.getElementById("print-head");
    if (!head || !navigator.sendBeacon || Date.now() - audited < 10000) { return; }
    audited = Date.now();
    var data = new FormData();
    data.append("csrf_token", head.getAttribute("data-csrf"));
    data.append("view", head.getAttribute("data-view") || "");
    navigator.sendBeacon(head.getAttribute("data-audit"), data);
  }
  window.addEventListener("beforeprint", stamp);
  window.addEventListener("beforeprint", auditPrint);
  document.addEventListener("DOMContentLoaded", function () {
    var p = document.getElementById("print-btn");
    if (p) { p.addEventListener("click", function () { stamp(); window.print(); }); }
    var confirms = document.querySelectorAll("[data-confirm]");
    for (var i = 0; i < confirms.length; i++) {
      confirms[i].addEventListener("click", function (ev) {
        if (!window.confirm(this.getAttribute("data-confirm"))) { ev.preventDefault(); }
      });
    }
    // open every <details> when printing, so nothing folded away is lost on paper
    window.addEventListener("beforeprint", function () {
      var ds = document.querySelectorAll("details");
      for (var j = 0; j < ds.length; j++) { ds[j].setAttribute("open", ""); }
    });
  });
})();
