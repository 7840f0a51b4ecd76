# Exercise copy of solutions/ch06_capstone/__init__.py, made by `python -m workshop exercises build`.
# Nothing to fill in here; it is part of the chapter's code. Change the solution, not this copy.
"""Chapter 6: the capstone, measured. No pipeline of its own: it runs chapter 1's and chapter 5's side by side
(side_by_side.py), scales chapter 4's loop out (scale_out.py), watches workers through Flower (watch.py), and
restarts Redis under a naive pipeline (naive.py) and the loop (restart.py); bench.py is `make bench-capstone`."""
