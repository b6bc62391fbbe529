// Starts Swagger UI on /api/v1/docs (kept out of the page so no inline script is needed).
window.addEventListener("load", function () {
  "use strict";
  var container = document.getElementById("swagger-ui-container");
  window.ui = SwaggerUIBundle({
    url: container.getAttribute("data-spec-url"),
    dom_id: "#swagger-ui-container",
    deepLinking: true,
  });
});
