// Loaded before htmx and without `defer`, so it listens from the page's first moment.
//
// The entries htmx pushes (a search, a filter) share one page. Until htmx is ready it does
// not hear Back and Forward between them, and the page would go on showing one entry's
// content under another's URL: a quick second Back, pressed while the first one's reload
// is still loading, lands there. Until htmx takes over, such a move reloads the page.
(function () {
  'use strict';
  window.addEventListener('popstate', function (event) {
    var htmxReady = typeof window.onpopstate === 'function';  // htmx sets it once ready
    if (!htmxReady && event.state && event.state.htmx) window.location.reload();
  });
})();
