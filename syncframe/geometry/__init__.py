"""Geometry: meshes, cameras around objects and their rasterization."""
