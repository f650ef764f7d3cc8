"""The HTTP chat service (FastAPI + uvicorn).

`serve.app.create_app(settings, bot)` builds the app; `serve.app.serve(settings)` runs it.
Settings come from `CHATBOT_*` environment variables (`serve.settings`). Routes: `GET /healthz`,
`GET /readyz`, `GET /v1/models` and `POST /v1/chat`; the model is reached only through
`chatbot`'s `Chatbot` facade.
"""
