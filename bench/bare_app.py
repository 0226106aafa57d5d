"""The ingest baseline: a Flask endpoint that reads the body and answers 202."""

from flask import Flask, request

app = Flask(__name__)


@app.post("/webhooks/<tenant>/<source>")
def receive(tenant: str, source: str):  # noqa: ANN201
    request.get_data()
    return {"stored": 0}, 202
