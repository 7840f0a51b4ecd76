# Exercise copy of solutions/ch05_reporting/__init__.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
