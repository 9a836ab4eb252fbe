"""Hyper-parameters taken from the papers, kept apart from the code that uses them."""
