"""Batch programs on top of the library: captioning a split into a results CSV, evaluation
runs that write reports, and the demo. They open datasets by name and write run folders;
the library packages never do.
"""
