// abandonment-hub dashboard: copy buttons and times in the viewer's zone. No dependencies.
(function () {
  "use strict";
  function pad(n) { return String(n).padStart(2, "0"); }
  function localText(date) {
    return date.getFullYear() + "-" + pad(date.getMonth() + 1) + "-" + pad(date.getDate()) +
      " " + pad(date.getHours()) + ":" + pad(date.getMinutes());
  }
  function ready() {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
    document.querySelectorAll("[data-viewer-zone]").forEach(function (el) { el.textContent = zone; });
    document.querySelectorAll("time[datetime][data-zone]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (isNaN(date)) { return; }
      var client = el.textContent;
      // data-clock: a time of today ("as of 09:41"), the date would only be noise
      el.textContent = el.hasAttribute("data-clock") ? localText(date).slice(11) : localText(date);
      el.title = "Client's time: " + client + " (" + el.getAttribute("data-zone") + ")";
    });
    document.querySelectorAll("button[data-copy]").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = document.getElementById(button.getAttribute("data-copy"));
        field.select();
        var done = function () { button.textContent = "Copied"; setTimeout(function () { button.textContent = "Copy"; }, 3000); };
        if (navigator.clipboard && window.isSecureContext) {
          navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
        } else { document.execCommand("copy"); done(); }
      });
    });
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", ready); } else { ready(); }
})();
