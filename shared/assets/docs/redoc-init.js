// ReDoc on ../openapi.json, relative to the page (see swagger-init.js), in
// the system's fonts: nothing is loaded from elsewhere.
Redoc.init(
  new URL("../openapi.json", document.baseURI).href,
  {
    theme: {
      typography: {
        fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        headings: { fontFamily: "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif" },
        code: { fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace" },
      },
    },
  },
  document.getElementById("redoc")
);
