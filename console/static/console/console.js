// Every console page's nicety; every form works without this file. A form being sent disables its buttons
// until the next page, so a double click sends it once (the server's one-time form token, console/security.py,
// is the guard; this only spares the second request).
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form || !form.elements || (form.getAttribute("method") || "").toLowerCase() !== "post") {
      return;
    }
    // After this turn: a button disabled now would drop its own name and value from what is sent.
    window.setTimeout(function () {
      for (var i = 0; i < form.elements.length; i++) {
        var element = form.elements[i];
        if (element.type === "submit" && !element.disabled) {
          element.disabled = true;
          element.setAttribute("data-sent", "");
        }
      }
    }, 0);
  });
  // Back to a page kept in the browser's memory: its buttons work again (sending one of its forms twice is
  // the server's to refuse).
  window.addEventListener("pageshow", function (event) {
    if (!event.persisted) {
      return;
    }
    var sent = document.querySelectorAll("[data-sent]");
    for (var i = 0; i < sent.length; i++) {
      sent[i].disabled = false;
      sent[i].removeAttribute("data-sent");
    }
  });
})();
