"""A service as a running application: its declaration, the platform wired for it, the FastAPI
shell, serving, the admin routes and the AsyncAPI document.
"""
