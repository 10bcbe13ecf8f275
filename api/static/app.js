// Small progressive enhancements; every page works without JavaScript.
document.addEventListener("htmx:afterRequest", function (event) {
  // Clear a message box once its message was sent, and keep the focus there.
  var form = event.target;
  if (form.matches && form.matches("form.chat-form, form.message-form") && event.detail.successful) {
    var input = form.querySelector("input[name=text]");
    if (input) { input.value = ""; input.focus(); }
  }
});
function syncModelMode() {
  // The provider fields only apply to "Bring your own key": disabled otherwise.
  var byok = document.getElementById("mode-byok");
  var fields = document.getElementById("byok-fields");
  if (byok && fields) { fields.disabled = !byok.checked; }
}
document.addEventListener("change", function (event) {
  if (event.target && event.target.name === "mode") { syncModelMode(); }
});
document.addEventListener("DOMContentLoaded", syncModelMode);
document.addEventListener("htmx:afterSettle", function (event) {
  // A form refused in place: move the focus (and the view) to its message.
  var elt = event.detail && event.detail.elt;
  if (!elt || !elt.getAttribute || elt.getAttribute("hx-select") !== "#main") { return; }
  syncModelMode();
  var alert = document.querySelector("#main [role=alert]");
  if (alert) { alert.setAttribute("tabindex", "-1"); alert.focus(); }
});
document.addEventListener("htmx:afterSwap", function (event) {
  // Keep the newest sandbox message in view.
  var log = event.target.querySelector && event.target.querySelector(".chat-log");
  if (log) { log.scrollTop = log.scrollHeight; }
});
