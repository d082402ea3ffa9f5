// Swagger UI on ../openapi.json, relative to the page: under a stage prefix
// (/prod/docs/) it is /prod/openapi.json. A file of its own, not an inline
// script, so the page's Content-Security-Policy can forbid inline scripts.
window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: new URL("../openapi.json", document.baseURI).href,
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    // The default validator badge is an image from validator.swagger.io.
    validatorUrl: null,
  });
});
