// The API's browsable documentation: Swagger UI over the app's own OpenAPI document.
// A file of its own because the Content-Security-Policy allows no inline script.
window.ui = SwaggerUIBundle({
  url: "/api/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
});
