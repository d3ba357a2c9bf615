"""Registered modules of this family; importing the package registers them."""
