// Starts Swagger UI on /api/v1/docs (a file of ours: the page's CSP allows no inline script).
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.spec,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    deepLinking: true,
    validatorUrl: null,            // never send our document to an outside validator
    persistAuthorization: false,   // the access token stays in this tab's memory only
    tryItOutEnabled: false
  });
});
