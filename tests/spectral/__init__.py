"""Tests of spectune.spectral: SVD cache, change rates, TSD overlap, rank measures."""
