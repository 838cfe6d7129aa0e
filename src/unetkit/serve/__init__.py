"""The HTTP service: request limits and uploads (http), the app (app), and its add-ons: click routes
(clicks) and the labelling routes (annotate). The page is static/index.html."""
