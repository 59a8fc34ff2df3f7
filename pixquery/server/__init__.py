"""The HTTP API and web page: `pixquery.server.app.create_app(index_dir)` and `pixquery.server.run.serve(index_dir)`.

Needs the `serve` extra (fastapi, uvicorn, python-multipart); nothing else in pixquery imports this package.
"""
