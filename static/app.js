// Darkroom's few behaviours that HTML and htmx do not cover. No inline scripts: the page's
// Content-Security-Policy allows scripts from this origin only.
(function () {
  "use strict";

  // Ctrl+Enter (Cmd+Enter on a Mac) in the prompt submits the create form.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    var target = event.target;
    if (!target || target.id !== "prompt" || !target.form) return;
    event.preventDefault();
    target.form.requestSubmit();
  });

  // "Copy as curl" and friends: copy the text of the element named by data-copy-target.
  document.addEventListener("click", function (event) {
    var button = event.target.closest(".js-copy");
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    var text = source.textContent;
    var done = function () {
      var label = button.textContent;
      button.textContent = "Copied";
      setTimeout(function () { button.textContent = label; }, 1500);
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectText(source); });
    } else {
      selectText(source);
    }
  });

  function selectText(element) {
    var range = document.createRange();
    range.selectNodeContents(element);
    var selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  // Errors htmx did not swap (rate limits, network trouble) get a friendly message.
  function flash(message) {
    var box = document.getElementById("flash");
    if (!box) return;
    box.textContent = message;
    box.classList.add("shown");
    clearTimeout(box._timer);
    box._timer = setTimeout(function () { box.classList.remove("shown"); }, 6000);
  }

  document.addEventListener("htmx:responseError", function (event) {
    var xhr = event.detail.xhr;
    if (xhr.status === 429) {
      var wait = xhr.getResponseHeader("Retry-After");
      flash("Slow down a little: too many requests." + (wait ? " Try again in " + wait + " s." : ""));
    } else if (xhr.status >= 500) {
      flash("Something went wrong on the server. Please try again.");
    } else if (xhr.status !== 422) {
      flash("That did not work (" + xhr.status + "). Reload the page and try again.");
    }
  });
  document.addEventListener("htmx:sendError", function () {
    flash("Darkroom cannot be reached. Check that it is running.");
  });

  // The page's poll, and a Cancel button, are answered out of band: into the cards and
  // details they name, the queue counter and the poller. When the page changes while such
  // a request is on its way (a search replaced the gallery and the poller, a card left),
  // the answer is stale: its cards may have no place left, and its poller state is older
  // than the one the change brought. Such an answer is dropped; the next poll, at most a
  // second later, asks about what is on the page now. The extension is named on the
  // elements that ask (hx-ext), so it sees the answer even when the asker has left the
  // page, where events no longer bubble up to the document.
  //
  // A Cancel button is gone once its answer lands; focus, which would fall back to the
  // page itself, goes on to what the form names in data-focus-after.
  window.htmx.defineExtension("drop-stale", {
    onEvent: function (name, event) {
      if (name === "htmx:afterRequest") {
        var form = event.detail.elt;
        var next = form && form.getAttribute("data-focus-after");
        var lost = !document.activeElement || document.activeElement === document.body;
        if (next && lost && !document.body.contains(form)) {
          var target = document.querySelector(next);
          if (target) target.focus();
        }
        return true;
      }
      if (name !== "htmx:beforeSwap" || !event.detail.shouldSwap) return true;
      var asker = event.detail.elt;
      if (!asker || !document.body.contains(asker)) {
        event.detail.shouldSwap = false;
        return true;
      }
      var answer = document.createElement("template");
      answer.innerHTML = event.detail.serverResponse;
      var parts = answer.content.querySelectorAll("[hx-swap-oob]");
      for (var i = 0; i < parts.length; i++) {
        if (!document.getElementById(parts[i].id)) {
          event.detail.shouldSwap = false;
          break;
        }
      }
      return true;
    },
  });

  // After a successful submit, keep the prompt (people iterate on it) and move focus back.
  document.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (form && form.id === "create-form" && event.detail.successful) {
      var prompt = document.getElementById("prompt");
      if (prompt) prompt.focus();
    }
  });
})();
