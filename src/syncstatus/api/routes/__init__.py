"""The API's routers, one module per resource, all included by `api.app.create_app`."""
