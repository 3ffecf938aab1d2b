// The support pages' niceties; every action works without this file.
// The 24-hour window's countdown, and a canned reply filling the reply box as soon as it is chosen.
(function () {
  "use strict";
  var countdown = document.querySelector(".countdown[data-deadline]");
  if (countdown) {
    var deadline = Date.parse(countdown.getAttribute("data-deadline"));
    var template = countdown.textContent;
    var tick = function () {
      var left = Math.max(0, Math.floor((deadline - Date.now()) / 60000));
      if (left <= 0) {
        countdown.textContent = countdown.getAttribute("data-done");
        return;
      }
      var numbers = template.match(/\d+/g);
      if (numbers && numbers.length >= 2) {
        var i = 0;
        var values = [Math.floor(left / 60), left % 60];
        countdown.textContent = template.replace(/\d+/g, function (n) { return i < 2 ? String(values[i++]) : n; });
      }
      window.setTimeout(tick, 30000);
    };
    tick();
  }
  var select = document.getElementById("canned-select");
  var box = document.getElementById("reply-text");
  if (select && box) {
    select.addEventListener("change", function () {
      var option = select.options[select.selectedIndex];
      if (option && option.getAttribute("data-text")) {
        box.value = option.getAttribute("data-text");
        box.focus();
      }
    });
  }
})();
