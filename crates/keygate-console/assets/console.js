// keygate console: the only script. Every form works without it. It adds copy buttons next to
// secrets, and shows times in the browser's time zone: each <time datetime="...Z"> element's
// text (UTC, the no-script fallback) is rewritten to local time with its offset, the UTC text
// kept as the tooltip. Served from this origin only (CSP script-src 'self').
"use strict";
function keygateLocalTime(iso) {
  var d = new Date(iso);
  if (isNaN(d.getTime())) { return null; }
  var two = function (n) { return (n < 10 ? "0" : "") + n; };
  var off = -d.getTimezoneOffset();
  var zone = "UTC";
  if (off !== 0) {
    var a = Math.abs(off);
    zone = "UTC" + (off > 0 ? "+" : "-") + two(Math.floor(a / 60)) + ":" + two(a % 60);
  }
  return d.getFullYear() + "-" + two(d.getMonth() + 1) + "-" + two(d.getDate()) + " " +
    two(d.getHours()) + ":" + two(d.getMinutes()) + " " + zone;
}
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var local = keygateLocalTime(t.getAttribute("datetime"));
    if (local === null) { return; }
    t.title = t.textContent.trim();
    t.textContent = local;
    t.setAttribute("data-local", "1");
  });
  document.querySelectorAll("button.copy[data-copy]").forEach(function (button) {
    var target = document.getElementById(button.getAttribute("data-copy"));
    if (!target || !navigator.clipboard) { return; }
    button.hidden = false;
    button.addEventListener("click", function () {
      navigator.clipboard.writeText(target.textContent.trim()).then(function () {
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = "Copy"; }, 2000);
      }, function () {
        button.textContent = "Select and copy by hand";
      });
    });
  });
});
