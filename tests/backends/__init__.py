"""Real backends for the end-to-end tests: a Flask app (run under gunicorn) and an aiohttp
app (WebSocket echo). Both bind 127.0.0.1 only; see tests/support.py for how they start."""
