"""Database layer shared by the API and the workers; imports nothing from FastAPI."""
