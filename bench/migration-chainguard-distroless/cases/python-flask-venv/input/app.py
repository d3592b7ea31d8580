"""A minimal Flask service: GET / answers with a JSON greeting."""

from __future__ import annotations

# flask is installed inside the image (requirements.txt), not in the bench's own venv.
from flask import Flask, Response, jsonify  # type: ignore[import-not-found]

app = Flask(__name__)


@app.get("/")  # type: ignore[untyped-decorator]
def index() -> Response:
    """Answer with a JSON greeting."""
    return jsonify(message="hello from a distroless image")


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=8080)
