"""The admin plane, on its own listener: the JSON API (`api`), its OpenAPI document
(`openapi`), the dashboard's endpoints and statistics (`dashboard`), its sessions
(`sessions`), the server-sent event stream (`stream`), the listener's own limits
(`listener`) and the page's static files (`static/`). See docs/admin-api.md."""
