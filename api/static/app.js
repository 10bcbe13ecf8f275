// Small progressive enhancements; every page works without JavaScript.
document.addEventListener("htmx:afterRequest", function (event) {
  // Clear a message box once its message was sent, and keep the focus there.
  var form = event.target;
  if (form.matches && form.matches("form.chat-form, form.message-form") && event.detail.successful) {
    var input = form.querySelector("input[name=text]");
    if (input) { input.value = ""; input.focus(); }
  }
});
document.addEventListener("htmx:afterSwap", function (event) {
  // Keep the newest sandbox message in view.
  var log = event.target.querySelector && event.target.querySelector(".chat-log");
  if (log) { log.scrollTop = log.scrollHeight; }
});
