"""The HTTP chat service (FastAPI + uvicorn).

Reserved by the design card for the serving work (app factory, routes, schemas, settings); it
will reach the model only through `chatbot`'s facade. Nothing is served from here yet.
"""
