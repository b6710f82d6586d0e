"""The admin plane, on its own listener: the route table and the apps made from it
(`routes`), the JSON API's handlers and middlewares (`api`), the bodies as types
(`bodies`) and their JSON schemas (`schema`), the generated OpenAPI document (`openapi`),
the dashboard's endpoints and statistics (`dashboard`), its sessions (`sessions`), the
server-sent event stream (`stream`), the listener's own limits (`listener`) and the
page's static files (`static/`). See docs/admin-api.md."""
