"""The HTTP chat service (FastAPI + uvicorn).

`serve.app.create_app(settings, bot)` builds the app; `serve.app.serve(settings)` runs it, and
`serve.cli` adds the `chatbot serve` command. Settings come from `CHATBOT_*` environment
variables (`serve.settings`). Routes (`serve.routes`) only parse and delegate to the serving
layer (`serve.serving`, `serve.openai_serving`), which reaches the model only through
`chatbot`'s `Chatbot` facade; the OpenAI shapes are typed in `serve.protocol`.
"""
