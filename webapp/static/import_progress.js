// A readers import's live progress (admin/subscribers_import_job.html). A file, not an inline
// script: the Content-Security-Policy allows scripts from this site only.
// Without it the page still works: its "refresh" link shows the progress so far.
(function () {
  var panel = document.getElementById("import-job");
  if (!panel || !window.fetch) return;
  function tick() {
    fetch(panel.dataset.progressUrl, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (data) {
        document.getElementById("import-status").textContent = data.status_label;
        var bar = document.getElementById("import-progress");
        if (bar) {
          bar.value = data.percent;
          bar.textContent = data.percent + "%";
          document.getElementById("import-percent").textContent = data.percent + "%";
        }
        // The run ended: its report is on the page, once reloaded.
        if (data.status !== panel.dataset.status) location.reload();
        else setTimeout(tick, 1000);
      })
      .catch(function () { setTimeout(tick, 5000); });
  }
  setTimeout(tick, 1000);
})();
