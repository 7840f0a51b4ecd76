"""Chapter 6: the capstone, measured. No pipeline of its own: it runs chapter 1's and chapter 5's side by side
(side_by_side.py), scales chapter 4's loop out (scale_out.py), watches workers through Flower (watch.py), and
restarts Redis under a naive pipeline (naive.py) and the loop (restart.py); bench.py is `make bench-capstone`."""
