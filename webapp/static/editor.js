// The article editor (admin/article_form.html): the preview beside the form follows what staff
// type, and leaving with unsaved edits asks first. A file, not an inline script: the
// Content-Security-Policy allows scripts from this site only. Without it the form still works:
// "预览" renders the same preview after a round trip, and nothing warns before leaving.
(function () {
  var form = document.querySelector("form.article-form");
  var shown = document.getElementById("preview-content");
  if (!form || !shown) return;
  var DELAY = 400; // ms after the last keystroke: one request per pause, not per key
  var timer = null;
  var asked = 0; // the newest request; an older answer arriving late is dropped
  var edited = false;

  function refresh() {
    var mine = ++asked;
    // The whole form, CSRF token included: the endpoint is a POST like any other.
    fetch(form.dataset.previewUrl, {method: "POST", body: new FormData(form), credentials: "same-origin"})
      .then(function (r) { return r.text(); })
      .then(function (html) {
        // Rendered and sanitized by the server, the same way as the site renders articles.
        if (mine === asked) shown.innerHTML = html;
      })
      .catch(function () {}); // offline: the "预览" button still works
  }

  form.addEventListener("input", function () {
    edited = true;
    clearTimeout(timer);
    timer = setTimeout(refresh, DELAY);
  });
  form.addEventListener("submit", function () { edited = false; });
  window.addEventListener("beforeunload", function (event) {
    if (!edited) return;
    event.preventDefault();
    event.returnValue = ""; // older browsers need it set to ask
  });
})();
