"""/admin: the operator dashboard. Every route but the sign-in page needs a signed-in operator.

``routes.init_app`` wires it into the app; the views live in signin, pages and operations.
"""
