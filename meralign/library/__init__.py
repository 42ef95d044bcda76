"""The music library: embed a folder of recordings once, then tag, search and compare them with any words."""
