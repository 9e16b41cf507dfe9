// The sending panel's live counts (admin/_sending.html). A file, not an inline script: the
// Content-Security-Policy allows scripts from this site only.
// Without it the page still works: reload to refresh.
(function () {
  var panel = document.getElementById("sending");
  if (!panel || !window.fetch) return;
  // The status as stored ("sending"); the element shows it in words (labels.py).
  var shown = document.getElementById("issue-status").dataset.status;
  function tick() {
    fetch(panel.dataset.progressUrl, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        var status = document.getElementById("issue-status");
        status.textContent = data.status_label;
        status.dataset.status = data.status;
        document.getElementById("send-rate").textContent = data.rate_label;
        document.getElementById("time-left").textContent = data.time_left_label;
        var bar = document.getElementById("send-progress");
        if (bar) {
          bar.max = data.total;
          bar.value = data.done;
          bar.textContent = data.percent + "%";
          document.getElementById("progress-numbers").textContent = panel.dataset.progressPattern
            .replace("DONE", data.done.toLocaleString("en"))
            .replace("TOTAL", data.total.toLocaleString("en"))
            .replace("PERCENT", data.percent);
        }
        Object.keys(data.counts).forEach(function (name) {
          var cell = panel.querySelector('[data-count="' + name + '"]');
          if (cell) cell.textContent = data.counts[name];
        });
        if (data.status === "sending" || data.status === "scheduled") setTimeout(tick, 2000);
        // A new state brings other buttons and a final log: show them.
        else if (data.status !== shown) setTimeout(function () { location.reload(); }, 1500);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 2000);
})();
