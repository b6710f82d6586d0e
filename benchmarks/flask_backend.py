"""Flask benchmark backend, run under gunicorn (sync workers) by run.py:

    gunicorn -w 2 -k sync -b 127.0.0.1:PORT --chdir benchmarks flask_backend:app

Every path answers 200 "blue\\n" (health checks included). gunicorn's sync workers close
the connection after each response, so every request through it pays a TCP setup.
"""

from flask import Flask, Response

app = Flask(__name__)


@app.route("/", defaults={"path": ""}, methods=["GET", "HEAD", "POST"])
@app.route("/<path:path>", methods=["GET", "HEAD", "POST"])
def blue(path: str) -> Response:
    return Response("blue\n", mimetype="text/plain")
