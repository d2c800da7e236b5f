"""Peer systems the benchmarks compare langscale with, each as a runnable module."""
